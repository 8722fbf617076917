#!/usr/bin/env bash
# lib/k3s_files.sh: render the files k3s is configured by (config.yaml, registries.yaml, the unit
# and its 0600 env file, killall/uninstall scripts) into a staging dir; lib/k3s_install.sh then
# installs them with gl_install_file. Sourced after lib/k3s.sh.
# shellcheck disable=SC2034  # K3S_* variables are shared with lib/k3s.sh and the phase scripts

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
  if [[ "${role}" == agent ]]; then k3s_join_render_agent_config "${out}"; return; fi  # lib/k3s_join.sh
  IFS=, read -r -a sans <<<"${CONTROL_PLANE_IPS}"
  first="${sans[0]}"
  [[ -z "${API_VIP:-}" ]] || sans+=("${API_VIP}")
  sans+=("$(uname -n)")
  IFS=, read -r -a disable <<<"${K3S_DISABLE:-}"
  {
    # no phase name here: 02_install_k3s.sh and 02_init_control_plane.sh must write identical files,
    # or running one after the other would rewrite config.yaml and restart k3s
    printf '# Managed by GL-Native Deploy (role %s); local edits are overwritten.\n' "${role}"
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
    if [[ "${role}" == server ]]; then k3s_join_server_config_lines; fi  # lib/k3s_join.sh: server: URL
    if declare -F k3s_cni_config_lines >/dev/null; then k3s_cni_config_lines; fi  # lib/cni.sh
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
EOF
  printf 'ExecStart=/usr/local/bin/k3s %s\n' "$([[ "$1" == agent ]] && echo agent || echo server)" >>"$2"
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

