#!/usr/bin/env bash
# lib/site_checks.sh: the air-gapped site's dependency checks, one function per checklist item; each
# records pass/warn/fail/skipped with the fix (lib/checks.sh). Read-only. Used by checklist.sh, the
# bastion phases, and (through site_check_preflight / site_check_health) the 01 and 04/06 phases.
# Inputs: settings (REGISTRY*, BASTION_IP, SITE_*), and the bundle's site/ files written by gldeploy:
# site/images.list (archive<TAB>path:tag<TAB>bytes), site/site.hosts, site/packages/*.deb.
# shellcheck disable=SC2034  # SITE_* variables are read by the sourcing scripts

SITE_CA_NAME="gl-site-ca.crt"
SITE_RENEW_DAYS=30
SITE_TIMEOUT=3

site_file() { printf '%s/site/%s\n' "${GL_BUNDLE_DIR}" "$1"; }
site_registry_host() { local h="${REGISTRY%:*}"; [[ "${REGISTRY}" == *:* ]] || h="${REGISTRY}"; printf '%s\n' "${h}"; }
site_registry_port() { if [[ "${REGISTRY}" == *:* ]]; then printf '%s\n' "${REGISTRY##*:}"; else echo 443; fi; }
site_is_ip() { [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; }

# the CA the registry is checked against: the one distributed to this host, else the bundle's
site_ca_file() {
  local k3s_ca; k3s_ca="$(gl_path /etc/rancher/k3s/registry-ca.crt)"
  if [[ -n "${REGISTRY_CA_FILE}" ]]; then gl_bundle_path "${REGISTRY_CA_FILE}"
  elif [[ -f "${k3s_ca}" ]]; then printf '%s\n' "${k3s_ca}"; fi
}

# site_curl_code PATH [AUTH 0|1] [curl args...]: the HTTP code (000 and curl's exit code on failure)
site_curl_code() {
  local path="$1" auth="$2" ca creds="" password="" rc=0 code
  shift 2
  ca="$(site_ca_file)"
  local args=(-sS -o /dev/null -w '%{http_code}' --max-time "${SITE_TIMEOUT}" "$@")
  [[ -n "${ca}" ]] && args+=(--cacert "${ca}")
  # the registry on the bastion is reached at BASTION_IP under its name (the dns item checks the name)
  if [[ "${REGISTRY_KIND}" == distribution && -n "${BASTION_IP}" ]] && ! site_is_ip "$(site_registry_host)"; then
    args+=(--connect-to "$(site_registry_host):$(site_registry_port):${BASTION_IP}:$(site_registry_port)")
  fi
  if [[ "${auth}" == 1 && -n "${REGISTRY_USER}" ]]; then
    password=$(<"$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")")
    creds="${REGISTRY_USER}:${password}"; creds="${creds//\\/\\\\}"; creds="${creds//\"/\\\"}"
    code=$(printf 'user = "%s"\n' "${creds}" | curl "${args[@]}" -K - "https://${REGISTRY}${path}" 2>/dev/null) || rc=$?
  else
    code=$(curl "${args[@]}" "https://${REGISTRY}${path}" 2>/dev/null </dev/null) || rc=$?
  fi
  printf '%s %s\n' "${code:-000}" "${rc}"
}

# --- registry running and answering with auth ---
site_check_registry() {
  local code rc fix_tls
  if [[ -z "${REGISTRY}" ]]; then gl_check_skip registry "REGISTRY is not set"; return 0; fi
  read -r code rc < <(site_curl_code /v2/ 0)
  fix_tls="issue the registry certificate for $(site_registry_host) from the site CA (invoke ca.init), set REGISTRY_CA_FILE to that CA, then invoke site.deploy"
  case "${rc}" in
    0) ;;
    6) gl_check_fail registry "the registry name $(site_registry_host) does not resolve" "serve it from the site DNS (SITE_DNS) or /etc/hosts: invoke site.deploy"; return 0 ;;
    7) gl_check_fail registry "nothing answers on ${REGISTRY} (connection refused or no route)" "start the registry on the bastion: systemctl start docker-registry (journalctl -u docker-registry), or invoke site.deploy"; return 0 ;;
    28) gl_check_fail registry "no answer from ${REGISTRY} within ${SITE_TIMEOUT} s" "check the bastion is up and TCP $(site_registry_port) is open to this host"; return 0 ;;
    35|51|58|59|60|77|83|90|91) gl_check_fail registry "TLS verification of https://${REGISTRY} failed (curl exit ${rc}: wrong CA, or the certificate does not name $(site_registry_host))" "${fix_tls}"; return 0 ;;
    *) gl_check_fail registry "https://${REGISTRY}/v2/ failed (curl exit ${rc})" "curl -v --cacert <CA> https://${REGISTRY}/v2/ shows why"; return 0 ;;
  esac
  if [[ "${code}" != 401 && -n "${REGISTRY_USER}" ]]; then
    gl_check_fail registry "https://${REGISTRY}/v2/ answers HTTP ${code} without credentials: authentication is off" "configure htpasswd auth (invoke site.deploy renders it)"; return 0
  fi
  if [[ -z "${REGISTRY_USER}" ]]; then gl_check_pass registry "https://${REGISTRY}/v2/ answers HTTP ${code} (no REGISTRY_USER)"; return 0; fi
  read -r code rc < <(site_curl_code /v2/ 1)
  case "${code}" in
    200) gl_check_pass registry "https://${REGISTRY}/v2/ answers: 401 anonymous, 200 for ${REGISTRY_USER} (TLS verified)" ;;
    401) gl_check_fail registry "registry ${REGISTRY} refused the password of user ${REGISTRY_USER} (HTTP 401)" "put the right password in REGISTRY_PASSWORD_FILE, or reset it on the bastion: invoke site.deploy (htpasswd -B)" ;;
    *) gl_check_fail registry "https://${REGISTRY}/v2/ with credentials answered HTTP ${code} (curl exit ${rc})" "read journalctl -u docker-registry on the bastion" ;;
  esac
}

# --- images imported (every image of site/images.list is in the registry) ---
site_check_images() {
  local list archive target size missing=() n=0 code rc repo tag
  list="$(site_file images.list)"
  if [[ -z "${REGISTRY}" ]]; then gl_check_skip images "REGISTRY is not set"; return 0; fi
  if [[ ! -f "${list}" ]]; then gl_check_warn images "no site/images.list in this bundle: cannot tell which images the site needs" "set SITE_IMAGES_DIR and run invoke site.checklist (it ships the list)"; return 0; fi
  while IFS=$'\t' read -r archive target size; do
    [[ -n "${target}" ]] || continue
    n=$((n + 1)); repo="${target%:*}"; tag="${target##*:}"
    read -r code rc < <(site_curl_code "/v2/${repo}/manifests/${tag}" 1 -I \
      -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json')
    [[ "${code}" == 200 ]] || missing+=("${target} (HTTP ${code}, from ${archive})")
  done <"${list}"
  if ((${#missing[@]})); then
    gl_check_fail images "${#missing[@]} of ${n} image(s) missing in ${REGISTRY}: ${missing[*]}" "import them on the bastion: 02_site_services.sh (invoke site.deploy) copies site/images/*.oci.tar with skopeo"
  else gl_check_pass images "all ${n} image(s) of site/images.list are in ${REGISTRY}"; fi
}

# --- charts packaged ---
site_check_charts() {
  local chart found=()
  for chart in "${GL_BUNDLE_DIR}"/backend/*.tgz; do [[ -f "${chart}" ]] && found+=("${chart}"); done
  if ((${#found[@]} == 0)); then gl_check_fail charts "no packaged chart in ${GL_BUNDLE_DIR}/backend" "rebuild the bundle: invoke bundle.build (packs deploy/backend)"; return 0; fi
  for chart in "${found[@]}"; do
    # the listing is read whole (a here-string), never `tar | grep -q`: grep -q quits early, tar dies of
    # SIGPIPE and under pipefail a good chart would look broken
    if ! grep -q '/Chart.yaml$' <<<"$(tar -tzf "${chart}" 2>/dev/null)"; then
      gl_check_fail charts "${chart} is not a Helm chart archive (no Chart.yaml)" "rebuild the bundle: invoke bundle.build"; return 0
    fi
  done
  gl_check_pass charts "packaged chart(s): ${found[*]##*/}"
}

# --- OS packages: installed, or present in the bundle's site/packages ---
site_check_packages() {  # ROLE: bastion|node
  local role="$1" want=() missing=() cmd pkg deb
  if [[ "${role}" == bastion ]]; then want=(docker-registry:docker-registry htpasswd:apache2-utils skopeo:skopeo chronyd:chrony dnsmasq:dnsmasq-base openssl:openssl)
  else want=(chronyd:chrony openssl:openssl curl:curl); fi
  for cmd in "${want[@]}"; do
    pkg="${cmd#*:}"; cmd="${cmd%%:*}"
    command -v "${cmd}" >/dev/null 2>&1 && continue
    deb=$(find "$(site_file packages)" -maxdepth 1 -name "${pkg}_*.deb" -print -quit 2>/dev/null || true)
    [[ -n "${deb}" ]] || missing+=("${pkg} (${cmd})")
  done
  if ((${#missing[@]})); then
    gl_check_fail packages "not installed and not in site/packages: ${missing[*]}" "on a connected Debian machine: apt-get download ${missing[*]%% *} (and dependencies) into SITE_PACKAGES_DIR, then rebuild the bundle"
  else gl_check_pass packages "the ${role}'s packages are installed or in site/packages"; fi
}

# --- NTP reachable and this clock in sync with it ---
site_ntp_offset() {  # SERVER PORT -> offset in seconds (chronyd -Q, never touches the clock)
  local out
  out=$(chronyd -Q -t 8 -u root -f /dev/null "server $1 port $2 iburst maxsamples 4" 2>&1) || true
  sed -n 's/.*System clock wrong by \(-\{0,1\}[0-9.]*\) seconds.*/\1/p' <<<"${out}" | tail -n 1
}
site_check_ntp() {
  local server="${BASTION_IP}" offset ms
  if [[ -z "${server}" ]]; then gl_check_skip ntp "BASTION_IP is not set: no site NTP server"; return 0; fi
  if ! command -v chronyd >/dev/null 2>&1; then gl_check_fail ntp "chronyd is not installed: cannot query ${server}" "install chrony (from the bundle: site/packages)"; return 0; fi
  offset=$(site_ntp_offset "${server}" "${SITE_NTP_PORT}")
  if [[ -z "${offset}" ]]; then
    gl_check_fail ntp "no NTP answer from ${server}:${SITE_NTP_PORT}/udp within 8 s" "start chrony on the bastion (systemctl start chrony; its allow line must cover this host) and open UDP ${SITE_NTP_PORT}"; return 0
  fi
  ms=$(awk -v o="${offset}" 'BEGIN { if (o < 0) o = -o; printf "%d", o * 1000 }')
  if ((ms > SITE_MAX_CLOCK_SKEW_MS)); then
    gl_check_fail ntp "this clock is off by ${offset} s from the site NTP server ${server} (more than ${SITE_MAX_CLOCK_SKEW_MS} ms)" "step it once: chronyc makestep (or systemctl restart chrony), and keep chrony pointing at ${server}: invoke site.deploy"
  else gl_check_pass ntp "${server}:${SITE_NTP_PORT} answers; offset ${offset} s (limit ${SITE_MAX_CLOCK_SKEW_MS} ms)"; fi
}

site_check_timezone() {
  local tz=""
  if [[ -L "$(gl_path /etc/localtime)" ]]; then tz=$(readlink "$(gl_path /etc/localtime)"); tz="${tz#*zoneinfo/}"; fi
  [[ -n "${tz}" ]] || tz=$(cat "$(gl_path /etc/timezone)" 2>/dev/null || echo "unknown")
  [[ "${tz}" == Etc/UTC || "${tz}" == UCT || "${tz}" == Zulu ]] && tz=UTC
  if [[ "${tz}" == "${SITE_TIMEZONE}" ]]; then gl_check_pass timezone "time zone ${tz} (SITE_TIMEZONE)"
  else gl_check_fail timezone "time zone is ${tz}, the site uses ${SITE_TIMEZONE}" "timedatectl set-timezone ${SITE_TIMEZONE} (the node phase of invoke site.deploy does it)"; fi
}

# --- DNS resolving the site names (site/site.hosts: address<TAB>name) ---
site_check_dns() {
  local hosts addr name got bad=() n=0
  hosts="$(site_file site.hosts)"
  if [[ ! -s "${hosts}" ]]; then gl_check_skip dns "no site names to resolve (site/site.hosts is empty or absent)"; return 0; fi
  while IFS=$'\t' read -r addr name; do
    [[ -n "${name}" ]] || continue
    n=$((n + 1))
    if [[ "${SITE_DNS}" == dnsmasq ]]; then
      got=$(dig +short +time=2 +tries=1 -p "${SITE_DNS_PORT}" "@${BASTION_IP}" A "${name}" 2>/dev/null | tail -n 1) || got=""
    else
      got=$(awk -v n="${name}" '$1 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == n) { print $1; exit } }' "$(gl_path /etc/hosts)")
    fi
    [[ "${got}" == "${addr}" ]] || bad+=("${name} -> ${got:-nothing} (want ${addr})")
  done <"${hosts}"
  if ((${#bad[@]})); then
    if [[ "${SITE_DNS}" == dnsmasq ]]; then
      gl_check_fail dns "the site DNS ${BASTION_IP}:${SITE_DNS_PORT} resolves wrongly: ${bad[*]}" "start dnsmasq on the bastion (systemctl restart dnsmasq; it reads /etc/gl-site/site.hosts) and open UDP/TCP ${SITE_DNS_PORT}: invoke site.deploy"
    else gl_check_fail dns "/etc/hosts resolves wrongly: ${bad[*]}" "write the site names into /etc/hosts: invoke site.deploy"; fi
  else gl_check_pass dns "${n} site name(s) resolve (${SITE_DNS})"; fi
}

# --- certificates: the registry's chain, names and expiry; the CA distributed to this host ---
site_check_certificates() {
  local ca host port cert want store k3s_ca problems=()
  if [[ -z "${REGISTRY}" ]]; then gl_check_skip certificates "REGISTRY is not set"; return 0; fi
  ca="$(site_ca_file)"; host="$(site_registry_host)"; port="$(site_registry_port)"
  if [[ -z "${ca}" || ! -f "${ca}" ]]; then gl_check_fail certificates "no site CA: REGISTRY_CA_FILE is unset or missing" "create it with invoke ca.init and set REGISTRY_CA_FILE=<dir>/ca.crt"; return 0; fi
  gl_tmpdir SITE_CERT_TMP
  cert="${SITE_CERT_TMP}/registry.pem"
  local connect="${host}"; site_is_ip "${host}" || connect="${BASTION_IP}"; [[ -n "${connect}" ]] || connect="${host}"
  if ! openssl s_client -connect "${connect}:${port}" -servername "${host}" -showcerts </dev/null 2>/dev/null \
      | openssl x509 -out "${cert}" 2>/dev/null; then
    gl_check_fail certificates "could not read the certificate of ${connect}:${port}" "start the registry (see the registry check)"; return 0
  fi
  if ! openssl x509 -in "${cert}" -noout -checkend 0 >/dev/null; then
    problems+=("the registry certificate has expired ($(openssl x509 -in "${cert}" -noout -enddate))")
  elif ! openssl x509 -in "${cert}" -noout -checkend $((SITE_RENEW_DAYS * 86400)) >/dev/null; then
    problems+=("the registry certificate expires within ${SITE_RENEW_DAYS} days ($(openssl x509 -in "${cert}" -noout -enddate))")
  fi
  want=(-checkhost "${host}"); site_is_ip "${host}" && want=(-checkip "${host}")
  if ! openssl x509 -in "${cert}" -noout "${want[@]}" 2>/dev/null | grep -q 'does match'; then
    problems+=("the registry certificate does not name ${host} ($(openssl x509 -in "${cert}" -noout -ext subjectAltName 2>/dev/null | tail -n 1 | sed 's/^ *//'))")
  fi
  openssl verify -CAfile "${ca}" "${cert}" >/dev/null 2>&1 || problems+=("the registry certificate is not signed by the site CA ${ca}")
  if ((${#problems[@]})); then
    gl_check_fail certificates "$(IFS=';'; printf '%s' "${problems[*]}")" "re-issue it: invoke ca.init (names REGISTRY's host and BASTION_IP), then invoke site.deploy"
    return 0
  fi
  gl_check_pass certificates "the registry certificate names ${host}, chains to the site CA, valid until $(openssl x509 -in "${cert}" -noout -enddate | cut -d= -f2)"
}

site_check_ca_distributed() {
  local ca store k3s_ca missing=()
  ca="$(site_ca_file)"
  if [[ -z "${REGISTRY}" || -z "${ca}" ]]; then gl_check_skip ca-distributed "no registry CA to distribute"; return 0; fi
  store="$(gl_path /usr/local/share/ca-certificates/${SITE_CA_NAME})"
  [[ -d "$(gl_path /etc/pki/ca-trust/source/anchors)" ]] && store="$(gl_path /etc/pki/ca-trust/source/anchors/${SITE_CA_NAME})"
  k3s_ca="$(gl_path /etc/rancher/k3s/registry-ca.crt)"
  cmp -s "${ca}" "${store}" || missing+=("${store}")
  cmp -s "${ca}" "${k3s_ca}" || missing+=("${k3s_ca}")
  if ((${#missing[@]})); then gl_check_fail ca-distributed "the site CA is missing or different in: ${missing[*]}" "distribute it: invoke site.deploy (trust store + k3s registries.yaml)"
  else gl_check_pass ca-distributed "the site CA is in the trust store and k3s' registry CA"; fi
}

# --- disk space for the images (bytes of site/images.list, with 10% headroom) ---
site_check_disk() {  # DIR (where the images land: the registry storage, or /var/lib/rancher)
  local dir list need have
  dir="$(gl_path "$1")"; list="$(site_file images.list)"
  [[ -f "${list}" ]] || { gl_check_skip disk-images "no site/images.list: image sizes unknown"; return 0; }
  while [[ ! -d "${dir}" ]]; do dir="$(dirname "${dir}")"; done
  need=$(awk -F'\t' '{ s += $3 } END { printf "%d", s * 1.1 / 1048576 + 1 }' "${list}")
  have=$(df -Pm "${dir}" | awk 'NR == 2 { print $4 }')
  if ((have < need)); then gl_check_fail disk-images "${dir} has ${have} MiB free, the images need ${need} MiB" "free or add space under $1 (at least ${need} MiB), then import again"
  else gl_check_pass disk-images "${dir}: ${have} MiB free for ${need} MiB of images"; fi
}

# --- node-to-node ports: refused counts as open (nothing listens yet); a timeout is a firewall ---
site_port_state() {  # ADDR PORT -> open|filtered
  local err
  err=$(timeout "${SITE_TIMEOUT}" bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>&1) && { echo open; return 0; }
  if [[ "${err}" == *refused* ]]; then echo open; else echo filtered; fi
}
site_check_ports() {  # SELF_ADDRESS
  local self="$1" peer port bad=() n=0 servers=() workers=()
  IFS=, read -r -a servers <<<"${CONTROL_PLANE_IPS}"; IFS=, read -r -a workers <<<"${WORKER_IPS}"
  for peer in "${servers[@]}" "${workers[@]}"; do
    [[ -n "${peer}" && "${peer}" != "${self}" ]] || continue
    local ports=(10250)
    [[ " ${servers[*]} " == *" ${peer} "* ]] && ports+=("${API_PORT}")
    [[ " ${servers[*]} " == *" ${peer} "* && "${TOPOLOGY}" == ha ]] && ports+=(2379 2380)
    for port in "${ports[@]}"; do
      n=$((n + 1))
      [[ "$(site_port_state "${peer}" "${port}")" == open ]] || bad+=("${peer}:${port}")
    done
  done
  if ((n == 0)); then gl_check_skip ports "no other node to reach"; return 0; fi
  if ((${#bad[@]})); then gl_check_fail ports "no answer (filtered) from ${bad[*]}" "open these TCP ports between the nodes (firewall/security group); flannel also needs UDP 8472"
  else gl_check_pass ports "${n} node port(s) reachable (answer or refuse, none filtered)"; fi
}

# --- entry points for the numbered phases (source this file after lib/checks.sh) ---
# 01_pre_install_check: the node is a site member (time zone, NTP in sync, CA distributed, the
# registry's certificate valid and naming it). Nothing to check without a bastion.
site_check_preflight() {
  [[ -n "${BASTION_IP}" ]] || return 0
  site_check_timezone
  site_check_ntp
  site_check_ca_distributed
  site_check_certificates
}

# 04_health_check / 06_health_check: the registry certificate's expiry and names, and the registry
# answering with auth (pods that restart pull from it).
site_check_health() {
  [[ -n "${REGISTRY}" && -n "${BASTION_IP}" ]] || return 0
  site_check_certificates
  site_check_registry
}
