#!/usr/bin/env bash
# lib/k3s_join.sh: join a k3s cluster as a server or an agent (03_join_worker_node.sh; 02 with
# --role server). Before anything is installed the join is checked the way k3s checks it
# (pkg/clientaccess/token.go): GET <url>/cacerts, its hash against the token's K10<ca-hash>, the
# server certificate against that CA, then the token's secret on the supervisor API
# (/v1-k3s/server-bootstrap as user server, /v1-k3s/config as user node). A refusal leaves the
# host untouched. Sourced after lib/common.sh, checks.sh, k3s.sh, k3s_files.sh, k3s_install.sh.
# shellcheck disable=SC2034  # K3S_* variables are shared with lib/k3s*.sh

K3S_JOIN_ATTEMPTS=5      # tries of <url>/cacerts before the server counts as unreachable
K3S_JOIN_DELAY=2         # seconds between them
K3S_JOIN_BOOTSTRAP_RE='^[a-z0-9]{6}\.[a-z0-9]{16}$'   # `k3s token generate` (id.secret): agents only
K3S_JOIN_URL=""          # https://host:port, no trailing slash
K3S_JOIN_TOKEN_SOURCE="" # where the token came from, for messages (never the token itself)
K3S_JOIN_CA_HASH=""      # from the token
K3S_JOIN_USER=""         # server | node | "" (bootstrap token: bearer)
K3S_JOIN_ERROR="" K3S_JOIN_FIX=""
_K3S_JOIN_URL_ARG="" _K3S_JOIN_TOKEN_ARG="" _K3S_JOIN_TOKEN_FILE_ARG="" _K3S_JOIN_TOKEN_ARG_SET=0
K3S_SERVER_TOKEN_HINT="the full token from /var/lib/rancher/k3s/server/token on the first server"

# --- arguments: [--json] [--role agent|server] [--server-url URL] [--token-file FILE | --token TOKEN] ---
k3s_join_parse_args() {  # USAGE ARGS...
  local usage="$1" flag arg
  shift
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done  # bad input still answers in JSON
  while (( $# )); do
    case "$1" in
      --json) GL_JSON=1 ;;
      --role=*|--server-url=*|--token-file=*|--token=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
      --role|--server-url|--token-file|--token)
        flag="$1"
        (( $# > 1 )) || die_input "${flag} needs a value; usage: ${usage}"
        case "${flag}" in
          --role) GL_ROLE="$2" ;;
          --server-url) _K3S_JOIN_URL_ARG="$2" ;;
          --token-file) _K3S_JOIN_TOKEN_FILE_ARG="$2" ;;
          --token) _K3S_JOIN_TOKEN_ARG="$2"; _K3S_JOIN_TOKEN_ARG_SET=1 ;;
        esac
        shift ;;
      -h|--help) printf 'usage: %s\n' "${usage}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${usage}" ;;
    esac
    shift
  done
}

# k3s_join_check_url URL: https://host:port with host a name, an IPv4 or [IPv6] address; else exit 2
k3s_join_check_url() {
  local url="$1" re='^https://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})/?$'
  if [[ ! "${url}" =~ ${re} ]] || (( 10#${BASH_REMATCH[3]} < 1 || 10#${BASH_REMATCH[3]} > 65535 )); then
    die_input "--server-url '${url}': expected https://<host>:<port>, e.g. https://192.168.56.100:6443 (the API VIP and API_PORT)"
  fi
  K3S_JOIN_URL="${url%/}"
}

# k3s_join_resolve_url: --server-url, else API_SERVER_URL (derived by gldeploy: https://API_VIP:LB_PORT,
# the VIP's HAProxy frontend)
k3s_join_resolve_url() {
  if [[ -n "${_K3S_JOIN_URL_ARG}" ]]; then k3s_join_check_url "${_K3S_JOIN_URL_ARG}"; return; fi
  [[ -n "${API_SERVER_URL}" ]] || die_input "no server to join: set API_VIP (the virtual IP in front of the servers) in the env file; 03_join_worker_node.sh also takes --server-url https://<host>:<port>"
  k3s_join_check_url "${API_SERVER_URL}"
}

# k3s_join_resolve_token: --token-file, --token (warned), K3S_TOKEN, else K3S_TOKEN_FILE of the
# settings. The token ends up in a 0600 file and K3S_TOKEN_FILE names it: lib/k3s_install.sh copies it
# to /etc/rancher/k3s/cluster-token (0600) and config.yaml points k3s there (token-file).
k3s_join_resolve_token() {
  local dir
  if [[ -n "${_K3S_JOIN_TOKEN_FILE_ARG}" && "${_K3S_JOIN_TOKEN_ARG_SET}" == 1 ]]; then
    die_input "--token and --token-file both given; pass one of them (--token-file FILE, mode 0600, keeps the token off the command line)"
  fi
  if [[ -n "${_K3S_JOIN_TOKEN_FILE_ARG}" ]]; then
    _k3s_secret_file_ok --token-file "${_K3S_JOIN_TOKEN_FILE_ARG}"
    K3S_TOKEN_FILE="${_K3S_JOIN_TOKEN_FILE_ARG}" K3S_JOIN_TOKEN_SOURCE="--token-file ${_K3S_JOIN_TOKEN_FILE_ARG}"
  elif [[ "${_K3S_JOIN_TOKEN_ARG_SET}" == 1 || -n "${K3S_TOKEN:-}" ]]; then
    if [[ "${_K3S_JOIN_TOKEN_ARG_SET}" == 1 ]]; then
      warn "--token puts the join token on the command line, where other local users can read it (ps, /proc/<pid>/cmdline); use --token-file FILE (mode 0600) or K3S_TOKEN instead"
      K3S_JOIN_TOKEN_SOURCE="--token"
    else
      K3S_JOIN_TOKEN_SOURCE="K3S_TOKEN"
    fi
    gl_tmpdir dir
    (umask 077; printf '%s\n' "$([[ "${_K3S_JOIN_TOKEN_ARG_SET}" == 1 ]] && printf '%s' "${_K3S_JOIN_TOKEN_ARG}" || printf '%s' "${K3S_TOKEN}")" >"${dir}/token")
    [[ -n "$(<"${dir}/token")" ]] || die_input "${K3S_JOIN_TOKEN_SOURCE} is empty; pass ${K3S_SERVER_TOKEN_HINT}"
    K3S_TOKEN_FILE="${dir}/token"
  elif [[ -n "${K3S_TOKEN_FILE}" ]]; then
    K3S_TOKEN_FILE=$(gl_bundle_path "${K3S_TOKEN_FILE}") K3S_JOIN_TOKEN_SOURCE="K3S_TOKEN_FILE=${K3S_TOKEN_FILE}"
    _k3s_secret_file_ok K3S_TOKEN_FILE "${K3S_TOKEN_FILE}"
  else
    die_input "no join token: pass --token-file FILE (mode 0600) holding ${K3S_SERVER_TOKEN_HINT}, or set K3S_TOKEN"
  fi
  unset K3S_TOKEN _K3S_JOIN_TOKEN_ARG  # the file is the one copy from here on
}

# k3s_join_parse_token ROLE: K10<ca-hash>::<user>:<secret> (or ::<id>.<secret> for agents); exit 2
# with the reason otherwise. Messages name the token's source, never its value.
k3s_join_parse_token() {
  local role="$1" token creds src="${K3S_JOIN_TOKEN_SOURCE}"
  token=$(<"${K3S_TOKEN_FILE}")
  token="${token//[$'\t\r\n ']/}"
  if [[ "${token}" =~ ${K3S_JOIN_BOOTSTRAP_RE} || "${token}" =~ ^K10[0-9a-f]*::[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
    [[ "${role}" == agent ]] || die_input "${src}: this is an agent-only bootstrap token (k3s token generate/create, <id>.<secret>); it cannot join a server: k3s refuses it with 'failed to normalize server token; must be in format K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>'. Pass ${K3S_SERVER_TOKEN_HINT}"
  fi
  if [[ "${token}" != K10* ]]; then
    die_input "${src}: the token carries no cluster CA hash (it is not K10<ca-hash>::...), so this host could not tell the cluster from an impostor; pass ${K3S_SERVER_TOKEN_HINT}$([[ "${role}" == agent ]] && echo ' (or /var/lib/rancher/k3s/server/node-token)')"
  fi
  K3S_JOIN_CA_HASH="${token:3}" && K3S_JOIN_CA_HASH="${K3S_JOIN_CA_HASH%%::*}"
  [[ "${token}" == *::* ]] || die_input "${src}: invalid token format (expected K10<ca-hash>::<user>:<secret>); pass ${K3S_SERVER_TOKEN_HINT}"
  [[ "${K3S_JOIN_CA_HASH}" =~ ^[0-9a-f]{64}$ ]] || die_input "${src}: invalid token CA hash length (expected 64 hex digits after K10); pass ${K3S_SERVER_TOKEN_HINT}"
  creds="${token#*::}"
  if [[ "${creds}" =~ ${K3S_JOIN_BOOTSTRAP_RE} ]]; then K3S_JOIN_USER=""; return 0; fi
  [[ "${creds}" == *:?* ]] || die_input "${src}: invalid token format (expected K10<ca-hash>::<user>:<secret>); pass ${K3S_SERVER_TOKEN_HINT}"
  K3S_JOIN_USER="${creds%%:*}"
  if [[ "${role}" == server && "${K3S_JOIN_USER}" != server ]]; then
    die_input "${src}: a token for user '${K3S_JOIN_USER}' is an agent token; it cannot join a server (servers authenticate as user server). Pass ${K3S_SERVER_TOKEN_HINT}"
  fi
  [[ "${role}" == server ]] || K3S_JOIN_USER=node  # agents authenticate as node (k3s WithUser("node"))
}

# --- the handshake ---
# k3s_join_hash_ca FILE: k3s' hashCA: one certificate -> sha256 of the bytes as served; several ->
# sha256 of the DER of the root (a self-signed certificate after the first) the first chains to
k3s_join_hash_ca() {
  local file="$1" n dir i root="" sum
  n=$(grep -c -- '-----BEGIN CERTIFICATE-----' "${file}" || true)
  if (( n > 1 )); then
    command -v openssl >/dev/null 2>&1 || { K3S_JOIN_ERROR="the server's CA bundle holds ${n} certificates and openssl is missing to find its root"; return 1; }
    gl_tmpdir dir
    awk -v d="${dir}" '/-----BEGIN CERTIFICATE-----/ {n++} n {print > (d "/c" n ".pem")}' "${file}"
    for (( i = 2; i <= n; i++ )); do cat "${dir}/c${i}.pem"; done >"${dir}/others.pem"
    for (( i = 2; i <= n; i++ )); do
      mapfile -t names < <(openssl x509 -noout -subject -issuer -nameopt RFC2253 -in "${dir}/c${i}.pem" 2>/dev/null)
      [[ ${#names[@]} == 2 && "${names[0]#*=}" == "${names[1]#*=}" ]] || continue
      if openssl verify -CAfile "${dir}/c${i}.pem" -untrusted "${dir}/others.pem" "${dir}/c1.pem" >/dev/null 2>&1; then
        root="${dir}/c${i}.pem"; break
      fi
    done
    if [[ -n "${root}" ]]; then sum=$(openssl x509 -in "${root}" -outform DER | sha256sum); printf '%s\n' "${sum%% *}"; return 0; fi
  fi
  sum=$(sha256sum <"${file}")
  printf '%s\n' "${sum%% *}"
}

_k3s_join_curl_auth() {  # curl config lines on stdout: the credentials stay off the command line
  local token creds
  token=$(<"${K3S_TOKEN_FILE}")
  token="${token//[$'\t\r\n ']/}"
  creds="${token#*::}"
  if [[ -z "${K3S_JOIN_USER}" ]]; then creds="Authorization: Bearer ${creds}"
  else creds="${K3S_JOIN_USER}:${creds#*:}"; fi
  creds=${creds//\\/\\\\}; creds=${creds//\"/\\\"}
  if [[ -z "${K3S_JOIN_USER}" ]]; then printf 'header = "%s"\n' "${creds}"; else printf 'user = "%s"\n' "${creds}"; fi
}

# the handshake's three requests; each writes curl's stderr to DIR/err
_k3s_join_get_cacerts() {  # DIR: the CA bundle the server serves, unverified (-k), into DIR/cacerts
  curl -fsS -k --connect-timeout 5 --max-time 15 -o "$1/cacerts" "${K3S_JOIN_URL}/cacerts" 2>"$1/err"
}
_k3s_join_verify_cacerts() {  # DIR: the same URL again, now verified against that CA
  curl -fsS --cacert "$1/cacerts" --connect-timeout 5 --max-time 15 -o /dev/null "${K3S_JOIN_URL}/cacerts" 2>"$1/err"
}
_k3s_join_authenticate() {  # DIR PATH: PATH with the token's credentials (on stdin, never argv); status in DIR/code
  _k3s_join_curl_auth | curl -sS -K - --cacert "$1/cacerts" --connect-timeout 5 --max-time 30 \
    -H "k3s-Node-Name: $(gl_hostname)" -o /dev/null -w '%{http_code}' "${K3S_JOIN_URL}$2" >"$1/code" 2>"$1/err" || return
  case "$(<"$1/code")" in 5??|000) echo "HTTP $(<"$1/code") (server not ready)" >"$1/err"; return 75 ;; esac
}

# _k3s_join_retry DIR WHAT CMD...: CMD up to K3S_JOIN_ATTEMPTS times, K3S_JOIN_DELAY apart, while it fails
# the way a server that is (re)starting behind the VIP fails: connection refused or reset mid-handshake
# (curl 7, 35, 52, 56, ...), a timeout, a 5xx. A certificate that does not verify (curl 51, 60) is an
# answer, not a transient failure: no retry. 0 on success; else 1 with DIR/err holding the last error.
_k3s_join_retry() {
  local dir="$1" what="$2" attempt rc
  shift 2
  for (( attempt = 1; ; attempt++ )); do
    rc=0
    "$@" || rc=$?
    (( rc != 0 )) || return 0
    case "${rc}" in 51|60) return 1 ;; esac
    (( attempt < K3S_JOIN_ATTEMPTS )) || return 1
    info "join: ${what}: $(tr '\n' ' ' <"${dir}/err")(attempt ${attempt}/${K3S_JOIN_ATTEMPTS}; retrying in ${K3S_JOIN_DELAY}s)"
    sleep "${K3S_JOIN_DELAY}"
  done
}

# k3s_join_handshake ROLE: 0 when the server at K3S_JOIN_URL is the token's cluster and accepts the
# token's secret; else K3S_JOIN_ERROR / K3S_JOIN_FIX. Reads only; nothing on this host changes.
k3s_join_handshake() {
  local role="$1" dir got code path
  local addr="${K3S_JOIN_URL#https://}"
  gl_tmpdir dir
  if ! _k3s_join_retry "${dir}" "${K3S_JOIN_URL}/cacerts" _k3s_join_get_cacerts "${dir}"; then
    K3S_JOIN_ERROR="the server to join at ${addr} did not answer ${K3S_JOIN_URL}/cacerts after ${K3S_JOIN_ATTEMPTS} attempts (last: $(tr '\n' ' ' <"${dir}/err" | sed 's/ *$//'))"
    K3S_JOIN_FIX="check that the first server runs (02_init_control_plane.sh) and that ${addr} (API VIP / load balancer) is reachable from this host on port ${addr##*:}"
    return 1
  fi
  got=$(k3s_join_hash_ca "${dir}/cacerts") || { K3S_JOIN_FIX="install openssl"; return 1; }
  if [[ "${got}" != "${K3S_JOIN_CA_HASH}" ]]; then
    K3S_JOIN_ERROR="token CA hash does not match the Cluster CA certificate hash: ${K3S_JOIN_CA_HASH} != ${got}: the server at ${addr} is not the cluster this token (${K3S_JOIN_TOKEN_SOURCE}) belongs to"
    K3S_JOIN_FIX="pass ${K3S_SERVER_TOKEN_HINT} of this cluster, or point --server-url at its API VIP"
    return 1
  fi
  if ! _k3s_join_retry "${dir}" "${K3S_JOIN_URL}/cacerts (verified)" _k3s_join_verify_cacerts "${dir}"; then
    K3S_JOIN_ERROR="CA cert validation failed: the certificate ${addr} presents is not signed by the CA it serves or does not name ${addr%:*}: $(tr '\n' ' ' <"${dir}/err")"
    K3S_JOIN_FIX="add ${addr%:*} to the servers' tls-san (02 adds API_VIP and CONTROL_PLANE_IPS) and run 02 on the servers again"
    return 1
  fi
  path=$([[ "${role}" == server ]] && echo /v1-k3s/server-bootstrap || echo /v1-k3s/config)
  if ! _k3s_join_retry "${dir}" "${K3S_JOIN_URL}${path}" _k3s_join_authenticate "${dir}" "${path}"; then
    K3S_JOIN_ERROR="${K3S_JOIN_URL}${path}: $(tr '\n' ' ' <"${dir}/err")"
    K3S_JOIN_FIX="check that ${addr} is reachable and run the phase again"
    return 1
  fi
  code=$(<"${dir}/code")
  case "${code}" in
    200) return 0 ;;
    401) K3S_JOIN_ERROR="${K3S_JOIN_URL}${path}: 401 Unauthorized: the cluster refused the token's secret (${K3S_JOIN_TOKEN_SOURCE}); the server logs 'Failed to authenticate request from <this host>: invalid username/password combination'" ;;
    403) K3S_JOIN_ERROR="${K3S_JOIN_URL}${path}: 403 Forbidden: the token's user may not join as ${role}" ;;
    *) K3S_JOIN_ERROR="${K3S_JOIN_URL}${path}: unexpected HTTP status ${code}" ;;
  esac
  K3S_JOIN_FIX="pass ${K3S_SERVER_TOKEN_HINT} of this cluster (the secret after '::server:' must match)"
  return 1
}

# --- config.yaml per role ---
# agent: only keys `k3s agent` knows (server-only keys would be skipped with a warning)
k3s_join_render_agent_config() {  # OUT
  local out="$1" ip node_ip="" ips=()
  IFS=, read -r -a ips <<<"${WORKER_IPS},${CONTROL_PLANE_IPS}"
  for ip in "${ips[@]}"; do
    if [[ -n "${ip}" ]] && k3s_address_is_local "${ip}"; then node_ip="${ip}"; break; fi
  done
  {
    printf '# Managed by GL-Native Deploy (role agent); local edits are overwritten.\n'
    printf 'server: %s\n' "$(gl_json_str "${K3S_JOIN_URL}")"
    printf 'token-file: %s\n' "$(gl_json_str "${K3S_TOKEN_DEST}")"
    if [[ -n "${node_ip}" ]]; then printf 'node-ip: %s\n' "$(gl_json_str "${node_ip}")"; fi
    if [[ -n "${GL_ROOT}" ]]; then printf 'data-dir: %s\n' "$(gl_json_str "${K3S_DATA_DIR}")"; fi
  } >"${out}"
}

# server: the first server's keys (k3s_render_config) plus where to join; never cluster-init
k3s_join_server_config_lines() {
  printf 'server: %s\n' "$(gl_json_str "${K3S_JOIN_URL}")"
}

# --- after the start ---
# k3s_join_wait_agent SECONDS STAMP: the agent fetched its kubelet client certificate (newer than STAMP)
# and keeps the cluster CA the token names
k3s_join_wait_agent() {
  local timeout="$1" stamp="$2" deadline crt="${K3S_DATA_DIR}/agent/client-kubelet.crt" ca="${K3S_DATA_DIR}/agent/server-ca.crt"
  deadline=$(( $(date +%s) + timeout ))
  until [[ -s "${crt}" && -s "${ca}" && -z "$(find "${crt}" ! -newer "${stamp}" 2>/dev/null)" ]]; do
    if ! _k3s_starting_alive; then
      K3S_VERIFY_ERROR="k3s agent exited while joining; last log lines: $(tail -n 5 "${K3S_LOG}" 2>/dev/null | tr '\n' ' ')"
      return 1
    fi
    if (( $(date +%s) >= deadline )); then
      K3S_VERIFY_ERROR="timed out after ${timeout}s waiting for the agent's kubelet certificate from ${K3S_JOIN_URL} (log: ${K3S_LOG#"${GL_ROOT}"})"
      return 1
    fi
    sleep 0.5
  done
  [[ "$(k3s_join_hash_ca "${ca}")" == "${K3S_JOIN_CA_HASH}" ]] \
    || { K3S_VERIFY_ERROR="the agent keeps a cluster CA (${ca#"${GL_ROOT}"}) other than the token's"; return 1; }
}

_K3S_JOIN_VALIDATED=0
k3s_join_validate() {  # ROLE; once (02 validates before its load balancer step, the join again)
  local role="$1"
  [[ "${_K3S_JOIN_VALIDATED}" == 0 ]] || return 0
  case "${role}" in
    server|agent) ;;
    single|first-server) die_input "--role ${role} does not join a cluster: install it with 02_install_k3s.sh / 02_init_control_plane.sh (valid here: server, agent)" ;;
    *) die_input "--role ${role}: expected server or agent" ;;
  esac
  # the role-independent install checks (version, addresses, artifacts, secret files)
  k3s_validate first-server
  k3s_join_resolve_url
  k3s_join_resolve_token
  k3s_join_parse_token "${role}"
  if [[ "${role}" == server ]]; then k3s_cni_validate; fi
  _K3S_JOIN_VALIDATED=1
}

# k3s_join_main ROLE: validate -> verify artifacts -> handshake -> install -> (re)start -> joined
k3s_join_main() {
  local role="$1" reason="" stamp
  k3s_join_validate "${role}"
  k3s_use_role "${role}"
  gl_require_root
  k3s_other_service_check
  info "joining ${K3S_JOIN_URL} as ${role}: k3s ${K3S_VERSION} (${K3S_ARCH}), token from ${K3S_JOIN_TOKEN_SOURCE}"
  k3s_fetch || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; nothing was installed" \
    "check K3S_RELEASE_URL and K3S_VERSION, or set K3S_ARTIFACTS_DIR to a local copy of the release"
  k3s_verify "${K3S_SRC_DIR}" || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; refusing to install, nothing was changed" \
    "fetch $(k3s_binary_name) and $(k3s_sums_name) again from release ${K3S_VERSION}; check K3S_SHA256"
  gl_check_pass "k3s artifacts" "$(k3s_binary_name) ${K3S_VERSION} matches $(k3s_sums_name)"
  k3s_join_handshake "${role}" || k3s_abort "k3s join" "${K3S_JOIN_ERROR}; nothing was installed" "${K3S_JOIN_FIX}"
  gl_check_pass "k3s join" "${K3S_JOIN_URL}: CA hash matches the token, server certificate verified, token accepted (user ${K3S_JOIN_USER:-bootstrap})"

  if k3s_selinux_enforcing; then K3S_SELINUX=true; info "SELinux is enforcing: config.yaml sets selinux: true"; fi
  k3s_install_files "${role}" "${K3S_SRC_DIR}"
  if (( ${#K3S_CHANGED_FILES[@]} )); then GL_CHANGED=true; gl_check_pass "k3s files" "updated: ${K3S_CHANGED_FILES[*]}"
  else gl_check_pass "k3s files" "binary, config.yaml, token, unit and env file already up to date"; fi

  gl_tmpdir stamp && stamp="${stamp}/started" && : >"${stamp}"
  # restart decided from what the running k3s was started with (k3s_restart_reason), so a run
  # interrupted between writing the files and the restart is finished by the next run
  if k3s_service_active; then reason=$(k3s_restart_reason); fi
  if k3s_service_active && [[ -z "${reason}" ]]; then
    info "no change: nothing restarted"
    gl_check_pass "k3s service" "running, configuration unchanged: nothing restarted"
    touch -d @0 "${stamp}"  # the running agent's certificate counts
  else
    if k3s_service_active; then info "k3s ${reason#restarted}: restarting ${K3S_SERVICE} (k3s ${K3S_EXEC})"; k3s_stop; else info "starting ${K3S_SERVICE} (k3s ${K3S_EXEC})"; fi
    GL_CHANGED=true
    sleep 1 && touch "${stamp}" && sleep 1  # a certificate written from now on is newer (1s mtime)
    k3s_start
    gl_check_pass "k3s service" "${reason:-was not running: started} (k3s ${K3S_EXEC})"
  fi
  if [[ "${role}" == agent ]]; then
    k3s_join_wait_agent "${HEALTH_TIMEOUT}" "${stamp}" || k3s_abort "k3s joined" "${K3S_VERIFY_ERROR}" \
      "read the k3s log ($(k3s_log_hint))"
    gl_check_pass "k3s joined" "agent holds its kubelet client certificate from ${K3S_JOIN_URL} and the cluster CA of the token"
  else
    k3s_wait_ready "${HEALTH_TIMEOUT}" || k3s_abort "k3s joined" "${K3S_VERIFY_ERROR}" \
      "read the k3s log ($(k3s_log_hint))"
    sleep 1  # the answer must come from this server's k3s: it still runs a moment after /ping
    k3s_service_active || k3s_abort "k3s joined" "k3s exited after starting; last log lines: $(tail -n 3 "${K3S_LOG}" 2>/dev/null | tr '\n' ' ')" \
      "read the k3s log ($(k3s_log_hint)); is port ${API_PORT} free?"
    [[ "$(k3s_join_hash_ca "${K3S_DATA_DIR}/server/tls/server-ca.crt")" == "${K3S_JOIN_CA_HASH}" ]] && k3s_token_matches_ca \
      || k3s_abort "k3s joined" "this server does not serve the cluster CA of the token after joining ${K3S_JOIN_URL}" \
        "stop k3s, remove ${K3S_DATA_DIR#"${GL_ROOT}"}/server (a server installed before belongs to another cluster) and run again"
    gl_check_pass "k3s joined" "API answers on port ${API_PORT} with the cluster CA of the token (joined through ${K3S_JOIN_URL})"
  fi
  if [[ "$(k3s_mode)" == standin ]]; then
    gl_check_skip "node-ready" "skipped: needs real k3s (node registered and Ready)"
    if [[ "${role}" == server ]]; then gl_check_skip "etcd-member" "skipped: needs real k3s (etcd membership)"; fi
  else
    gl_check_skip "node-ready" "checked from the first server by the health check phase (a joining node has no cluster view yet)"
  fi
  gl_checks_finish "$(k3s_mode)"
}
