#!/usr/bin/env bash
# lib/site_bastion.sh: install the site services on the bastion from the bundle's site/ directory
# (rendered by gldeploy/site): OS packages (.deb, no network), the registry (TLS + htpasswd), the
# images (skopeo), chrony (NTP server) and dnsmasq. Each step compares before it writes: a second
# run changes nothing and says so. Paths: SITE_ETC, SITE_REGISTRY_* below (GL_ROOT in tests).

# shellcheck disable=SC2034  # GL_CHANGED is read by lib/checks.sh
SITE_ETC="/etc/gl-site"
SITE_REGISTRY_CONFIG="/etc/docker/registry/config.yml"
SITE_HTPASSWD="/etc/docker/registry/htpasswd"
SITE_REGISTRY_UNIT="docker-registry"
SITE_REGISTRY_WAIT=120  # seconds for the registry to answer after a (re)start (TCG VMs are slow)

# site_install_if_changed SRC DEST MODE: install when different; sets GL_CHANGED; returns 0 if changed
site_install_if_changed() {
  gl_install_file "$1" "$(gl_path "$2")" "$3"
  [[ "${GL_INSTALLED}" == changed ]] || return 1
  GL_CHANGED=true
  info "wrote $2"
}

# the account the registry runs as: its unit's User= (the Debian package: docker-registry), root when
# the unit sets none. Read from systemd when it runs, else from the installed unit file (GL_ROOT tests).
site_registry_user() {
  local user="" unit
  if gl_has_systemd; then
    user=$(systemctl show -p User --value "${SITE_REGISTRY_UNIT}.service" 2>/dev/null || true)
  else
    for unit in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
      unit="${unit}/${SITE_REGISTRY_UNIT}.service"
      if [[ -f "${unit}" ]]; then user=$(sed -n 's/^User=[[:space:]]*//p' "${unit}" | tail -n 1); break; fi
    done
  fi
  printf '%s\n' "${user:-root}"
}

# site_registry_readable FILE: the registry's secrets (TLS key, htpasswd) are 0640 root:<the unit's
# group>, never world-readable: the registry runs as its own user and must read them. Returns 0 when
# the group or mode had to change.
site_registry_readable() {
  local file="$1" user group
  user=$(site_registry_user)
  group=$(id -gn "${user}" 2>/dev/null) \
    || fatal "the ${SITE_REGISTRY_UNIT} unit runs as user ${user}, which does not exist on this host; reinstall the docker-registry package (site/packages)"
  if [[ "$(stat -c '%G %a' -- "${file}")" == "${group} 640" ]]; then return 1; fi
  chgrp -- "${group}" "${file}" || fatal "chgrp ${group} ${file} failed"
  chmod 0640 -- "${file}"
  GL_CHANGED=true
  info "${file}: readable by the registry's group ${group} (0640)"
}

# the htpasswd entry (bcrypt) is rewritten only when the password no longer verifies
site_htpasswd() {
  local file password_file
  file="$(gl_path "${SITE_HTPASSWD}")"
  password_file="$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")"
  if [[ -f "${file}" ]] && htpasswd -v -i "${file}" "${REGISTRY_USER}" <"${password_file}" >/dev/null 2>&1; then return 1; fi
  mkdir -p "$(dirname "${file}")"
  (umask 027; touch "${file}"); chmod 0640 "${file}"
  tr -d '\n' <"${password_file}" | htpasswd -B -i "${file}" "${REGISTRY_USER}" >/dev/null 2>&1 \
    || fatal "htpasswd could not write ${file}"
  GL_CHANGED=true
  info "registry user ${REGISTRY_USER}: password set (bcrypt)"
  return 0
}

site_registry_files() {  # returns 0 when something changed (the registry needs a restart)
  local changed=1
  site_install_if_changed "$(site_file registry.crt)" "${SITE_ETC}/registry.crt" 0644 && changed=0
  site_install_if_changed "$(site_file registry.key)" "${SITE_ETC}/registry.key" 0640 && changed=0
  site_registry_readable "$(gl_path "${SITE_ETC}/registry.key")" && changed=0
  site_install_if_changed "$(site_file registry-config.yml)" "${SITE_REGISTRY_CONFIG}" 0644 && changed=0
  if [[ -n "${REGISTRY_USER}" ]]; then
    site_htpasswd && changed=0
    site_registry_readable "$(gl_path "${SITE_HTPASSWD}")" && changed=0
  fi
  return "${changed}"
}

# site_wait_registry SECONDS: until /v2/ answers (401 with auth on, 200 without); stops early when the
# unit has failed (it has no Restart=); on failure prints the unit's status and journal, then fatal
site_wait_registry() {
  local limit="$1" start code _rc
  start=$(date +%s)
  while true; do
    read -r code _rc < <(site_curl_code /v2/ 0)
    [[ "${code}" == 401 || ( -z "${REGISTRY_USER}" && "${code}" == 200 ) ]] && return 0
    if gl_has_systemd && systemctl is-failed --quiet "${SITE_REGISTRY_UNIT}"; then
      site_unit_diagnostics "${SITE_REGISTRY_UNIT}"
      fatal "${SITE_REGISTRY_UNIT} exited (last answer: HTTP ${code}); its status and journal are above"
    fi
    if (( $(date +%s) - start >= limit )); then
      site_unit_diagnostics "${SITE_REGISTRY_UNIT}"
      fatal "the registry does not answer on https://${REGISTRY}/v2/ after ${limit} s (last answer: HTTP ${code}, curl exit ${_rc}); its status and journal are above"
    fi
    sleep 1
  done
}

# site_import_images: skopeo copy each archive of site/images.list unless the registry has it
# (credentials through a 0600 auth file, never argv; the CA as a cert dir)
site_import_images() {
  local list archive target size tmp auth="" password n=0 done_=0
  list="$(site_file images.list)"
  [[ -s "${list}" ]] || { info "no images to import"; return 0; }
  gl_tmpdir tmp
  mkdir -m 0700 "${tmp}/certs"
  cp "$(site_ca_file)" "${tmp}/certs/ca.crt"
  printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"${tmp}/policy.json"
  if [[ -n "${REGISTRY_USER}" ]]; then
    password=$(<"$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")")
    auth="${tmp}/auth.json"
    (umask 077; printf '{"auths": {%s: {"auth": "%s"}}}\n' "$(gl_json_str "${REGISTRY}")" \
      "$(printf '%s:%s' "${REGISTRY_USER}" "${password}" | base64 -w0)" >"${auth}")
  fi
  while IFS=$'\t' read -r archive target size; do
    [[ -n "${target}" ]] || continue
    n=$((n + 1))
    local code _rc
    read -r code _rc < <(site_curl_code "/v2/${target%:*}/manifests/${target##*:}" 1 -I \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json')
    if [[ "${code}" == 200 ]]; then continue; fi
    info "importing ${archive} -> ${REGISTRY}/${target} (${size} bytes)"
    skopeo --policy "${tmp}/policy.json" copy --retry-times 2 --dest-cert-dir "${tmp}/certs" \
      ${auth:+--dest-authfile "${auth}"} "oci-archive:$(site_file "images/${archive}")" "docker://${REGISTRY}/${target}" >&2 \
      || fatal "skopeo could not push ${archive} to ${REGISTRY}/${target}; run checklist.sh --role bastion for the cause"
    done_=$((done_ + 1)); GL_CHANGED=true
  done <"${list}"
  info "images: ${done_} imported, $((n - done_)) already present"
}
