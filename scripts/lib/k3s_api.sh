#!/usr/bin/env bash
# lib/k3s_api.sh: k3s as the phases after the install find it: is it running and answering, and the
# one kubectl wrapper. Used by lib/backend_deploy.sh (03/05) and lib/health.sh (04/06).
# Sourced after lib/common.sh, lib/checks.sh and lib/k3s.sh; inlined into generated standalone scripts.

# k3s_api_ping: 0 when https://127.0.0.1:API_PORT/ping answers "pong". A liveness probe (nothing is
# sent but the request), so the serving certificate is not verified here; 04/06 check it separately.
k3s_api_ping() {
  [[ "$(curl -sk --max-time 3 "https://127.0.0.1:${API_PORT}/ping" 2>/dev/null || true)" == pong ]]
}

# k3s_kubectl ARGS...: the installed k3s' kubectl with the admin kubeconfig
k3s_kubectl() { KUBECONFIG="${K3S_KUBECONFIG}" "${K3S_BIN}" kubectl "$@"; }

# k3s_require_running NAME: before a phase changes anything: k3s installed, its service (or the
# pidfile process without systemd) running and the API answering /ping, in stand-in mode too.
# Records NAME as passed, or fails the phase (k3s_abort: report, exit 1). Sets K3S_RUNNING_MODE.
K3S_RUNNING_MODE=none
k3s_require_running() {
  local name="$1" tries=0 restart
  restart="run the install phase again (02_install_k3s.sh / 02_init_control_plane.sh): it starts a stopped k3s; its log: $(k3s_log_hint)"
  K3S_RUNNING_MODE=$(k3s_mode)
  if [[ "${K3S_RUNNING_MODE}" == none ]]; then
    k3s_abort "${name}" "k3s is not installed at ${K3S_BIN#"${GL_ROOT}"}" "run phase 02 (02_install_k3s.sh) first"
  fi
  k3s_service_active || k3s_abort "${name}" "k3s (${K3S_RUNNING_MODE}) is installed but its service is not running" "${restart}"
  until k3s_api_ping; do  # a few seconds of grace for an API that is just coming up
    (( ++tries < 5 )) || k3s_abort "${name}" "k3s runs but https://127.0.0.1:${API_PORT}/ping does not answer pong" "${restart}"
    sleep 1
  done
  gl_check_pass "${name}" "k3s (${K3S_RUNNING_MODE}) running, API on port ${API_PORT} answers$([[ "${K3S_RUNNING_MODE}" == standin ]] && echo '; the test stand-in: Kubernetes steps are skipped')"
}
