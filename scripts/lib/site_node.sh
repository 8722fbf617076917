#!/usr/bin/env bash
# lib/site_node.sh: make a host a member of the air-gapped site, from the bundle's site/ files
# (rendered once by gldeploy/site): the site CA in the OS trust store and in k3s' registries.yaml,
# chrony pointing at the bastion, the site time zone, the site names (DNS or hosts), and k3s'
# documented air-gap needs (a default route; resolv-conf when no upstream nameserver exists).
# Every step compares before it writes; a second run changes nothing.
# shellcheck disable=SC2034  # GL_CHANGED is read by lib/checks.sh
SITE_NTP_SYNC_WAIT=120  # seconds for the node's chrony to synchronise with the bastion (TCG VMs are slow)

# site_unit_diagnostics UNIT: its status and last journal lines on stderr (why it does not answer)
site_unit_diagnostics() {
  gl_has_systemd || return 0
  warn "systemctl status $1:"
  systemctl status --no-pager -l -n 0 "$1" >&2 2>&1 || true
  warn "journalctl -u $1 (last 40 lines):"
  journalctl -u "$1" -n 40 --no-pager -q >&2 2>&1 || true
}

site_reload() {  # UNIT: restart a service when systemd runs it (not in the GL_ROOT sandbox)
  gl_has_systemd || return 0
  if ! systemctl restart "$1"; then
    site_unit_diagnostics "$1"
    fatal "systemctl restart $1 failed; its status and journal are above"
  fi
}

# the .deb files of site/packages (this role's, staged by gldeploy/site/stage.py), installed offline
# (apt-get with no source at all); only the packages not yet installed; records the packages check
site_install_packages() {
  local dir debs=() deb pkg missing=()
  dir="$(site_file packages)"
  for deb in "${dir}"/*.deb; do [[ -f "${deb}" ]] && debs+=("${deb}"); done
  if ((${#debs[@]} == 0)); then gl_check_skip packages "no site/packages in this bundle: using the packages already installed"; return 0; fi
  for deb in "${debs[@]}"; do
    pkg=$(dpkg-deb -f "${deb}" Package)
    [[ "$(dpkg-query -W -f '${Status}' "${pkg}" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("${deb}")
  done
  if ((${#missing[@]} == 0)); then gl_check_pass packages "all ${#debs[@]} package(s) of site/packages already installed"; return 0; fi
  info "installing ${#missing[@]} package(s) from the bundle (no network)"
  # no --no-download: apt 2.6 (Debian 12) then refuses local .deb paths ("Pathname to install is not
  # absolute"); with the source lists emptied there is nothing it could download anyway
  DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dir::Etc::sourcelist=/dev/null \
    -o Dir::Etc::sourceparts=/dev/null "${missing[@]}" >&2 || fatal "apt-get could not install the bundle's packages; a dependency is missing from SITE_PACKAGES_DIR (apt-get download it too)"
  GL_CHANGED=true
  gl_check_pass packages "installed ${#missing[@]} of ${#debs[@]} package(s) from site/packages (offline)"
}

# the site CA into the OS trust store (Debian: /usr/local/share/ca-certificates +
# update-ca-certificates; RHEL: /etc/pki/ca-trust/source/anchors + update-ca-trust)
site_trust_ca() {
  local ca anchors refresh
  ca="$(site_ca_file)"
  [[ -n "${ca}" ]] || { gl_check_skip trust-ca "no REGISTRY_CA_FILE"; return 0; }
  gl_detect_os
  if [[ "${OS_FAMILY}" == rhel ]]; then anchors=/etc/pki/ca-trust/source/anchors; refresh=(update-ca-trust extract)
  else anchors=/usr/local/share/ca-certificates; refresh=(update-ca-certificates); fi
  gl_install_file "${ca}" "$(gl_path "${anchors}/${SITE_CA_NAME}")" 0644
  local trust="${GL_INSTALLED}"
  gl_install_file "${ca}" "$(gl_path /etc/rancher/k3s/registry-ca.crt)" 0644
  [[ "${trust}${GL_INSTALLED}" == unchangedunchanged ]] || GL_CHANGED=true
  if [[ "${trust}" == changed && -z "${GL_ROOT}" ]]; then
    "${refresh[@]}" >/dev/null || fatal "${refresh[*]} failed; is ca-certificates installed?"
  fi
  gl_check_pass trust-ca "site CA in ${anchors}/${SITE_CA_NAME} and /etc/rancher/k3s/registry-ca.crt"
}

site_registries_yaml() {  # the one registries.yaml gldeploy rendered for every node (0600)
  local src
  src="$(gl_bundle_path secrets/registries.yaml)"
  [[ -f "${src}" ]] || { gl_check_skip registries "no registries.yaml in the bundle (REGISTRY unset)"; return 0; }
  gl_install_file "${src}" "$(gl_path /etc/rancher/k3s/registries.yaml)" 0600
  [[ "${GL_INSTALLED}" == unchanged ]] || GL_CHANGED=true
  gl_check_pass registries "/etc/rancher/k3s/registries.yaml ${GL_INSTALLED} (mirrors of docker.io, registry.k8s.io, ghcr.io, quay.io, gcr.io -> ${REGISTRY})"
}

site_chrony_client() {
  local conf=/etc/chrony/chrony.conf
  [[ -f "$(site_file chrony-client.conf)" ]] || { gl_check_skip chrony "no BASTION_IP: no site NTP server"; return 0; }
  [[ -d "$(gl_path /etc/chrony)" || ! -d "$(gl_path /etc/chrony.d)" ]] || conf=/etc/chrony.conf
  gl_install_file "$(site_file chrony-client.conf)" "$(gl_path "${conf}")" 0644
  if [[ "${GL_INSTALLED}" == changed ]]; then GL_CHANGED=true; site_reload chrony; fi
  gl_check_pass chrony "${conf} ${GL_INSTALLED}: server ${BASTION_IP} port ${SITE_NTP_PORT}"
  if gl_has_systemd; then site_wait_ntp_sync "${SITE_NTP_SYNC_WAIT}"; fi
}

# site_wait_ntp_sync SECONDS: bounded `chronyc waitsync` (one try a second) until this node's chrony
# has synchronised with the bastion, its only source: 01's clock-sync check and k3s' certificates
# need a synchronised clock, and a just-restarted chrony needs a few polls
site_wait_ntp_sync() {
  local out
  if chronyc -n waitsync "$1" 0 0 1 >/dev/null 2>&1; then
    out=$(chronyc -n tracking 2>/dev/null | awk -F': *' '/^System time/ { print $2 }') || out=""
    gl_check_pass ntp-sync "chrony synchronised with the site NTP server ${BASTION_IP}${out:+ (${out})}"
  else
    out=$(chronyc -n sources 2>/dev/null | grep -F "${BASTION_IP}" | head -n 1) || out=""
    gl_check_fail ntp-sync "chrony has not synchronised with ${BASTION_IP}:${SITE_NTP_PORT} within $1 s${out:+ (chronyc sources: ${out})}" \
      "check UDP ${SITE_NTP_PORT} from this node to the bastion and its chrony (systemctl status chrony there; its allow line must cover this node), then run this phase again"
  fi
}

site_timezone() {
  local zone="/usr/share/zoneinfo/${SITE_TIMEZONE}" link
  [[ -f "${zone}" ]] || fatal "time zone ${SITE_TIMEZONE} (SITE_TIMEZONE) is not in /usr/share/zoneinfo on this host; install tzdata"
  link="$(gl_path /etc/localtime)"
  if [[ "$(readlink "${link}" 2>/dev/null)" == "${zone}" ]]; then gl_check_pass timezone "${SITE_TIMEZONE} (unchanged)"; return 0; fi
  mkdir -p "$(dirname "${link}")"
  ln -sfn "${zone}" "${link}"
  printf '%s\n' "${SITE_TIMEZONE}" >"$(gl_path /etc/timezone)"
  GL_CHANGED=true
  gl_check_pass timezone "${SITE_TIMEZONE} (changed)"
}

# the site names: dnsmasq on the bastion as the resolver, or the names in /etc/hosts
site_names() {
  local hosts tmp
  hosts="$(gl_path /etc/hosts)"
  gl_tmpdir tmp
  if [[ "${SITE_DNS}" == hosts ]]; then
    { grep -v ' # gl-site$' "${hosts}" 2>/dev/null || true; sed 's/$/ # gl-site/' "$(site_file site.hosts)"; } >"${tmp}/hosts"
    gl_install_file "${tmp}/hosts" "${hosts}" 0644
    [[ "${GL_INSTALLED}" == unchanged ]] || GL_CHANGED=true
    gl_check_pass site-names "/etc/hosts ${GL_INSTALLED} (site names)"
  else
    printf '# site DNS (GL-Native bastion)\nnameserver %s\n' "${BASTION_IP}" >"${tmp}/resolv.conf"
    gl_install_file "${tmp}/resolv.conf" "$(gl_path /etc/gl-site/resolv.conf)" 0644
    [[ "${GL_INSTALLED}" == unchanged ]] || GL_CHANGED=true
    gl_check_pass site-names "site resolver ${BASTION_IP} in /etc/gl-site/resolv.conf ${GL_INSTALLED}; k3s uses it (resolv-conf)"
  fi
}

# this host must resolve every site name to its site address: containerd pulls with the host's
# resolver (k3s' resolv-conf only serves the pods). Checked with getent after site_names.
site_host_resolves() {
  local addr name got bad=() n=0
  [[ -s "$(site_file site.hosts)" ]] || { gl_check_skip host-resolver "no site names (site/site.hosts is empty)"; return 0; }
  while IFS=$'\t' read -r addr name; do
    [[ -n "${name}" ]] || continue
    n=$((n + 1))
    got=$(getent ahostsv4 "${name}" 2>/dev/null | awk 'NR == 1 { print $1 }') || got=""
    [[ "${got}" == "${addr}" ]] || bad+=("${name} -> ${got:-nothing} (want ${addr})")
  done <"$(site_file site.hosts)"
  if ((${#bad[@]} == 0)); then gl_check_pass host-resolver "this host resolves the ${n} site name(s)"; return 0; fi
  if [[ "${SITE_DNS}" == hosts ]]; then
    gl_check_fail host-resolver "this host resolves wrongly: ${bad[*]}" "check /etc/nsswitch.conf has 'hosts: files' first and /etc/hosts carries the gl-site lines (run this phase again)"
  else
    gl_check_fail host-resolver "this host resolves wrongly: ${bad[*]}" "make the site DNS this host's resolver: nameserver ${BASTION_IP} in /etc/resolv.conf (or its DHCP/network configuration); or set SITE_DNS=hosts"
  fi
}

# k3s' air-gap needs: a default route must exist (k3s picks its node address from it)
site_default_route() {
  if ip -4 route show default 2>/dev/null | grep -q .; then gl_check_pass default-route "a default route exists"
  else gl_check_fail default-route "no default route: k3s cannot choose its node address" "add one, even to an unused site gateway: ip route add default via <site gateway> (persist it in the network config)"; fi
}
