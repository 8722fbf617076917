#!/usr/bin/env bash
# lib/doctor_checks.sh: one function per row of lib/doctor_table.sh (doctor_check_<name, - as _>).
# Each is read-only and ends with exactly one dr_result call: STATUS MESSAGE [DETAIL]; the runner
# (lib/doctor_run.sh) adds the table's fix. Host paths go through gl_path / host_file (GL_ROOT sandbox).
# Sourced after common.sh, checks.sh, k3s.sh, k3s_api.sh, k3s_files.sh, host_checks.sh, doctor_table.sh.
# shellcheck disable=SC2034  # DR_* state is read by lib/doctor_run.sh

DR_STATUS="" DR_MESSAGE="" DR_DETAIL=""
dr_result() { DR_STATUS="$1" DR_MESSAGE="$2" DR_DETAIL="${3:-}"; }

DR_MODE=none        # k3s_mode
DR_RUNNING=0        # the k3s service runs
DR_REG_UP=0         # the registry answered over TLS (verified or not)
DR_REG_TRUSTED=0    # ... and its certificate verified
DR_REG_AUTH=0       # ... and the credentials (if any) were accepted
DR_COMPARE=()       # --compare FILE: other servers' config.yaml
DR_KUBECTL_TIMEOUT=5s

# --- k3s itself ---
doctor_check_k3s_installed() {
  DR_MODE=$(k3s_mode)
  if [[ "${DR_MODE}" == none ]]; then
    dr_result fail "k3s is not installed on this host (no executable ${K3S_BIN#"${GL_ROOT}"})"
    return
  fi
  local version
  version=$(timeout 5 "${K3S_BIN}" --version 2>/dev/null | head -n1 || true)
  dr_result pass "${version:-k3s (version unknown)}, mode ${DR_MODE}"
}

doctor_check_k3s_service() {
  if k3s_service_active; then DR_RUNNING=1; dr_result pass "the ${K3S_SERVICE} service is running"
  else
    dr_result fail "k3s is installed but its service ${K3S_SERVICE} is not running (systemctl start ${K3S_SERVICE}; why it stopped: journalctl -u ${K3S_SERVICE} -n 200)"
  fi
}

doctor_check_api_ping() {
  if k3s_api_ping; then dr_result pass "https://127.0.0.1:${API_PORT}/ping answers pong"
  else dr_result fail "k3s runs but https://127.0.0.1:${API_PORT}/ping does not answer pong"; fi
}

# --- ports: "port pid owner" lines of listening TCP sockets (as 01_pre_install_check.sh reads them)
dr_listening_ports() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH 2>/dev/null | awk '{
      n = split($4, a, ":"); owner = "unknown process"; pid = 0
      if (match($0, /users:\(\("[^"]+"/)) owner = substr($0, RSTART + 9, RLENGTH - 10)
      if (match($0, /pid=[0-9]+/)) pid = substr($0, RSTART + 4, RLENGTH - 4)
      print a[n], pid, owner }'
  else
    local hex
    awk 'FNR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null |
      while read -r hex; do printf '%d 0 unknown process\n' "$((16#${hex}))"; done
  fi
}

dr_pid_is_k3s() {  # PID: the process runs the installed k3s binary (the stand-in runs under python3)
  [[ "$1" != 0 && -r "/proc/$1/cmdline" ]] || return 1
  tr '\0' '\n' <"/proc/$1/cmdline" | grep -qxF -- "${K3S_BIN}"
}

doctor_check_port_conflict() {
  local ports=(10250) listening port pid owner bad=() ours=()
  [[ "${DOCTOR_ROLE}" == agent ]] || ports=("${API_PORT}" "${ports[@]}")
  [[ "${DOCTOR_ROLE}" == first-server || "${DOCTOR_ROLE}" == server ]] && ports+=(2379 2380)
  listening=$(dr_listening_ports)
  for port in "${ports[@]}"; do
    pid="" owner=""
    read -r pid owner < <(awk -v p="${port}" '$1 == p { print $2, $3; exit }' <<<"${listening}") || true
    [[ -n "${owner}" ]] || continue
    if [[ "${owner}" == k3s* ]] || dr_pid_is_k3s "${pid}"; then ours+=("${port}")
    else bad+=("${port} (${owner}${pid:+, pid ${pid}})"); fi
  done
  if ((${#bad[@]})); then
    dr_result fail "port(s) k3s needs are held by another process: ${bad[*]}" "holder: ss -ltnp 'sport = :${bad[0]%% *}'"
  elif ((${#ours[@]})); then
    dr_result pass "ports ${ports[*]}: held by k3s (${ours[*]}) or free"
  else
    dr_result pass "ports ${ports[*]} are free"
  fi
}

# --- resources ---
dr_data_dir() {  # the nearest existing directory of /var/lib/rancher/k3s
  local dir="${K3S_DATA_DIR}"
  while [[ ! -d "${dir}" && "${dir}" != / && -n "${dir}" ]]; do dir=$(dirname -- "${dir}"); done
  printf '%s\n' "${dir:-/}"
}

doctor_check_disk_pressure() {
  local dir size avail pct ipct
  dir=$(dr_data_dir)
  read -r size avail < <(df -Pk -- "${dir}" | awk 'NR == 2 {print $2, $4}')
  read -r ipct < <(df -Pi -- "${dir}" | awk 'NR == 2 && $2 > 0 {print int($4 * 100 / $2); exit} NR == 2 {print 100}')
  pct=$(( size > 0 ? avail * 100 / size : 0 ))
  local shown="${dir#"${GL_ROOT}"}"
  local what="${shown:-/}: ${pct}% free ($((avail / 1024)) MiB of $((size / 1024)) MiB), ${ipct}% inodes free"
  if ((pct < 15 || ipct < 5)); then dr_result fail "${what}; below the kubelet's eviction threshold"
  elif ((pct < 25 || ipct < 10)); then dr_result warn "${what}; close to the kubelet's eviction threshold (15%)"
  else dr_result pass "${what}"; fi
}

doctor_check_memory_pressure() {
  local total avail meminfo
  meminfo=$(host_file /proc/meminfo)
  read -r total avail < <(awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {print int(t / 1024), int(a / 1024)}' "${meminfo}")
  local what="${avail} MiB of ${total} MiB available"
  if ((avail < 100)); then dr_result fail "${what}; below the kubelet's eviction threshold (100 MiB)"
  elif ((avail * 10 < total)); then dr_result warn "${what}; under 10% of RAM"
  else dr_result pass "${what}"; fi
}

doctor_check_evictions() {
  local evicted pressure
  evicted=$(k3s_kubectl get pods -A --request-timeout="${DR_KUBECTL_TIMEOUT}" --no-headers \
    -o 'custom-columns=NS:.metadata.namespace,NAME:.metadata.name,REASON:.status.reason' 2>/dev/null \
    | awk '$3 == "Evicted" {printf "%s/%s ", $1, $2}') || { dr_result fail "could not list pods (kubectl failed)"; return; }
  pressure=$(k3s_kubectl get nodes --request-timeout="${DR_KUBECTL_TIMEOUT}" \
    -o 'jsonpath={range .items[*]}{.metadata.name}{range .status.conditions[?(@.status=="True")]}{" "}{.type}{end}{"\n"}{end}' 2>/dev/null \
    | awk '{for (i = 2; i <= NF; i++) if ($i ~ /Pressure$/) printf "%s:%s ", $1, $i}') || true
  if [[ -n "${pressure}" ]]; then dr_result fail "node pressure: ${pressure% }${evicted:+; evicted: ${evicted% }}"
  elif [[ -n "${evicted}" ]]; then dr_result warn "evicted pods (the pressure is gone): ${evicted% }"
  else dr_result pass "no evicted pods, no node under pressure"; fi
}

# --- time ---
doctor_check_clock_sync() {
  local out
  if gl_has_systemd && command -v timedatectl >/dev/null 2>&1; then
    out=$(timeout 2 timedatectl show -p NTPSynchronized --value 2>/dev/null || true)
    case "${out}" in
      yes) dr_result pass "clock synchronised (timedatectl NTPSynchronized=yes)"; return ;;
      no) dr_result fail "clock is not synchronised (timedatectl NTPSynchronized=no)"; return ;;
    esac
  fi
  if command -v chronyc >/dev/null 2>&1; then
    if out=$(timeout 2 chronyc -n tracking 2>&1); then
      if grep -Eq '^Leap status *: *(Normal|Insert second|Delete second)' <<<"${out}"; then
        dr_result pass "clock synchronised (chronyc: $(awk -F': *' '/^System time/ {print $2}' <<<"${out}"))"
      else
        dr_result fail "clock is not synchronised (chronyc leap status: $(awk -F': *' '/^Leap status/ {print $2}' <<<"${out}"))"
      fi
      return
    fi
    dr_result warn "cannot tell whether the clock is synchronised: chronyc tracking failed ($(head -n1 <<<"${out}"))" \
      "start chronyd (or systemd-timesyncd) so the state is known"
    return
  fi
  dr_result warn "cannot tell whether the clock is synchronised: neither timedatectl (systemd) nor chronyc is available" \
    "install chrony"
}

# the k3s certificates of this host: server/tls (and etcd/) on servers, agent/ on every node
dr_cert_files() {
  local f
  for f in "${K3S_DATA_DIR}"/server/tls/*.crt "${K3S_DATA_DIR}"/server/tls/etcd/*.crt "${K3S_DATA_DIR}"/agent/*.crt; do
    [[ -f "${f}" ]] && printf '%s\n' "${f}"
  done
  return 0
}

dr_k3s_log_tail() {  # the recent k3s log lines (journal when present, else the log file)
  if gl_has_systemd && command -v journalctl >/dev/null 2>&1; then
    timeout 5 journalctl -u k3s -u k3s-agent --since "-1h" --no-pager -q -o cat 2>/dev/null | tail -n 2000 || true
  elif [[ -r "${K3S_LOG}" ]]; then
    tail -n 2000 -- "${K3S_LOG}" || true
  fi
}

doctor_check_clock_cert_skew() {
  local f start start_s now worst="" line
  now=$(date +%s)
  while IFS= read -r f; do
    start=$(openssl x509 -noout -startdate -in "${f}" 2>/dev/null) || continue
    start_s=$(date -d "${start#notBefore=}" +%s 2>/dev/null) || continue
    if ((start_s > now + 60)); then worst="${f#"${GL_ROOT}"} is valid only from ${start#notBefore=}, $(( (start_s - now) / 60 )) min ahead of this clock"; break; fi
  done < <(dr_cert_files)
  line=$(dr_k3s_log_tail | grep -m1 -E 'x509: certificate has expired or is not yet valid|certificate is not yet valid' || true)
  if [[ -n "${worst}" ]]; then
    dr_result fail "this clock is behind the cluster's: ${worst}; now $(date -u '+%F %T') UTC"
  elif [[ -n "${line}" ]]; then
    dr_result fail "the k3s log reports certificate time errors: ${line:0:300}" "compare the clocks of all nodes: date -u on each"
  else
    dr_result pass "the k3s certificates are valid at this host's time; no x509 time errors in the recent k3s log"
  fi
}

doctor_check_cert_expiry() {  # the scan and threshold certs.sh uses (lib/day2_certs.sh)
  day2_cert_scan "${DAY2_CERT_THRESHOLD_DAYS}"
  if ((DAY2_CERT_N == 0)); then dr_result warn "no k3s certificates under ${K3S_DATA_DIR#"${GL_ROOT}"} (k3s never started?)"; return; fi
  case "${DAY2_CERT_WORST}" in
    pass) dr_result pass "${DAY2_CERT_N} certificate(s), none ends within ${DAY2_CERT_THRESHOLD_DAYS} days (k3s' renewal window)" ;;
    warn) dr_result warn "${DAY2_CERT_SOONEST}" ;;
    *) dr_result fail "${DAY2_CERT_SOONEST}" ;;
  esac
}

# --- registry (REGISTRY set): each stage needs the previous one ---
dr_registry_ca() {  # the CA this node trusts for the registry: installed copy, else the bundle's
  if [[ -f "${K3S_REGISTRY_CA_DEST}" ]]; then printf '%s\n' "${K3S_REGISTRY_CA_DEST}"
  elif [[ -n "${REGISTRY_CA_FILE}" ]]; then gl_bundle_path "${REGISTRY_CA_FILE}"; fi
}

# dr_registry_curl PATH CURL_ARGS...: prints the HTTP code; curl's exit code is returned. The
# credentials go to curl on stdin (-K -), never on its command line.
dr_registry_curl() {
  local path="$1" password="" user="${REGISTRY_USER}"
  shift
  if [[ -n "${user}" && "${DR_WITH_AUTH:-0}" == 1 && -n "${REGISTRY_PASSWORD_FILE}" ]]; then
    password=$(<"$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")") || password=""
  fi
  local creds="${user}:${password}"
  creds=${creds//\\/\\\\}; creds=${creds//\"/\\\"}
  if [[ "${DR_WITH_AUTH:-0}" == 1 && -n "${user}" ]]; then
    printf 'user = "%s"\n' "${creds}" | curl -sS -o /dev/null -w '%{http_code}' --max-time 3 -K - "$@" "https://${REGISTRY}${path}" 2>/dev/null
  else
    curl -sS -o /dev/null -w '%{http_code}' --max-time 3 "$@" "https://${REGISTRY}${path}" 2>/dev/null </dev/null
  fi
}

dr_no_registry() {
  [[ -z "${REGISTRY}" ]] || return 1
  dr_result skipped "REGISTRY is not set: images come from the bundle or public registries"
}

doctor_check_registry_reachable() {
  dr_no_registry && return
  local code rc=0
  code=$(dr_registry_curl /v2/ -k) || rc=$?
  case "${rc}" in
    0) DR_REG_UP=1; dr_result pass "https://${REGISTRY}/v2/ answers (HTTP ${code})" ;;
    6) dr_result fail "the registry name in ${REGISTRY} does not resolve (curl exit 6)" ;;
    7) dr_result fail "connection to ${REGISTRY} refused or no route (curl exit 7)" ;;
    28) dr_result fail "no answer from ${REGISTRY} within 3 s (curl exit 28: firewall, or the host is down)" ;;
    35) dr_result fail "TLS handshake with ${REGISTRY} failed (curl exit 35): is it serving HTTPS on that port?" ;;
    *) dr_result fail "https://${REGISTRY}/v2/ failed (curl exit ${rc})" ;;
  esac
}

doctor_check_registry_ca() {
  dr_no_registry && return
  if ((DR_REG_UP == 0)); then dr_result skipped "the registry is not reachable (see registry-reachable)"; return; fi
  local ca rc=0 args=()
  ca=$(dr_registry_ca)
  [[ -z "${ca}" ]] || args=(--cacert "${ca}")
  dr_registry_curl /v2/ "${args[@]}" >/dev/null || rc=$?
  local with="${ca:+the CA ${ca#"${GL_ROOT}"}}"
  if ((rc == 0)); then DR_REG_TRUSTED=1; dr_result pass "the registry certificate verifies against ${with:-the system CAs}"
  elif ((rc == 60 || rc == 51 || rc == 58 || rc == 77)); then
    dr_result fail "the registry certificate does not verify against ${with:-the system CAs} (curl exit ${rc}: x509: certificate signed by unknown authority)"
  else dr_result fail "https://${REGISTRY}/v2/ with ${with:-the system CAs} failed (curl exit ${rc})"; fi
}

doctor_check_registry_auth() {
  dr_no_registry && return
  if ((DR_REG_TRUSTED == 0)); then dr_result skipped "the registry is not reachable or not trusted (see registry-reachable, registry-ca)"; return; fi
  local ca code args=()
  ca=$(dr_registry_ca)
  [[ -z "${ca}" ]] || args=(--cacert "${ca}")
  code=$(DR_WITH_AUTH=1 dr_registry_curl /v2/ "${args[@]}") || code=000
  case "${code}" in
    200) DR_REG_AUTH=1; dr_result pass "GET /v2/ answered 200${REGISTRY_USER:+ for user ${REGISTRY_USER}}" ;;
    401|403)
      if [[ -n "${REGISTRY_USER}" ]]; then dr_result fail "the registry refuses the credentials of user ${REGISTRY_USER} (HTTP ${code})"
      else dr_result fail "the registry wants credentials (HTTP ${code}) but REGISTRY_USER is not set"; fi ;;
    *) dr_result fail "GET /v2/ answered HTTP ${code}" ;;
  esac
}

doctor_check_registry_image() {
  dr_no_registry && return
  if ((DR_REG_AUTH == 0)); then dr_result skipped "the registry cannot be used yet (see registry-reachable, registry-ca, registry-auth)"; return; fi
  local ca code args=() path="/v2/${BACKEND_IMAGE}/manifests/${BACKEND_VERSION}"
  ca=$(dr_registry_ca)
  [[ -z "${ca}" ]] || args=(--cacert "${ca}")
  code=$(DR_WITH_AUTH=1 dr_registry_curl "${path}" "${args[@]}" -I \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json') || code=000
  case "${code}" in
    200) dr_result pass "${REGISTRY}/${BACKEND_IMAGE}:${BACKEND_VERSION} is in the registry" ;;
    404) dr_result fail "${REGISTRY}/${BACKEND_IMAGE}:${BACKEND_VERSION} is not in the registry (HTTP 404: manifest unknown)" ;;
    *) dr_result fail "HEAD ${path} answered HTTP ${code}" ;;
  esac
}

doctor_check_image_pulls() {
  local out
  out=$(k3s_kubectl get pods -A --request-timeout="${DR_KUBECTL_TIMEOUT}" \
    -o 'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{" "}{.status.containerStatuses[*].state.waiting.reason}{"\n"}{end}' 2>/dev/null) \
    || { dr_result fail "could not list pods (kubectl failed)"; return; }
  out=$(awk '/ErrImagePull|ImagePullBackOff|InvalidImageName/ {printf "%s(%s) ", $1, $2}' <<<"${out}")
  if [[ -n "${out}" ]]; then dr_result fail "pods that cannot pull their image: ${out% }"
  else dr_result pass "no pod waits on an image pull"; fi
}

# --- network ---
dr_config_value() {  # FILE KEY: the scalar value of a top-level key in a k3s config.yaml (quotes removed)
  awk -v k="$2" 'index($0, k ":") == 1 { v = substr($0, length(k) + 2); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
    gsub(/^"|"$/, "", v); print v; exit }' "$1" 2>/dev/null
}

doctor_check_cni_config() {
  if [[ ! -r "${K3S_CONFIG}" ]]; then dr_result fail "${K3S_CONFIG#"${GL_ROOT}"} is missing"; return; fi
  local key want have bad=()
  for key in cluster-cidr service-cidr; do
    want="${CLUSTER_CIDR}"; [[ "${key}" == service-cidr ]] && want="${SERVICE_CIDR}"
    have=$(dr_config_value "${K3S_CONFIG}" "${key}")
    [[ "${have:-${want}}" == "${want}" ]] || bad+=("${key} ${have} (settings: ${want})")
  done
  if ((${#bad[@]})); then dr_result fail "config.yaml disagrees with the settings: ${bad[*]}"
  else dr_result pass "config.yaml: cluster-cidr ${CLUSTER_CIDR}, service-cidr ${SERVICE_CIDR} as the settings say"; fi
}

doctor_check_cni_network() {
  local netd="${K3S_DATA_DIR}/agent/etc/cni/net.d" subnet net backend
  backend=$(dr_config_value "${K3S_CONFIG}" flannel-backend)
  if ! compgen -G "${netd}/*.conflist" >/dev/null && ! compgen -G "${netd}/*.conf" >/dev/null; then
    dr_result fail "no CNI configuration in ${netd#"${GL_ROOT}"}"; return
  fi
  if [[ "${backend}" == none ]]; then dr_result pass "CNI configuration present (flannel disabled: another CNI is in charge)"; return; fi
  subnet=$(gl_path /run/flannel/subnet.env)
  net=$(awk -F= '$1 == "FLANNEL_NETWORK" {print $2}' "${subnet}" 2>/dev/null || true)
  if [[ -z "${net}" ]]; then dr_result fail "flannel has not written ${subnet#"${GL_ROOT}"} (flannel not running)"; return; fi
  if [[ "${net}" != "${CLUSTER_CIDR}" ]]; then dr_result fail "flannel network ${net} is not CLUSTER_CIDR ${CLUSTER_CIDR}"; return; fi
  if [[ "${backend:-vxlan}" == vxlan ]] && ! ip -d link show flannel.1 2>/dev/null | grep -q 'dstport 8472'; then
    dr_result fail "flannel VXLAN device flannel.1 (udp 8472) is missing"; return
  fi
  dr_result pass "CNI configuration present; flannel network ${net}${backend:+, backend ${backend}}"
}

# dr_probe IP PORT: TCP connect within 2 s (bash /dev/tcp); prints "ok", "refused" or "timeout"
dr_probe() {
  local rc=0
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null || rc=$?
  case "${rc}" in 0) echo ok ;; 124) echo timeout ;; *) echo refused ;; esac
}

doctor_check_node_ports() {
  local servers=() workers=() ip targets=() i out bad=() n=0
  if [[ "${TOPOLOGY}" == single ]]; then dr_result skipped "TOPOLOGY=single: no other node"; return; fi
  IFS=, read -r -a servers <<<"${CONTROL_PLANE_IPS}"
  IFS=, read -r -a workers <<<"${WORKER_IPS}"
  for ip in "${servers[@]}"; do
    [[ -n "${ip}" ]] && ! k3s_address_is_local "${ip}" || continue
    targets+=("${ip} ${API_PORT}" "${ip} 10250")
    if [[ "${TOPOLOGY}" == ha && "${DOCTOR_ROLE}" != agent ]]; then targets+=("${ip} 2379" "${ip} 2380"); fi
  done
  for ip in "${workers[@]}"; do
    [[ -n "${ip}" ]] && ! k3s_address_is_local "${ip}" && targets+=("${ip} 10250")
  done
  if ((${#targets[@]} == 0)); then dr_result skipped "no other node in CONTROL_PLANE_IPS / WORKER_IPS"; return; fi
  local dir pids=()
  dir=$(mktemp -d "${TMPDIR:-/tmp}/gl-doctor-probe.XXXXXX")
  for i in "${!targets[@]}"; do
    # shellcheck disable=SC2086  # "ip port"
    dr_probe ${targets[i]} >"${dir}/${i}" &
    pids+=("$!")
  done
  wait "${pids[@]}" 2>/dev/null || true
  for i in "${!targets[@]}"; do
    out=$(<"${dir}/${i}")
    n=$((n + 1))
    [[ "${out}" == ok ]] || bad+=("${targets[i]/ /:}/tcp ${out}")
  done
  rm -rf -- "${dir}"
  if ((${#bad[@]})); then
    dr_result fail "$((n - ${#bad[@]})) of ${n} node port(s) reachable; not: ${bad[*]}" \
      "refused: nothing listens (is k3s running there?); timeout: a firewall drops it"
  else
    dr_result pass "${n} node port(s) reachable over TCP ($(printf '%s ' "${targets[@]/ /:}"| sed 's/ $//')); 8472/udp cannot be probed from one end: see cni-network on each node"
  fi
}

doctor_check_etcd_health() {
  if [[ "${TOPOLOGY}" != ha ]]; then dr_result skipped "TOPOLOGY=${TOPOLOGY}: no embedded etcd"; return; fi
  local tls="${K3S_DATA_DIR}/server/tls/etcd" args members urls url healthy=0 total=0 sick=()
  args=(--cacert "${tls}/server-ca.crt" --cert "${tls}/client.crt" --key "${tls}/client.key" -sS --max-time 3)
  members=$(curl "${args[@]}" -X POST -d '{}' https://127.0.0.1:2379/v3/cluster/member/list 2>&1) \
    || { dr_result fail "the local etcd member does not answer on 127.0.0.1:2379: ${members:0:200}"; return; }
  urls=$(grep -o '"clientURLs":\["[^"]*"' <<<"${members}" | sed 's/.*\["//; s/"$//')
  for url in ${urls}; do
    total=$((total + 1))
    if [[ "$(curl "${args[@]}" "${url}/health" 2>/dev/null)" == *'"health":"true"'* ]]; then healthy=$((healthy + 1))
    else sick+=("${url}"); fi
  done
  if ((total == 0)); then dr_result fail "etcd member list is empty or unreadable: ${members:0:200}"
  elif ((healthy < total / 2 + 1)); then dr_result fail "etcd has no quorum: ${healthy} of ${total} members healthy (needs $((total / 2 + 1))); unhealthy: ${sick[*]}"
  elif ((${#sick[@]})); then dr_result warn "etcd quorum holds (${healthy}/${total}) but unhealthy: ${sick[*]}"
  elif ((total % 2 == 0)); then dr_result warn "${total} healthy etcd members: an even number tolerates no more failures than $((total - 1))"
  else dr_result pass "${healthy} of ${total} etcd members healthy"; fi
}

# --- the API VIP ---
dr_vip_local() { k3s_address_is_local "${API_VIP}"; }

doctor_check_vip_held() {
  if [[ -z "${API_VIP}" ]]; then dr_result skipped "API_VIP is not set (no load-balanced API)"; return; fi
  local here=no answer
  dr_vip_local && here=yes
  answer=$(curl -sk --max-time 3 "https://${API_VIP}:${API_PORT}/ping" 2>/dev/null || true)
  if [[ "${answer}" == pong ]]; then
    dr_result pass "https://${API_VIP}:${API_PORT}/ping answers pong; held by $([[ ${here} == yes ]] && echo 'this host' || echo 'another host')"
  elif [[ "${here}" == yes ]]; then
    dr_result fail "this host holds ${API_VIP} but nothing answers /ping on ${API_VIP}:${API_PORT} (HAProxy down?)"
  else
    dr_result fail "nothing answers on ${API_VIP}:${API_PORT}: no host holds the VIP, or HAProxy there is down"
  fi
}

doctor_check_vip_duplicate() {
  if [[ -z "${API_VIP}" ]]; then dr_result skipped "API_VIP is not set (no load-balanced API)"; return; fi
  if ! command -v arping >/dev/null 2>&1; then dr_result skipped "arping is not installed (apt-get install iputils-arping): duplicate holders cannot be seen"; return; fi
  local dev macs
  dev=$(ip -o route get "${API_VIP}" 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  [[ -n "${dev}" && "${dev}" != lo ]] || { dr_result skipped "${API_VIP} is routed over ${dev:-nothing}: no ARP to ask"; return; }
  macs=$(timeout 4 arping -c 3 -w 3 -I "${dev}" "${API_VIP}" 2>/dev/null | grep -o '\[[0-9a-fA-F:]*\]' | sort -u | tr '\n' ' ' || true)
  local count
  count=$(wc -w <<<"${macs}")
  if dr_vip_local && ((count > 0)); then dr_result fail "this host holds ${API_VIP} and ${macs% } answer(s) ARP for it too: held twice"
  elif ((count > 1)); then dr_result fail "${API_VIP} is answered by ${count} MACs (${macs% }): held twice"
  else dr_result pass "${API_VIP} is held once$( ((count == 1)) && echo " (${macs% })")"; fi
}

# --- configuration ---
DR_CLUSTER_KEYS="cluster-cidr service-cidr secrets-encryption https-listen-port flannel-backend cluster-dns disable"
dr_cluster_view() {  # FILE: the cluster-wide keys of a config.yaml, one "key: value" per line (lists joined)
  awk -v keys=" ${DR_CLUSTER_KEYS} " '
    /^[a-z-]+:/ { k = $1; sub(/:$/, "", k); cur = (index(keys, " " k " ") ? k : "")
                  v = substr($0, length($1) + 2); sub(/^[ \t]+/, "", v); gsub(/"/, "", v); if (cur != "" && v != "") val[cur] = v; next }
    /^  - / && cur != "" { item = substr($0, 5); gsub(/"/, "", item); val[cur] = val[cur] (val[cur] == "" ? "" : ",") item }
    END { n = split(keys, ks, " "); for (i = 1; i <= n; i++) if (ks[i] in val) print ks[i] ": " val[ks[i]] }' "$1"
}

doctor_check_config_drift() {
  if [[ ! -r "${K3S_CONFIG}" ]]; then dr_result fail "${K3S_CONFIG#"${GL_ROOT}"} is missing"; return; fi
  local tmp diff_out problems=() f mine theirs role="${DOCTOR_ROLE}"
  tmp=$(mktemp "${TMPDIR:-/tmp}/gl-doctor-config.XXXXXX")
  k3s_render_config "${role}" "${tmp}"
  diff_out=$(diff <(grep -v '^#' "${tmp}") <(grep -v '^#' "${K3S_CONFIG}") | grep '^[<>]' | head -n 6 | tr '\n' ';' || true)
  rm -f -- "${tmp}"
  [[ -z "${diff_out}" ]] || problems+=("config.yaml differs from what the settings produce for role ${role} (< settings, > host): ${diff_out%;}")
  mine=$(dr_cluster_view "${K3S_CONFIG}")
  for f in "${DR_COMPARE[@]}"; do
    theirs=$(dr_cluster_view "${f}")
    if [[ "${mine}" != "${theirs}" ]]; then
      diff_out=$(diff <(printf '%s\n' "${mine}") <(printf '%s\n' "${theirs}") | grep '^[<>]' | tr '\n' ';' || true)
      problems+=("cluster-wide keys differ from ${f} (< here, > there): ${diff_out%;}")
    fi
  done
  local sum
  sum=$(printf '%s\n' "${mine}" | sha256sum | cut -c1-12)
  local agreed=""
  ((${#DR_COMPARE[@]} == 0)) || agreed=" and agrees with ${#DR_COMPARE[@]} other server config(s)"
  if ((${#problems[@]})); then dr_result warn "${problems[*]}; cluster-wide keys sha256 ${sum}"
  else dr_result pass "config.yaml is what the settings produce${agreed}; cluster-wide keys sha256 ${sum}"; fi
}

# dr_dns_answers SERVER: a DNS query (NS of the root) over UDP gets any answer within 1.5 s
dr_dns_answers() {
  local fd byte
  { exec {fd}<>"/dev/udp/$1/53"; } 2>/dev/null || return 1  # the group keeps 2>/dev/null off the shell
  printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01' 1>&"${fd}" || { exec {fd}<&-; return 1; }
  if IFS= read -r -t 1.5 -N 1 -u "${fd}" byte 2>/dev/null && [[ "${byte}" == $'\x12' ]]; then exec {fd}<&-; return 0; fi
  exec {fd}<&-
  return 1
}

doctor_check_dns() {
  local conf servers=() s answering=() silent=() real="" host
  conf=$(host_file /etc/resolv.conf)
  mapfile -t servers < <(awk '$1 == "nameserver" {print $2}' "${conf}" 2>/dev/null)
  if ((${#servers[@]} == 0)); then dr_result fail "${conf} lists no nameserver"; return; fi
  for s in "${servers[@]}"; do
    if dr_dns_answers "${s}"; then answering+=("${s}"); else silent+=("${s}"); fi
    [[ "${s}" == 127.* || "${s}" == ::1 ]] || real=1
  done
  if ((${#answering[@]} == 0)); then dr_result fail "no nameserver in ${conf#"${GL_ROOT}"} answers: ${silent[*]}"; return; fi
  if [[ -z "${real}" ]] && ! awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 != "::1" {f = 1} END {exit !f}' \
      /run/systemd/resolve/resolv.conf 2>/dev/null; then
    dr_result warn "only loopback nameserver(s) (${servers[*]}): CoreDNS would forward to itself"; return
  fi
  if [[ -n "${REGISTRY}" ]]; then
    host="${REGISTRY%:*}"; host="${host#[}"; host="${host%]}"
    if [[ ! "${host}" =~ ^[0-9.]+$ && "${host}" != *:* ]] && ! timeout 2 getent hosts "${host}" >/dev/null 2>&1; then
      dr_result fail "the registry host ${host} does not resolve"; return
    fi
  fi
  dr_result "$( ((${#silent[@]})) && echo warn || echo pass)" \
    "nameserver(s) answering: ${answering[*]}${silent[*]:+; not answering: ${silent[*]}}"
}

doctor_check_airgap_deps() {
  local missing=() f
  if [[ -z "${K3S_ARTIFACTS_DIR}" && -z "${REGISTRY}" ]]; then
    dr_result skipped "not an air-gapped install (K3S_ARTIFACTS_DIR and REGISTRY are unset)"; return
  fi
  # k3s' system images come from the airgap images tarball, or through the site registry's mirror
  # (registries.yaml covers them): only with neither is a missing tarball a missing dependency
  if [[ -n "${K3S_ARTIFACTS_DIR}" && -z "${REGISTRY}" ]] && ! compgen -G "${K3S_IMAGES_DIR}/k3s-airgap-images-*" >/dev/null; then
    missing+=("k3s airgap images in ${K3S_IMAGES_DIR#"${GL_ROOT}"} (and no REGISTRY mirror to pull them from)")
  fi
  if [[ -n "${REGISTRY}" && ! -s "${K3S_REGISTRIES}" ]]; then missing+=("${K3S_REGISTRIES#"${GL_ROOT}"}"); fi
  if [[ -n "${REGISTRY_CA_FILE}" && ! -s "${K3S_REGISTRY_CA_DEST}" ]]; then missing+=("${K3S_REGISTRY_CA_DEST#"${GL_ROOT}"}"); fi
  if [[ -n "${API_VIP}" && "${DOCTOR_ROLE}" != agent ]]; then
    for f in haproxy keepalived; do command -v "${f}" >/dev/null 2>&1 || missing+=("the ${f} package"); done
  fi
  if ((${#missing[@]})); then dr_result fail "missing: $(printf '%s, ' "${missing[@]}" | sed 's/, $//')"
  else dr_result pass "air-gap dependencies present${K3S_ARTIFACTS_DIR:+ (airgap images)}${REGISTRY:+ (registries.yaml${REGISTRY_CA_FILE:+, registry CA})}"; fi
}
