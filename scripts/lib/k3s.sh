#!/usr/bin/env bash
# lib/k3s.sh: the k3s install function shared by 02_install_k3s.sh and 02_init_control_plane.sh,
# plus k3s_mode / k3s_service_active for the health phase. Sourced after lib/common.sh and
# lib/checks.sh; inlined verbatim into generated standalone scripts.
#
# Like k3s' install.sh: verify the binary against the release's sha256sum-<arch>.txt (and
# K3S_SHA256) BEFORE touching the host; configure k3s through /etc/rancher/k3s/config.yaml;
# hash binary + config + unit + env before and after and restart only when something changed.
# Without systemd (containers, tests) the service runs from a pidfile under $GL_ROOT/run/.
# shellcheck disable=SC2034  # K3S_* path variables are used by the sourcing phase scripts

K3S_STANDIN_MARKER="GLDEPLOY_K3S_STANDIN"   # bytes only the test stand-in carries
K3S_ROLES="single first-server server agent"

# --- paths (everything under the GL_ROOT sandbox prefix) ---
k3s_paths() {
  K3S_BIN=$(gl_path /usr/local/bin/k3s)
  K3S_ETC=$(gl_path /etc/rancher/k3s)
  K3S_CONFIG="${K3S_ETC}/config.yaml"
  K3S_REGISTRIES="${K3S_ETC}/registries.yaml"
  K3S_KUBECONFIG="${K3S_ETC}/k3s.yaml"
  K3S_TOKEN_DEST="${K3S_ETC}/cluster-token"
  K3S_REGISTRY_CA_DEST="${K3S_ETC}/registry-ca.crt"
  K3S_UNIT=$(gl_path /etc/systemd/system/k3s.service)
  K3S_UNIT_ENV=$(gl_path /etc/systemd/system/k3s.service.env)
  K3S_DATA_DIR=$(gl_path /var/lib/rancher/k3s)
  K3S_IMAGES_DIR="${K3S_DATA_DIR}/agent/images"
  K3S_PIDFILE=$(gl_path /run/gl-deploy/k3s.pid)
  K3S_LOG=$(gl_path /var/log/k3s.log)
  K3S_KILLALL=$(gl_path /usr/local/bin/k3s-killall.sh)
  K3S_UNINSTALL=$(gl_path /usr/local/bin/k3s-uninstall.sh)
}
k3s_paths

k3s_binary_name() { if [[ "${K3S_ARCH:-amd64}" == amd64 ]]; then echo k3s; else echo "k3s-${K3S_ARCH}"; fi; }
k3s_sums_name() { echo "sha256sum-${K3S_ARCH:-amd64}.txt"; }

# --- facts used by phase 04 ---
# k3s_mode: "real", "standin" (the test stand-in, recognised by its marker) or "none"
k3s_mode() {
  if [[ ! -x "${K3S_BIN}" ]]; then echo none
  elif grep -qaF "${K3S_STANDIN_MARKER}" "${K3S_BIN}"; then echo standin
  else echo real; fi
}

# k3s_pid: print the pid of the pidfile-managed k3s when it is alive and really k3s
k3s_pid() {
  local pid cmdline
  [[ -r "${K3S_PIDFILE}" ]] || return 1
  pid=$(<"${K3S_PIDFILE}")
  [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null || return 1
  cmdline=$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null) || return 1
  [[ "${cmdline}" == *"${K3S_BIN}"* ]] || return 1
  printf '%s\n' "${pid}"
}

# k3s_service_active: 0 when the k3s service runs (systemd unit, else the pidfile process)
k3s_service_active() {
  if gl_has_systemd; then systemctl is-active --quiet k3s; return; fi
  k3s_pid >/dev/null
}

# --- input validation: exit 2, nothing touched ---
_k3s_secret_file_ok() {  # KEY PATH: readable, non-empty, not readable by group/others
  local key="$1" file="$2" mode
  [[ -f "${file}" && -r "${file}" ]] || die_input "${key}=${file}: file not found or unreadable; create it (mode 0600) or clear ${key}"
  [[ -s "${file}" ]] || die_input "${key}=${file}: file is empty; put the secret in it"
  mode=$(stat -c %a "${file}")
  [[ "${mode}" =~ ^[0-7]?[0-7]00$ ]] || die_input "${key}=${file}: mode ${mode} lets others read a secret; run: chmod 600 '${file}'"
}

k3s_validate() {  # ROLE
  local role="$1" dir
  [[ " ${K3S_ROLES} " == *" ${role} "* ]] || die_input "--role ${role}: expected one of: ${K3S_ROLES// /, }"
  case "${role}" in server|agent)
    die_input "role ${role} is not available yet: HA join arrives with the cluster work (valid now: single, first-server)" ;;
  esac
  [[ -n "${K3S_VERSION:-}" ]] || die_input "K3S_VERSION is empty; set it, e.g. K3S_VERSION=v1.28.3+k3s2"
  [[ -n "${CONTROL_PLANE_IPS:-}" ]] || die_input "CONTROL_PLANE_IPS is empty; set the server address(es)"
  [[ "${API_PORT:-}" =~ ^[0-9]+$ ]] || die_input "API_PORT=${API_PORT:-}: expected a port number such as 6443"
  if [[ -n "${K3S_ARTIFACTS_DIR:-}" ]]; then
    dir=$(gl_bundle_path "${K3S_ARTIFACTS_DIR}")
    [[ -d "${dir}" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: ${dir} is not a directory; point it at a k3s release copy or clear it to download"
    [[ -f "${dir}/$(k3s_binary_name)" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: no $(k3s_binary_name) in ${dir}; copy the release asset there"
    [[ -f "${dir}/$(k3s_sums_name)" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: no $(k3s_sums_name) in ${dir}; copy it from the same release (it is how the binary is verified)"
  else
    [[ -n "${K3S_RELEASE_URL:-}" ]] || die_input "K3S_ARTIFACTS_DIR and K3S_RELEASE_URL are both empty; set one of them"
  fi
  if [[ -n "${K3S_TOKEN_FILE:-}" ]]; then _k3s_secret_file_ok K3S_TOKEN_FILE "$(gl_bundle_path "${K3S_TOKEN_FILE}")"; fi
  if [[ -n "${REGISTRY_PASSWORD_FILE:-}" ]]; then
    _k3s_secret_file_ok REGISTRY_PASSWORD_FILE "$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")"
  fi
  if [[ -n "${REGISTRY_CA_FILE:-}" ]]; then
    [[ -r "$(gl_bundle_path "${REGISTRY_CA_FILE}")" ]] || die_input "REGISTRY_CA_FILE=${REGISTRY_CA_FILE}: file not found; copy the registry's CA certificate (PEM) there"
  fi
  return 0
}

# --- artifacts: local directory or download, then verify (before anything is touched) ---
K3S_SRC_DIR=""
k3s_fetch() {  # sets K3S_SRC_DIR to the directory holding the release assets
  local dir url version asset
  if [[ -n "${K3S_ARTIFACTS_DIR:-}" ]]; then K3S_SRC_DIR=$(gl_bundle_path "${K3S_ARTIFACTS_DIR}"); return 0; fi
  gl_tmpdir dir
  version="${K3S_VERSION//+/%2B}"
  for asset in "$(k3s_binary_name)" "$(k3s_sums_name)"; do
    url="${K3S_RELEASE_URL%/}/${version}/${asset}"
    info "downloading ${url}"
    curl -fsSL --retry 3 --connect-timeout 10 --max-time 600 -o "${dir}/${asset}" "${url}" \
      || { K3S_VERIFY_ERROR="download of ${url} failed"; return 1; }
  done
  K3S_SRC_DIR="${dir}"
}

# k3s_expected_sum SUMS ASSET: the sha256 listed for ASSET ("<sha>  <asset>" lines)
k3s_expected_sum() {
  local sum name
  while read -r sum name; do
    if [[ "${name#\*}" == "$2" ]]; then printf '%s\n' "${sum}"; return 0; fi
  done <"$1"
  return 1
}

K3S_VERIFY_ERROR=""
k3s_verify() {  # DIR: 0 when the binary and listed image tarballs match; else K3S_VERIFY_ERROR
  local dir="$1" bin sums want got f
  bin="$(k3s_binary_name)" sums="${dir}/$(k3s_sums_name)"
  want=$(k3s_expected_sum "${sums}" "${bin}") \
    || { K3S_VERIFY_ERROR="$(k3s_sums_name) does not list ${bin}"; return 1; }
  got=$(sha256sum "${dir}/${bin}") && got="${got%% *}"
  if [[ "${got}" != "${want}" ]]; then
    K3S_VERIFY_ERROR="sha256 of ${dir}/${bin} is ${got}, but $(k3s_sums_name) lists ${want}"; return 1
  fi
  if [[ -n "${K3S_SHA256:-}" && "${got}" != "${K3S_SHA256,,}" ]]; then
    K3S_VERIFY_ERROR="sha256 of ${dir}/${bin} is ${got}, but K3S_SHA256 is ${K3S_SHA256}"; return 1
  fi
  for f in "${dir}"/k3s-airgap-images-"${K3S_ARCH:-amd64}".tar*; do
    [[ -f "${f}" ]] || continue
    if ! want=$(k3s_expected_sum "${sums}" "$(basename "${f}")"); then
      K3S_VERIFY_ERROR="$(basename "${f}") is not listed in $(k3s_sums_name); refusing an unverifiable image tarball"; return 1
    fi
    got=$(sha256sum "${f}") && got="${got%% *}"
    [[ "${got}" == "${want}" ]] || { K3S_VERIFY_ERROR="sha256 of ${f} is ${got}, but $(k3s_sums_name) lists ${want}"; return 1; }
  done
  return 0
}

# --- rendering (into a staging dir; installed afterwards with gl_install_file) ---
_k3s_yaml_list() {  # KEY ITEM...: a YAML list, skipped when empty
  local key="$1" item; shift
  (( $# )) || return 0
  printf '%s:\n' "${key}"
  for item in "$@"; do printf '  - %s\n' "$(gl_json_str "${item}")"; done
}

k3s_address_is_local() {
  local addr="$1" addrs
  if command -v ip >/dev/null 2>&1; then
    addrs=$(ip -o -4 addr show 2>/dev/null || true)  # captured: grep -q in a pipe + pipefail = SIGPIPE races
    [[ "${addrs}" == *" ${addr}/"* ]]
  else
    [[ " $(hostname -I 2>/dev/null) " == *" ${addr} "* ]]
  fi
}

k3s_render_config() {  # ROLE OUT
  local role="$1" out="$2" first sans=() disable=()
  IFS=, read -r -a sans <<<"${CONTROL_PLANE_IPS}"
  first="${sans[0]}"
  [[ -z "${API_VIP:-}" ]] || sans+=("${API_VIP}")
  sans+=("$(uname -n)")
  IFS=, read -r -a disable <<<"${K3S_DISABLE:-}"
  {
    printf '# Managed by GL-Native Deploy (%s, role %s); local edits are overwritten.\n' "${GL_PHASE}" "${role}"
    printf 'write-kubeconfig-mode: "0600"\n'
    printf 'https-listen-port: %s\n' "${API_PORT}"
    printf 'cluster-cidr: %s\n' "$(gl_json_str "${CLUSTER_CIDR}")"
    printf 'service-cidr: %s\n' "$(gl_json_str "${SERVICE_CIDR}")"
    printf 'secrets-encryption: %s\n' "$([[ "${SECRETS_ENCRYPTION:-true}" == true ]] && echo true || echo false)"
    _k3s_yaml_list tls-san "${sans[@]}"
    _k3s_yaml_list disable "${disable[@]}"
    if k3s_address_is_local "${first}"; then printf 'node-ip: %s\n' "$(gl_json_str "${first}")"; fi
    if [[ -n "${K3S_TOKEN_FILE:-}" ]]; then printf 'token-file: %s\n' "$(gl_json_str "${K3S_TOKEN_DEST}")"; fi
    if [[ "${role}" == first-server ]]; then printf 'cluster-init: true\n'; fi
    if [[ -n "${GL_ROOT}" ]]; then  # sandbox only: k3s' defaults are right on real hosts
      printf 'data-dir: %s\n' "$(gl_json_str "${K3S_DATA_DIR}")"
      printf 'write-kubeconfig: %s\n' "$(gl_json_str "${K3S_KUBECONFIG}")"
    fi
  } >"${out}"
}

k3s_render_registries() {  # OUT; the password goes from its file into OUT only (printf is a builtin)
  local out="$1" reg="${REGISTRY}" password=""
  if [[ -n "${REGISTRY_PASSWORD_FILE:-}" ]]; then password=$(<"$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")"); fi
  (
    umask 077
    {
      printf '# Managed by GL-Native Deploy; k3s must be restarted after a change (this phase does it).\n'
      printf 'mirrors:\n  %s:\n    endpoint:\n      - %s\n' "$(gl_json_str "${reg}")" "$(gl_json_str "https://${reg}")"
      printf 'configs:\n  %s:\n' "$(gl_json_str "${reg}")"
      if [[ -n "${REGISTRY_CA_FILE:-}" ]]; then
        printf '    tls:\n      ca_file: %s\n' "$(gl_json_str "${K3S_REGISTRY_CA_DEST}")"
      fi
      if [[ -n "${REGISTRY_USER:-}" ]]; then
        printf '    auth:\n      username: %s\n      password: %s\n' "$(gl_json_str "${REGISTRY_USER}")" "$(gl_json_str "${password}")"
      fi
    } >"${out}"
  )
}

k3s_render_unit() {  # ROLE OUT: the unit k3s' install.sh writes for a server
  cat >"$2" <<'EOF'
[Unit]
Description=Lightweight Kubernetes (managed by GL-Native Deploy)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/k3s.service.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s server
EOF
}

k3s_render_env() {  # OUT: K3S_* environment of the service (install.sh keeps it 0600)
  {
    printf '# Managed by GL-Native Deploy: environment of k3s.service (K3S_* / proxy variables).\n'
    printf '# Settings live in config.yaml; secrets in 0600 files referenced from there.\n'
  } >"$1"
}

k3s_render_killall() {  # OUT: stop k3s and what it left running (k3s-killall.sh)
  {
    printf '#!/usr/bin/env bash\n# k3s-killall.sh (GL-Native Deploy): stop k3s and its containers; data is kept.\nset -uo pipefail\n'
    printf 'K3S_PIDFILE=%q\nK3S_BIN=%q\nK3S_DATA_DIR=%q\nGL_SANDBOX=%q\n' \
      "${K3S_PIDFILE}" "${K3S_BIN}" "${K3S_DATA_DIR}" "$([[ -n "${GL_ROOT}" ]] && echo 1 || echo 0)"
    cat <<'BODY'
if [[ "${GL_SANDBOX}" == 0 && "$(id -u)" -ne 0 ]]; then echo "k3s-killall.sh: run as root" >&2; exit 1; fi
if [[ "${GL_SANDBOX}" == 0 && -d /run/systemd/system ]]; then systemctl stop k3s 2>/dev/null || true; fi
if [[ -r "${K3S_PIDFILE}" ]]; then
  pid=$(<"${K3S_PIDFILE}")
  cmdline=$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)
  if [[ "${pid}" =~ ^[0-9]+$ && "${cmdline}" == *"${K3S_BIN}"* ]]; then
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 50); do  # gone, or a zombie waiting for init to reap it
      state=$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null || true)
      [[ -n "${state}" && "${state}" != Z ]] || break
      sleep 0.1
    done
    [[ -z "${state}" || "${state}" == Z ]] || kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${K3S_PIDFILE}"
fi
if [[ "${GL_SANDBOX}" == 0 ]]; then  # as k3s' own killall: shims, mounts, CNI interfaces
  mapfile -t shims < <(pgrep -f "${K3S_DATA_DIR}/data/[^/]+/bin/containerd-shim" || true)
  if (( ${#shims[@]} )); then kill -9 "${shims[@]}" 2>/dev/null || true; fi
  for prefix in /run/k3s /var/lib/kubelet/pods /var/lib/kubelet/plugins /run/netns/cni-; do
    awk -v p="${prefix}" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r \
      | while read -r m; do umount -f "${m}" 2>/dev/null || true; done
  done
  for link in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6; do
    ip link show "${link}" >/dev/null 2>&1 && ip link delete "${link}" || true
  done
  rm -rf /var/lib/cni/
fi
echo "k3s stopped"
BODY
  } >"$1"
}

k3s_render_uninstall() {  # OUT: remove everything the install created (k3s-uninstall.sh)
  {
    printf '#!/usr/bin/env bash\n# k3s-uninstall.sh (GL-Native Deploy): stop k3s and remove it with its data.\nset -uo pipefail\n'
    printf 'GL_SANDBOX=%q\nK3S_KILLALL=%q\nK3S_BIN=%q\nK3S_ETC=%q\nK3S_DATA_DIR=%q\nK3S_UNIT=%q\nK3S_UNIT_ENV=%q\nK3S_LOG=%q\nSELF=%q\n' \
      "$([[ -n "${GL_ROOT}" ]] && echo 1 || echo 0)" "${K3S_KILLALL}" "${K3S_BIN}" "${K3S_ETC}" \
      "${K3S_DATA_DIR}" "${K3S_UNIT}" "${K3S_UNIT_ENV}" "${K3S_LOG}" "${K3S_UNINSTALL}"
    cat <<'BODY'
"${K3S_KILLALL}"
if [[ "${GL_SANDBOX}" == 0 && -d /run/systemd/system ]]; then
  systemctl disable k3s 2>/dev/null || true
  rm -f "${K3S_UNIT}" "${K3S_UNIT_ENV}"; systemctl daemon-reload
else
  rm -f "${K3S_UNIT}" "${K3S_UNIT_ENV}"
fi
for name in kubectl crictl ctr; do
  link="$(dirname "${K3S_BIN}")/${name}"
  if [[ -L "${link}" && "$(readlink "${link}")" == "${K3S_BIN}" ]]; then rm -f "${link}"; fi
done
rm -rf "${K3S_ETC}" "${K3S_DATA_DIR}" "${K3S_LOG}"
if [[ "${GL_SANDBOX}" == 0 ]]; then rm -rf /var/lib/kubelet /var/lib/rancher/k3s; fi
rm -f "${K3S_BIN}" "${K3S_KILLALL}" "${SELF}"
echo "k3s removed"
BODY
  } >"$1"
}

# --- install ---
k3s_installed_hashes() {  # like install.sh get_installed_hashes, plus registries, token, images
  local f
  for f in "${K3S_BIN}" "${K3S_CONFIG}" "${K3S_REGISTRIES}" "${K3S_TOKEN_DEST}" "${K3S_REGISTRY_CA_DEST}" \
           "${K3S_UNIT}" "${K3S_UNIT_ENV}" "${K3S_IMAGES_DIR}"/*; do
    if [[ -f "${f}" ]]; then sha256sum "${f}"; fi
  done
}

K3S_CHANGED_FILES=()
_k3s_put() {  # SRC DEST MODE: install when different, remember what changed
  if [[ "$(gl_install_file "$1" "$2" "$3")" == changed ]]; then K3S_CHANGED_FILES+=("${2#"${GL_ROOT}"}"); fi
}

_k3s_remove_managed() {  # FILE: remove a file we wrote earlier and no longer want
  if [[ -f "$1" ]] && grep -q 'Managed by GL-Native Deploy' "$1"; then rm -f "$1"; K3S_CHANGED_FILES+=("${1#"${GL_ROOT}"} (removed)"); fi
}

k3s_install_files() {  # ROLE SRC_DIR
  local role="$1" src="$2" stage name link f
  gl_tmpdir stage
  mkdir -p "${K3S_ETC}" && chmod 0755 "${K3S_ETC}"
  _k3s_put "${src}/$(k3s_binary_name)" "${K3S_BIN}" 0755
  k3s_render_config "${role}" "${stage}/config.yaml" && _k3s_put "${stage}/config.yaml" "${K3S_CONFIG}" 0600
  if [[ -n "${K3S_TOKEN_FILE:-}" ]]; then _k3s_put "$(gl_bundle_path "${K3S_TOKEN_FILE}")" "${K3S_TOKEN_DEST}" 0600; fi
  if [[ -n "${REGISTRY:-}" ]]; then
    if [[ -n "${REGISTRY_CA_FILE:-}" ]]; then _k3s_put "$(gl_bundle_path "${REGISTRY_CA_FILE}")" "${K3S_REGISTRY_CA_DEST}" 0644; fi
    k3s_render_registries "${stage}/registries.yaml" && _k3s_put "${stage}/registries.yaml" "${K3S_REGISTRIES}" 0600
  else
    _k3s_remove_managed "${K3S_REGISTRIES}"
  fi
  k3s_render_unit "${role}" "${stage}/k3s.service" && _k3s_put "${stage}/k3s.service" "${K3S_UNIT}" 0644
  k3s_render_env "${stage}/k3s.service.env" && _k3s_put "${stage}/k3s.service.env" "${K3S_UNIT_ENV}" 0600
  k3s_render_killall "${stage}/killall" && _k3s_put "${stage}/killall" "${K3S_KILLALL}" 0755
  k3s_render_uninstall "${stage}/uninstall" && _k3s_put "${stage}/uninstall" "${K3S_UNINSTALL}" 0755
  for name in kubectl crictl ctr; do
    link="$(dirname "${K3S_BIN}")/${name}"
    if [[ -e "${link}" && ! -L "${link}" ]]; then info "skipping ${name} symlink: ${link} exists and is not ours"; continue; fi
    if [[ "$(readlink "${link}" 2>/dev/null)" != "${K3S_BIN}" ]]; then
      ln -sfn "${K3S_BIN}" "${link}"; K3S_CHANGED_FILES+=("${link#"${GL_ROOT}"}")
    fi
  done
  for f in "${src}"/k3s-airgap-images-"${K3S_ARCH:-amd64}".tar*; do
    if [[ -f "${f}" ]]; then _k3s_put "${f}" "${K3S_IMAGES_DIR}/$(basename "${f}")" 0644; fi
  done
}

# --- service: systemd when present, else a pidfile-managed process ---
k3s_stop() {
  local pid
  if gl_has_systemd; then systemctl stop k3s; return; fi
  pid=$(k3s_pid) || { rm -f "${K3S_PIDFILE}"; return 0; }
  kill -TERM "${pid}" 2>/dev/null || true
  for _ in $(seq 1 50); do k3s_pid >/dev/null || break; sleep 0.2; done  # k3s_pid: zombies count as gone
  if k3s_pid >/dev/null; then warn "k3s (pid ${pid}) ignored SIGTERM for 10s; killing it"; kill -KILL "${pid}" || true; fi
  rm -f "${K3S_PIDFILE}"
}

k3s_start() {
  if gl_has_systemd; then
    # --no-block: k3s is Type=notify with TimeoutStartSec=0; the bounded /ping wait follows instead
    systemctl daemon-reload && systemctl enable k3s >/dev/null 2>&1 && systemctl --no-block restart k3s; return
  fi
  mkdir -p "$(dirname "${K3S_PIDFILE}")" "$(dirname "${K3S_LOG}")"
  (
    set -a
    # shellcheck disable=SC1090
    source "${K3S_UNIT_ENV}"
    set +a
    exec setsid "${K3S_BIN}" server --config "${K3S_CONFIG}" >>"${K3S_LOG}" 2>&1 </dev/null
  ) &
  printf '%s\n' "$!" >"${K3S_PIDFILE}"
}

# _k3s_starting_alive: the service (or the just-forked process, maybe not yet exec'd) still runs
_k3s_starting_alive() {
  local pid state
  if gl_has_systemd; then [[ "$(systemctl is-active k3s 2>/dev/null)" =~ ^(active|activating|reloading)$ ]]; return; fi
  pid=$(<"${K3S_PIDFILE}") 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null) || return 1
  [[ -n "${state}" && "${state}" != Z ]]
}

# k3s_wait_ready SECONDS: /ping on API_PORT over TLS, verified against the server CA
k3s_wait_ready() {
  local timeout="$1" deadline ca
  ca="${K3S_DATA_DIR}/server/tls/server-ca.crt"
  deadline=$(( $(date +%s) + timeout ))
  until [[ -s "${ca}" ]] && [[ "$(curl -fsS --max-time 3 --cacert "${ca}" "https://127.0.0.1:${API_PORT}/ping" 2>/dev/null)" == pong ]]; do
    if ! _k3s_starting_alive; then
      K3S_VERIFY_ERROR="k3s exited while starting; last log lines: $(tail -n 5 "${K3S_LOG}" 2>/dev/null | tr '\n' ' ')"
      return 1
    fi
    if (( $(date +%s) >= deadline )); then
      K3S_VERIFY_ERROR="timed out after ${timeout}s waiting for https://127.0.0.1:${API_PORT}/ping (log: ${K3S_LOG#"${GL_ROOT}"})"
      return 1
    fi
    sleep 0.5
  done
}

# k3s_token_matches_ca: the server token's K10<hash> equals sha256 of the served CA
k3s_token_matches_ca() {
  local token ca_hash
  token=$(<"${K3S_DATA_DIR}/server/token") || return 1
  ca_hash=$(sha256sum "${K3S_DATA_DIR}/server/tls/server-ca.crt") && ca_hash="${ca_hash%% *}"
  [[ "${token}" == "K10${ca_hash}::"* ]]
}

# --- the phase: report helpers and the shared install function ---

# k3s_report: checks table to stderr, one JSON object to stdout with --json (changed filled in)
k3s_report() {
  local mode
  mode=$(k3s_mode)
  gl_checks_table
  if [[ "${GL_JSON}" == 1 ]]; then gl_checks_json "${mode}"; fi
}

# k3s_abort NAME MESSAGE FIX: record a failed check, report, exit 1
k3s_abort() {
  gl_check_fail "$1" "$2" "$3"
  _gl_log "FATAL" "$2"
  k3s_report
  exit 1
}

k3s_install_main() {  # ROLE
  local role="$1" before after pid
  k3s_validate "${role}"
  gl_require_root
  info "k3s ${K3S_VERSION} (${K3S_ARCH:-amd64}), role ${role}, API port ${API_PORT}"
  k3s_fetch || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; nothing was installed" \
    "check K3S_RELEASE_URL and K3S_VERSION, or set K3S_ARTIFACTS_DIR to a local copy of the release"
  k3s_verify "${K3S_SRC_DIR}" || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; refusing to install, nothing was changed" \
    "fetch $(k3s_binary_name) and $(k3s_sums_name) again from release ${K3S_VERSION}; check K3S_SHA256"
  gl_check_pass "k3s artifacts" "$(k3s_binary_name) ${K3S_VERSION} matches $(k3s_sums_name)$([[ -n "${K3S_SHA256:-}" ]] && echo ' and K3S_SHA256')"

  before=$(k3s_installed_hashes)
  k3s_install_files "${role}" "${K3S_SRC_DIR}"
  after=$(k3s_installed_hashes)
  if (( ${#K3S_CHANGED_FILES[@]} )); then
    GL_CHANGED=true
    gl_check_pass "k3s files" "updated: ${K3S_CHANGED_FILES[*]}"
  else
    gl_check_pass "k3s files" "binary, config.yaml, unit and env file already up to date"
  fi

  if [[ "${before}" == "${after}" ]] && k3s_service_active; then
    info "no change: nothing restarted"
    gl_check_pass "k3s service" "running, configuration unchanged: nothing restarted"
  else
    if k3s_service_active; then info "configuration changed: restarting k3s"; k3s_stop; else info "starting k3s"; fi
    GL_CHANGED=true
    k3s_start
    gl_check_pass "k3s service" "$([[ "${before}" == "${after}" ]] && echo "was not running: started" || echo "started with the new configuration")"
  fi
  k3s_wait_ready "${HEALTH_TIMEOUT:-180}" || k3s_abort "k3s api" "${K3S_VERIFY_ERROR}" \
    "read the k3s log ($(gl_has_systemd && echo 'journalctl -u k3s' || echo "${K3S_LOG#"${GL_ROOT}"}")); is port ${API_PORT} free?"
  gl_check_pass "k3s api" "https://127.0.0.1:${API_PORT}/ping answered pong (TLS verified against the server CA)"
  if k3s_token_matches_ca; then
    gl_check_pass "k3s token" "server token present (0600) and its CA hash matches the served CA"
  else
    k3s_abort "k3s token" "server token missing or its CA hash does not match server-ca.crt" \
      "inspect /var/lib/rancher/k3s/server/token; a token from another cluster cannot be reused"
  fi
  if pid=$(k3s_pid); then info "k3s running as pid ${pid} (log ${K3S_LOG})"; fi
  info "result: $([[ "${GL_CHANGED}" == true ]] && echo changed || echo 'no change')"
  k3s_report
}

# --- phase entry shared by 02_install_k3s.sh and 02_init_control_plane.sh ---
k3s_usage() {  # SCRIPT
  cat >&2 <<USAGE
usage: $1 [--json] [--role single|first-server|server|agent]
  --role   single: one server (default for TOPOLOGY=single); first-server: embedded etcd
           (cluster-init), the first server of an HA cluster; server/agent: HA join (not yet)
  --json   print one JSON result object on stdout
USAGE
}

k3s_default_role() {
  case "${TOPOLOGY:-single}" in
    single) echo single ;;
    *) die_input "TOPOLOGY=${TOPOLOGY}: pass --role first-server|server|agent for this host (02_init_control_plane.sh runs first-server)" ;;
  esac
}

# shellcheck disable=SC2034  # GL_JSON is read by checks.sh
k3s_phase_main() {  # SCRIPT DEFAULT_ROLE ARGS...: parse [--json] [--role R], load settings, install
  local script="$1" role="$2"
  shift 2
  while (( $# )); do
    case "$1" in
      --json) GL_JSON=1 ;;
      --role) (( $# > 1 )) || die_input "--role needs a value: single, first-server, server or agent"
              role="$2"; shift ;;
      --role=*) role="${1#--role=}" ;;
      -h|--help) k3s_usage "${script}"; exit 0 ;;
      *) k3s_usage "${script}"; die_input "unknown argument '$1'" ;;
    esac
    shift
  done
  gl_load_settings
  [[ -n "${role}" ]] || role=$(k3s_default_role)
  k3s_install_main "${role}"
}
