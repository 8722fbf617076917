#!/usr/bin/env bash
# lib/k3s.sh: k3s paths, mode (real | standin | none), service control, readiness and the phase
# report, shared by phases 01-04. The install itself is in lib/k3s_install.sh. Sourced after
# lib/common.sh and lib/checks.sh; inlined verbatim into generated standalone scripts.
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
  K3S_DATA_DIR=$(gl_path /var/lib/rancher/k3s)
  K3S_IMAGES_DIR="${K3S_DATA_DIR}/agent/images"
  K3S_PIDFILE=$(gl_path /run/gl-deploy/k3s.pid)
  K3S_STARTED=$(gl_path /run/gl-deploy/k3s.started)   # sha256 of the files the running k3s started with
  K3S_STATE_HELPER=$(gl_path /usr/local/bin/k3s-gl-state.sh)
  K3S_LOG=$(gl_path /var/log/k3s.log)
  K3S_KILLALL=$(gl_path /usr/local/bin/k3s-killall.sh)   # one for every role, as k3s' install.sh
}
k3s_paths

# --- the service: named by the role, as k3s' install.sh names it (the one place that decides it) ---
# server roles: k3s.service (Type=notify, `k3s server`), k3s-uninstall.sh; agent: k3s-agent.service
# (Type=exec: an agent sends no READY=1; `k3s agent`), k3s-agent-uninstall.sh. Each unit's env file is
# /etc/systemd/system/<unit>.env. K3S_OTHER_* name the other role's files: a leftover of a role change
# or of an earlier version of this tool, which installed every role as k3s.service.
K3S_SERVICE="" K3S_EXEC="" K3S_UNIT_TYPE="" K3S_UNIT="" K3S_UNIT_ENV="" K3S_UNINSTALL=""
K3S_OTHER_SERVICE="" K3S_OTHER_UNIT="" K3S_OTHER_UNINSTALL=""
k3s_service_names() {  # SERVICE OTHER
  K3S_SERVICE="$1" K3S_OTHER_SERVICE="$2"
  if [[ "$1" == k3s-agent ]]; then K3S_EXEC=agent K3S_UNIT_TYPE=exec; else K3S_EXEC=server K3S_UNIT_TYPE=notify; fi
  K3S_UNIT=$(gl_path "/etc/systemd/system/${K3S_SERVICE}.service")
  K3S_UNIT_ENV="${K3S_UNIT}.env"
  K3S_UNINSTALL=$(gl_path "/usr/local/bin/${K3S_SERVICE}-uninstall.sh")
  K3S_OTHER_UNIT=$(gl_path "/etc/systemd/system/${K3S_OTHER_SERVICE}.service")
  K3S_OTHER_UNINSTALL=$(gl_path "/usr/local/bin/${K3S_OTHER_SERVICE}-uninstall.sh")
}

# k3s_use_role ROLE: the service of this host's role (the phases and doctor: the plan passes --role)
k3s_use_role() {
  case "$1" in
    agent) k3s_service_names k3s-agent k3s ;;
    single|first-server|server) k3s_service_names k3s k3s-agent ;;
    *) die_input "--role $1: no k3s service for this role (expected one of: ${K3S_ROLES// /, })" ;;
  esac
}

# k3s_use_installed: the service installed on this host, for the tools that take no role (backup,
# restore, certs, upgrade, health checks): k3s-agent when only k3s-agent.service is there, else k3s
k3s_use_installed() {
  if [[ -e "$(gl_path /etc/systemd/system/k3s-agent.service)" && ! -e "$(gl_path /etc/systemd/system/k3s.service)" ]]; then
    k3s_service_names k3s-agent k3s
  else
    k3s_service_names k3s k3s-agent
  fi
}
k3s_use_installed

# k3s_log_hint: where to read why k3s failed, for messages
k3s_log_hint() {
  if gl_has_systemd; then printf 'journalctl -u %s\n' "${K3S_SERVICE}"; else printf '%s\n' "${K3S_LOG#"${GL_ROOT}"}"; fi
}

k3s_binary_name() { if [[ "${K3S_ARCH}" == amd64 ]]; then echo k3s; else echo "k3s-${K3S_ARCH}"; fi; }
k3s_sums_name() { echo "sha256sum-${K3S_ARCH}.txt"; }

# --- host facts used by phase 02 ---
# k3s_selinux_enforcing: SELinux is enforcing on this host (the sandbox root's file in tests)
k3s_selinux_enforcing() {
  local enforce
  enforce=$(gl_path /sys/fs/selinux/enforce)
  if [[ -r "${enforce}" ]]; then [[ "$(<"${enforce}")" == 1* ]]; return; fi
  [[ -z "${GL_ROOT}" ]] && command -v getenforce >/dev/null 2>&1 && [[ "$(getenforce 2>/dev/null)" == Enforcing ]]
}

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

# k3s_service_active: 0 when the k3s service (K3S_SERVICE) runs (systemd unit, else the pidfile process)
k3s_service_active() {
  if gl_has_systemd; then systemctl is-active --quiet "${K3S_SERVICE}"; return; fi
  k3s_pid >/dev/null
}

# --- service: systemd when present, else a pidfile-managed process ---
k3s_stop() {
  local pid
  if gl_has_systemd; then systemctl stop "${K3S_SERVICE}"; return; fi
  pid=$(k3s_pid) || { rm -f "${K3S_PIDFILE}"; return 0; }
  kill -TERM "${pid}" 2>/dev/null || true
  for _ in $(seq 1 50); do k3s_pid >/dev/null || break; sleep 0.2; done  # k3s_pid: zombies count as gone
  if k3s_pid >/dev/null; then warn "k3s (pid ${pid}) ignored SIGTERM for 10s; killing it"; kill -KILL "${pid}" || true; fi
  rm -f "${K3S_PIDFILE}"
}

k3s_start() {
  if gl_has_systemd; then
    # --no-block: a server's unit is Type=notify with TimeoutStartSec=0; the bounded wait follows instead
    systemctl daemon-reload && systemctl enable "${K3S_SERVICE}" >/dev/null 2>&1 && systemctl --no-block restart "${K3S_SERVICE}"; return
  fi
  mkdir -p "$(dirname "${K3S_PIDFILE}")" "$(dirname "${K3S_LOG}")"
  (
    set -a
    # shellcheck disable=SC1090
    source "${K3S_UNIT_ENV}"
    set +a
    # as the unit's ExecStartPre: record what this start uses (a failure only costs a restart later)
    "${K3S_STATE_HELPER}" --record || true
    exec setsid "${K3S_BIN}" "${K3S_EXEC}" --config "${K3S_CONFIG}" >>"${K3S_LOG}" 2>&1 </dev/null
  ) &
  printf '%s\n' "$!" >"${K3S_PIDFILE}"
}

# _k3s_starting_alive: the service (or the just-forked process, maybe not yet exec'd) still runs
_k3s_starting_alive() {
  local pid state
  if gl_has_systemd; then [[ "$(systemctl is-active "${K3S_SERVICE}" 2>/dev/null)" =~ ^(active|activating|reloading)$ ]]; return; fi
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

# --- phase report: the shared check report, with the installed k3s' mode ---
# k3s_abort NAME MESSAGE FIX: record a failed check, report, exit 1
k3s_abort() {
  gl_check_fail "$1" "$2" "$3"
  _gl_log "FATAL" "$2"
  gl_checks_report "$(k3s_mode)"
  exit 1
}
