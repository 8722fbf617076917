#!/usr/bin/env bash
# lib/k3s_files.sh: render the files k3s is configured by (config.yaml, the unit and its 0600 env
# file, killall/uninstall scripts) into a staging dir; lib/k3s_install.sh then installs them with
# gl_install_file (registries.yaml is rendered by gldeploy and installed as is). Sourced after lib/k3s.sh.
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

K3S_SELINUX=false  # a host fact, decided by k3s_install_main (SELinux enforcing: k3s must know it)

# The server config.yaml keys k3s requires identical on every server of a cluster. They are written
# by k3s_cluster_config_lines only, and 06_health_check digests them from each server's installed
# config.yaml (k3s_cluster_digest): the controller compares the digests (config drift).
K3S_CLUSTER_KEYS="cluster-cidr service-cidr cluster-dns cluster-domain flannel-backend disable disable-network-policy secrets-encryption egress-selector-mode disable-kube-proxy"

k3s_cluster_config_lines() {  # the cluster-wide part of a server's config.yaml
  local disable=()
  IFS=, read -r -a disable <<<"${K3S_DISABLE}"
  printf 'cluster-cidr: %s\n' "$(gl_json_str "${CLUSTER_CIDR}")"
  printf 'service-cidr: %s\n' "$(gl_json_str "${SERVICE_CIDR}")"
  printf 'secrets-encryption: %s\n' "${SECRETS_ENCRYPTION}"
  _k3s_yaml_list disable "${disable[@]}"
  if declare -F k3s_cni_config_lines >/dev/null; then k3s_cni_config_lines; fi  # lib/cni.sh
}

# k3s_cluster_digest CONFIG TOKEN: "sha256:<hex>" over the K3S_CLUSTER_KEYS lines (with their list
# items) of an installed config.yaml, in file order, and the sha256 of the server token (the token
# itself never leaves the file)
k3s_cluster_digest() {
  local config="$1" token="$2" line key keep=0 text="" sum
  while IFS= read -r line || [[ -n "${line}" ]]; do
    if [[ "${line}" =~ ^([A-Za-z0-9-]+): ]]; then
      key="${BASH_REMATCH[1]}" keep=0
      if [[ " ${K3S_CLUSTER_KEYS} " == *" ${key} "* ]]; then keep=1; text+="${line%"${line##*[![:space:]]}"}"$'\n'; fi
    elif (( keep )) && [[ "${line}" =~ ^[[:space:]]+-[[:space:]] ]]; then
      text+="${line%"${line##*[![:space:]]}"}"$'\n'
    fi
  done <"${config}"
  if [[ -r "${token}" ]]; then
    sum=$(tr -d ' \t\r\n' <"${token}" | sha256sum) && text+="token-sha256: ${sum%% *}"$'\n'
  fi
  sum=$(printf '%s' "${text}" | sha256sum)
  printf 'sha256:%s\n' "${sum%% *}"
}

# k3s_site_config_lines: every node of an air-gapped site whose bastion serves DNS resolves through
# the file the node phase 03_site_node writes (k3s' resolv-conf: no upstream nameserver otherwise)
k3s_site_config_lines() {
  if [[ -n "${BASTION_IP}" && "${SITE_DNS}" == dnsmasq ]]; then
    printf 'resolv-conf: %s\n' "$(gl_json_str "$(gl_path /etc/gl-site/resolv.conf)")"
  fi
}

# k3s_etcd_config_lines ROLE: the scheduled etcd snapshots of a cluster server (embedded etcd); a single
# server runs SQLite and an agent no datastore
k3s_etcd_config_lines() {
  case "$1" in first-server|server)
    printf 'etcd-snapshot-schedule-cron: %s\n' "$(gl_json_str "${ETCD_SNAPSHOT_SCHEDULE}")"
    printf 'etcd-snapshot-retention: %s\n' "${ETCD_SNAPSHOT_RETENTION}" ;;
  esac
}

k3s_render_config() {  # ROLE OUT
  local role="$1" out="$2" own="" ip sans=()
  if [[ "${role}" == agent ]]; then  # lib/k3s_join.sh, then what every node of the site shares
    k3s_join_render_agent_config "${out}"
    k3s_site_config_lines >>"${out}"
    return
  fi
  IFS=, read -r -a sans <<<"${CONTROL_PLANE_IPS}"
  for ip in "${sans[@]}"; do  # node-ip: this server's own address (every server, not only the first)
    if k3s_address_is_local "${ip}"; then own="${ip}"; break; fi
  done
  [[ -z "${API_VIP}" ]] || sans+=("${API_VIP}")
  sans+=("$(uname -n)")
  {
    # no phase name here: 02_install_k3s.sh and 02_init_control_plane.sh must write identical files,
    # or running one after the other would rewrite config.yaml and restart k3s
    printf '# Managed by GL-Native Deploy (role %s); local edits are overwritten.\n' "${role}"
    printf 'write-kubeconfig-mode: "0600"\n'
    printf 'https-listen-port: %s\n' "${API_PORT}"
    k3s_cluster_config_lines
    _k3s_yaml_list tls-san "${sans[@]}"
    if [[ -n "${own}" ]]; then printf 'node-ip: %s\n' "$(gl_json_str "${own}")"; fi
    if [[ "${K3S_SELINUX}" == true ]]; then printf 'selinux: true\n'; fi
    if [[ -n "${K3S_TOKEN_FILE}" ]]; then printf 'token-file: %s\n' "$(gl_json_str "${K3S_TOKEN_DEST}")"; fi
    if [[ "${role}" == first-server ]]; then printf 'cluster-init: true\n'; fi
    if [[ "${role}" == server ]]; then k3s_join_server_config_lines; fi  # lib/k3s_join.sh: server: URL
    k3s_etcd_config_lines "${role}"
    k3s_site_config_lines
    if [[ -n "${GL_ROOT}" ]]; then  # sandbox only: k3s' defaults are right on real hosts
      printf 'data-dir: %s\n' "$(gl_json_str "${K3S_DATA_DIR}")"
      printf 'write-kubeconfig: %s\n' "$(gl_json_str "${K3S_KUBECONFIG}")"
    fi
  } >"${out}"
}

# k3s_render_unit OUT: the unit k3s' install.sh writes for the service of this role (lib/k3s.sh
# k3s_use_role): k3s.service Type=notify `k3s server`, or k3s-agent.service Type=exec `k3s agent`
k3s_render_unit() {
  cat >"$1" <<'EOF'
[Unit]
Description=Lightweight Kubernetes (managed by GL-Native Deploy)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EOF
  printf 'EnvironmentFile=-/etc/systemd/system/%s.service.env\n' "${K3S_SERVICE}" >>"$1"
  cat >>"$1" <<'EOF'
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
ExecStartPre=-/usr/local/bin/k3s-gl-state.sh --record
EOF
  printf 'Type=%s\nExecStart=/usr/local/bin/k3s %s\n' "${K3S_UNIT_TYPE}" "${K3S_EXEC}" >>"$1"
}

k3s_render_env() {  # OUT: K3S_* environment of the service (install.sh keeps it 0600)
  {
    printf '# Managed by GL-Native Deploy: environment of %s.service (K3S_* / proxy variables).\n' "${K3S_SERVICE}"
    printf '# Settings live in config.yaml; secrets in 0600 files referenced from there.\n'
  } >"$1"
}

# k3s_state_files: what k3s starts with; a change in any of them needs a restart
k3s_state_files() {
  printf '%s\n' "${K3S_BIN}" "${K3S_CONFIG}" "${K3S_REGISTRIES}" "${K3S_TOKEN_DEST}" "${K3S_REGISTRY_CA_DEST}" \
    "${K3S_UNIT}" "${K3S_UNIT_ENV}"
}

k3s_render_state_helper() {  # OUT: k3s-gl-state.sh, run by every start of k3s (ExecStartPre, pidfile start)
  local files=() f
  mapfile -t files < <(k3s_state_files)
  {
    printf '#!/usr/bin/env bash\n'
    printf '# k3s-gl-state.sh (GL-Native Deploy): sha256 over what k3s starts with (binary, config.yaml,\n'
    printf '# registries.yaml, token, registry CA, unit, env file, the k3s airgap image tarballs; not the\n'
    printf '# images phase 03 adds: it imports them itself).\n'
    printf '#   k3s-gl-state.sh            print it\n'
    printf '#   k3s-gl-state.sh --record   record it as what the starting k3s uses (its unit'"'"'s ExecStartPre)\n'
    printf '# Phase 02 restarts k3s when the installed files differ from what the running k3s recorded.\n'
    printf 'set -euo pipefail\nFILES=('
    for f in "${files[@]}"; do printf ' %q' "${f}"; done
    printf ' )\nIMAGES_DIR=%q\nRECORD=%q\n' "${K3S_IMAGES_DIR}" "${K3S_STARTED}"
    cat <<'BODY'
state() {
  local f sum
  sum=$(for f in "${FILES[@]}" "${IMAGES_DIR}"/k3s-airgap-images-*; do if [[ -f "${f}" ]]; then sha256sum "${f}"; fi; done | sha256sum)
  printf '%s\n' "${sum%% *}"
}
case "$*" in
  "") state ;;
  --record)
    umask 077
    mkdir -p "$(dirname "${RECORD}")"
    state >"${RECORD}.new"
    mv -f "${RECORD}.new" "${RECORD}" ;;
  *) echo "usage: k3s-gl-state.sh [--record]" >&2; exit 2 ;;
esac
BODY
  } >"$1"
}

k3s_render_killall() {  # OUT: k3s-killall.sh, as k3s' own: stop k3s and everything it left running
  {
    printf '#!/usr/bin/env bash\n'
    printf '# k3s-killall.sh (GL-Native Deploy): stop every k3s unit/process, the containers (shims and the\n'
    printf '# processes under them), unmount k3s mounts, remove CNI namespaces, interfaces and iptables rules.\n'
    printf '# Data is kept (%s removes it). Under a GL_ROOT sandbox (tests) every path is inside\n' "${K3S_UNINSTALL##*/}"
    printf '# the sandbox, and networking is touched only inside a named network namespace, never the host.\n'
    printf 'set -uo pipefail\n'
    printf 'R=%q\nGL_SANDBOX=%q\nK3S_BIN=%q\nK3S_DATA_DIR=%q\nK3S_PIDDIR=%q\n' "${GL_ROOT}" \
      "$([[ -n "${GL_ROOT}" ]] && echo 1 || echo 0)" "${K3S_BIN}" "${K3S_DATA_DIR}" "$(dirname "${K3S_PIDFILE}")"
    cat <<'BODY'
if [[ "${GL_SANDBOX}" == 0 && "$(id -u)" -ne 0 ]]; then echo "k3s-killall.sh: run as root" >&2; exit 1; fi
say() { printf 'k3s-killall: %s\n' "$*" >&2; }

gone() {  # PID: exited, or a zombie waiting to be reaped
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
  [[ -z "${state}" || "${state}" == Z ]]
}

stop_pidfile() {  # PIDFILE: a k3s started without systemd (lib/k3s.sh k3s_start)
  local pid cmdline
  pid=$(<"$1") || return 0
  cmdline=$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)
  if [[ "${pid}" =~ ^[0-9]+$ && "${cmdline}" == *"${K3S_BIN}"* ]]; then
    say "stopping k3s (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 50); do gone "${pid}" && break; sleep 0.1; done
    gone "${pid}" || kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "$1"
}

pschildren() { ps -e -o ppid= -o pid= | awk -v p="$1" '$1 == p {print $2}'; }
pstree_pids() {
  local pid child
  for pid in "$@"; do
    printf '%s\n' "${pid}"
    for child in $(pschildren "${pid}"); do pstree_pids "${child}"; done
  done
}
killtree() {  # PID...: the processes and everything under them, collected first, then SIGKILL
  local pids=()
  (( $# )) || return 0
  mapfile -t pids < <(pstree_pids "$@")
  say "killing ${#pids[@]} container processes"
  kill -9 "${pids[@]}" 2>/dev/null || true
}
getshims() {  # pids of containerd shims run from this k3s' data dir (<data-dir>/data/<hash>/bin/containerd-shim*)
  ps -e -ww -o pid= -o args= | awk -v d="${K3S_DATA_DIR}/data/" '{
    for (i = 2; i <= NF; i++)
      if (index($i, d) == 1 && substr($i, length(d) + 1) ~ /^[^\/]+\/bin\/containerd-shim/) { print $1; break }
  }'
}

mounts_under() {  # DIR: mount points at or below DIR, deepest first
  awk -v d="$1" '{ p = $2; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' /proc/self/mounts | sort -r
}
unmount_and_remove() {  # DIR: unmount everything at or below DIR and remove those mount points (runtime state)
  local path
  while IFS= read -r path; do
    say "unmounting ${path}"
    umount -f "${path}" 2>/dev/null || umount -l "${path}" 2>/dev/null || true
    rm -rf -- "${path}"
  done < <(mounts_under "$1")
}
unmount_below() {  # DIR: unmount what is mounted below DIR (containerd's mounts); DIR itself and the data stay
  local path
  while IFS= read -r path; do
    [[ "${path}" == "$1" ]] && continue
    say "unmounting ${path}"
    umount -f "${path}" 2>/dev/null || umount -l "${path}" 2>/dev/null || true
  done < <(mounts_under "$1")
}

network_allowed() {  # the real host; in a sandbox only inside a named (throwaway) network namespace
  local self ns
  [[ "${GL_SANDBOX}" == 0 ]] && return 0
  self=$(stat -L -c %i /proc/self/ns/net 2>/dev/null) || return 1
  for ns in /run/netns/*; do
    [[ -e "${ns}" && "$(stat -L -c %i "${ns}" 2>/dev/null)" == "${self}" ]] && return 0
  done
  return 1
}

remove_cni_namespaces() {
  local ns
  while read -r ns _; do
    [[ "${ns}" == cni-* ]] || continue
    say "deleting network namespace ${ns}"
    ip netns delete "${ns}" || true
  done < <(ip netns list 2>/dev/null)
}

remove_interfaces() {  # the veths on cni0, then k3s' flannel/CNI interfaces
  local iface
  while read -r _ iface _; do
    iface="${iface%:}"; iface="${iface%%@*}"
    [[ -n "${iface}" ]] && say "deleting interface ${iface}" && ip link delete "${iface}" 2>/dev/null
  done < <(ip -o link show master cni0 2>/dev/null)
  for iface in cni0 flannel.1 flannel-v6.1 kube-ipvs0 flannel-wg flannel-wg-v6; do
    if ip link show "${iface}" >/dev/null 2>&1; then say "deleting interface ${iface}"; ip link delete "${iface}"; fi
  done
}

remove_rules() {  # every KUBE-/CNI-/flannel rule and chain; other rules stay
  local tool rules kept
  for tool in iptables ip6tables; do
    command -v "${tool}-save" >/dev/null 2>&1 && command -v "${tool}-restore" >/dev/null 2>&1 || continue
    rules=$("${tool}-save" 2>/dev/null) || continue
    kept=$(grep -v -e KUBE- -e CNI- <<<"${rules}" | grep -iv flannel)
    [[ "${kept}" == "${rules}" ]] && continue
    say "removing KUBE-/CNI-/flannel rules (${tool})"
    "${tool}-restore" <<<"${kept}" || say "WARNING: ${tool}-restore failed; check the rules with ${tool}-save"
  done
}

main() {
  local unit pidfile
  if [[ "${GL_SANDBOX}" == 0 && -d /run/systemd/system ]]; then
    for unit in /etc/systemd/system/k3s*.service; do
      if [[ -s "${unit}" ]]; then say "stopping ${unit##*/}"; systemctl stop "${unit##*/}"; fi
    done
  fi
  for pidfile in "${K3S_PIDDIR}"/k3s*.pid; do
    if [[ -f "${pidfile}" ]]; then stop_pidfile "${pidfile}"; fi
  done
  local shims=()
  mapfile -t shims < <(getshims)
  killtree "${shims[@]}"
  unmount_and_remove "${R}/run/k3s"
  unmount_and_remove "${R}/var/lib/kubelet/pods"
  unmount_and_remove "${R}/var/lib/kubelet/plugins"
  unmount_below "${K3S_DATA_DIR}"
  while IFS= read -r unit; do  # /run/netns/cni-* bind mounts
    [[ "${unit##*/}" == cni-* ]] && umount -f "${unit}" 2>/dev/null && rm -f -- "${unit}"
  done < <(mounts_under "${R}/run/netns")
  if network_allowed; then
    remove_cni_namespaces
    remove_interfaces
    remove_rules
  else
    say "sandbox outside a named network namespace: host networking left alone"
  fi
  rm -rf -- "${R}/var/lib/cni"
  echo "k3s stopped"
}

main "$@"
BODY
  } >"$1"
}

# k3s_render_uninstall OUT: the uninstall script of this role's service (k3s-uninstall.sh, or
# k3s-agent-uninstall.sh on an agent, as k3s' install.sh names them): killall, then remove everything
# k3s and the install made, every k3s*.service unit and its env file included
k3s_render_uninstall() {
  local name="${K3S_UNINSTALL##*/}"
  {
    printf '#!/usr/bin/env bash\n'
    printf '# %s (GL-Native Deploy): run k3s-killall.sh, then remove k3s, its units, data,\n' "${name}"
    printf '# configuration, symlinks and this script. Under a GL_ROOT sandbox (tests) only sandbox paths.\n'
    printf 'set -uo pipefail\n'
    printf 'R=%q\nGL_SANDBOX=%q\nK3S_KILLALL=%q\nK3S_BIN=%q\nK3S_ETC=%q\nK3S_DATA_DIR=%q\nK3S_LOG=%q\n' "${GL_ROOT}" \
      "$([[ -n "${GL_ROOT}" ]] && echo 1 || echo 0)" "${K3S_KILLALL}" "${K3S_BIN}" "${K3S_ETC}" "${K3S_DATA_DIR}" "${K3S_LOG}"
    printf 'K3S_STATE_HELPER=%q\nK3S_STARTED=%q\nSELF=%q\nNAME=%q\nOTHER_UNINSTALL=%q\n' "${K3S_STATE_HELPER}" \
      "${K3S_STARTED}" "${K3S_UNINSTALL}" "${name}" "${K3S_OTHER_UNINSTALL}"
    # the bundle directory invoke shipped (WORK_DIR) and the tool directories beside it go too; a standalone
    # render (the operator's own copy, with the .gl-render marker) is never deleted
    local work=""
    if [[ -z "${GL_ROOT}" && -f "${GL_BUNDLE_DIR}/settings.env" && ! -e "${GL_BUNDLE_DIR}/.gl-render" ]]; then
      work="${GL_BUNDLE_DIR%/}"
    fi
    printf 'GL_DEPLOY_ETC=%q\nGL_WORK=%q\nLB_UNINSTALL=%q\n' "$(gl_path /etc/gl-deploy)" "${work}" \
      "$(gl_path /usr/local/bin/gl-lb-uninstall.sh)"
    cat <<'BODY'
if [[ "${GL_SANDBOX}" == 0 && "$(id -u)" -ne 0 ]]; then echo "${NAME}: run as root" >&2; exit 1; fi
trap 'rm -f -- "${SELF}"' EXIT

has_mounts() {  # DIR: something is mounted at or below DIR
  awk -v d="$1" '{ p = $2; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) f = 1 } END { exit !f }' /proc/self/mounts
}
clean_mounted_directory() {  # DIR: remove DIR, but never through a mount point (a data disk keeps its mount)
  local path
  if ! has_mounts "$1"; then rm -rf -- "$1"; return; fi
  for path in "$1"/* "$1"/.[!.]*; do
    [[ -e "${path}" || -L "${path}" ]] || continue
    if [[ -d "${path}" && ! -L "${path}" ]] && has_mounts "${path}"; then clean_mounted_directory "${path}"
    else rm -rf -- "${path}"; fi
  done
}

# what the deploy itself put on the host besides k3s: the pinned versions (the append-only CHANGELOG
# stays, with a line saying k3s was removed), the shipped bundle (WORK_DIR) and the tool directories
# beside it; backups written on the host (WORK_DIR-day2-backups) are data and stay
remove_gl_files() {
  local dir
  if [[ -d "${GL_DEPLOY_ETC}" ]]; then
    rm -f -- "${GL_DEPLOY_ETC}/versions.json"
    printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(hostname)" "k3s uninstalled (${NAME})" >>"${GL_DEPLOY_ETC}/CHANGELOG"
  fi
  [[ "${GL_WORK}" == /?*/?* ]] || return 0  # never / or a top-level directory
  # -day2-restore: where backup.restore stages a backup (token and CA key inside; the day-2 lab found it left)
  for dir in "${GL_WORK}" "${GL_WORK}-doctor" "${GL_WORK}-day2" "${GL_WORK}-day2-restore" "${GL_WORK}-restore"; do
    if [[ -d "${dir}" && ! -L "${dir}" ]]; then rm -rf -- "${dir}"; fi
  done
}

main() {
  local systemd=0 unit name link target
  if [[ "${GL_SANDBOX}" == 0 && -d /run/systemd/system ]]; then systemd=1; fi
  # a co-located load balancer goes first (the VIP moves to another node before this API stops)
  if [[ -x "${LB_UNINSTALL}" ]]; then
    "${LB_UNINSTALL}" || echo "${NAME%.sh}: gl-lb-uninstall.sh reported a failure; removing k3s anyway" >&2
  fi
  "${K3S_KILLALL}" || echo "${NAME%.sh}: k3s-killall.sh reported a failure; removing anyway" >&2
  for unit in "${R}"/etc/systemd/system/k3s*.service; do
    [[ -e "${unit}" ]] || continue
    if (( systemd )); then
      systemctl disable "${unit##*/}" >/dev/null 2>&1 || true
      systemctl reset-failed "${unit##*/}" >/dev/null 2>&1 || true
    fi
    rm -f -- "${unit}" "${unit}.env"
  done
  if (( systemd )); then systemctl daemon-reload; fi
  for name in kubectl crictl ctr; do  # only links to k3s (ours are absolute, install.sh's relative)
    link="$(dirname "${K3S_BIN}")/${name}"
    target=$(readlink "${link}" 2>/dev/null) || continue
    if [[ "${target}" == "${K3S_BIN}" || "${target}" == k3s ]]; then rm -f -- "${link}"; fi
  done
  rm -rf -- "${K3S_ETC}" "${R}/run/k3s" "${R}/run/flannel" "${R}/var/lib/kubelet"
  clean_mounted_directory "${K3S_DATA_DIR}"
  rm -f -- "${K3S_BIN}" "${K3S_KILLALL}" "${K3S_STATE_HELPER}" "${K3S_STARTED}" "${K3S_LOG}"
  # the other service's uninstall script, when this tool wrote it (a role change): nothing left for it
  if grep -qsF '(GL-Native Deploy)' "${OTHER_UNINSTALL}"; then rm -f -- "${OTHER_UNINSTALL}"; fi
  rmdir -- "${R}/etc/rancher" "${R}/var/lib/rancher" "${R}/run/gl-deploy" 2>/dev/null || true
  remove_gl_files
  echo "k3s removed"
}

main "$@"
BODY
  } >"$1"
}
