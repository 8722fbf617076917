#!/usr/bin/env bash
# 04_health_check.sh: read-only health check of k3s and the GL-Native Execution Backend on this server.
#
# Usage: 04_health_check.sh [--json]
#   --json   print one JSON result object on stdout (human table always goes to stderr).
#
# Checks, in order:
#   k3s-installed      k3s binary present; mode real|standin (lib/k3s.sh k3s_mode)
#   k3s-service        the k3s service is active (lib/k3s.sh k3s_service_active)
#   api-ping           https://127.0.0.1:API_PORT/ping answers "pong" (waits up to HEALTH_TIMEOUT)
#   api-cert-expiry    serving certificate: warn < 30 days left, fail < 7 days
#   token-mode, kubeconfig-mode
#                      /var/lib/rancher/k3s/server/token and /etc/rancher/k3s/k3s.yaml are 0600
#   node-ready, system-pods, backend-rollout, backend-healthz
#                      Kubernetes-level checks (k3s kubectl; one shared HEALTH_TIMEOUT budget).
#                      With the test stand-in of k3s they are "skipped" with reason
#                      "needs real k3s", never passed.
#
# Exit status (worst finding): 0 all passed (skipped counts as passed), 3 warnings only,
# 1 any check failed, 2 bad arguments or settings. Nothing on the host is changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include

readonly NEEDS_REAL="needs real k3s"
readonly K8S_CHECKS=(node-ready system-pods backend-rollout backend-healthz)
HC_MODE=none
HC_BIN=""
HC_DEADLINE=0
HC_API_UP=0

validate_settings() {
  local where="${GL_ENV_FILE:-settings.env}"
  API_PORT="${API_PORT:-6443}" HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-180}"
  NAMESPACE="${NAMESPACE:-gov-native}" BACKEND_INGRESS_HOST="${BACKEND_INGRESS_HOST:-backend.gov-native.local}"
  if [[ ! "${API_PORT}" =~ ^[0-9]+$ ]] || ((API_PORT < 1 || API_PORT > 65535)); then
    die_input "API_PORT='${API_PORT}' is not a TCP port (1-65535); fix it in ${where} (default 6443)"
  fi
  if [[ ! "${HEALTH_TIMEOUT}" =~ ^[0-9]+$ ]] || ((HEALTH_TIMEOUT < 1 || HEALTH_TIMEOUT > 3600)); then
    die_input "HEALTH_TIMEOUT='${HEALTH_TIMEOUT}' must be whole seconds 1-3600; fix it in ${where} (default 180)"
  fi
  [[ "${NAMESPACE}" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
    || die_input "NAMESPACE='${NAMESPACE}' is not a DNS label (lowercase letters, digits, '-'); fix it in ${where}"
  [[ "${BACKEND_INGRESS_HOST}" =~ ^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]] \
    || die_input "BACKEND_INGRESS_HOST='${BACKEND_INGRESS_HOST}' is not a host name; fix it in ${where}"
}

remaining() {  # seconds left of the shared HEALTH_TIMEOUT budget (at least 1)
  local left=$((HC_DEADLINE - $(date +%s)))
  ((left > 0)) || left=1
  printf '%s\n' "${left}"
}

# --- k3s itself ---
check_installed() {
  HC_BIN="${K3S_BIN}"
  HC_MODE="$(k3s_mode)"
  if [[ "${HC_MODE}" == none ]]; then
    gl_check_fail k3s-installed "k3s is not installed (no executable ${HC_BIN})" \
      "install it first: 02_install_k3s.sh (invoke install-k3s)"
    return 1
  fi
  local version
  version=$(timeout 5 "${HC_BIN}" --version 2>/dev/null | head -n1 || true)
  gl_check_pass k3s-installed "${version:-k3s} (mode ${HC_MODE})"
}

check_service() {
  if k3s_service_active; then
    gl_check_pass k3s-service "k3s service is active"
    return 0
  fi
  gl_check_fail k3s-service "k3s service is not active" \
    "start it (systemctl start k3s; OpenRC: rc-service k3s start) and read its log (journalctl -u k3s)"
  return 1
}

ping_api() {
  [[ "$(curl -sk --max-time 3 "https://127.0.0.1:${API_PORT}/ping" 2>/dev/null || true)" == pong ]]
}

check_api() {  # waits within the budget only when the service runs, else one try
  local service_up="$1"
  if ping_api || { [[ "${service_up}" == 1 ]] && wait_until ping_api; }; then
    HC_API_UP=1
    gl_check_pass api-ping "https://127.0.0.1:${API_PORT}/ping answered pong"
  else
    gl_check_fail api-ping "https://127.0.0.1:${API_PORT}/ping did not answer pong within ${HEALTH_TIMEOUT}s" \
      "check that k3s listens on ${API_PORT} (ss -ltnp 'sport = :${API_PORT}') and read its log (journalctl -u k3s)"
  fi
}

wait_until() {  # wait_until CMD...: retry until the shared deadline; 0 when CMD succeeded
  while (($(date +%s) < HC_DEADLINE)); do
    "$@" && return 0
    sleep 1
  done
  "$@"
}

check_cert() {
  if [[ "${HC_API_UP}" != 1 ]]; then
    gl_check_skip api-cert-expiry "API not answering (see api-ping)"
    return
  fi
  local end end_s days
  end=$(timeout 10 openssl s_client -connect "127.0.0.1:${API_PORT}" -servername 127.0.0.1 </dev/null 2>/dev/null \
        | openssl x509 -noout -enddate 2>/dev/null || true)
  end="${end#notAfter=}"
  if [[ -z "${end}" ]] || ! end_s=$(date -d "${end}" +%s 2>/dev/null); then
    gl_check_fail api-cert-expiry "could not read the serving certificate on 127.0.0.1:${API_PORT}" \
      "inspect it: openssl s_client -connect 127.0.0.1:${API_PORT} </dev/null | openssl x509 -noout -dates"
    return
  fi
  days=$(((end_s - $(date +%s)) / 86400))
  local rotate="k3s renews leaf certificates at start when < 90 days remain: restart k3s, or run k3s certificate rotate while k3s is stopped"
  if ((days < 7)); then
    gl_check_fail api-cert-expiry "serving certificate expires in ${days} days (${end})" "${rotate}"
  elif ((days < 30)); then
    gl_check_warn api-cert-expiry "serving certificate expires in ${days} days (${end})" "${rotate}"
  else
    gl_check_pass api-cert-expiry "serving certificate valid for ${days} more days (until ${end})"
  fi
}

check_mode_0600() {  # NAME PATH
  local name="$1" path mode
  path="$(gl_path "$2")"
  if [[ ! -e "${path}" ]]; then
    gl_check_fail "${name}" "${path} does not exist" "k3s writes it at first start; check the k3s log"
    return
  fi
  mode=$(stat -c %a "${path}")
  if (( (8#${mode} & 8#077) == 0 )); then
    gl_check_pass "${name}" "${path} is mode ${mode}"
  else
    gl_check_fail "${name}" "${path} is mode ${mode}; it holds cluster credentials and must be 0600" \
      "chmod 600 '${path}' (and write-kubeconfig-mode: \"0600\" in /etc/rancher/k3s/config.yaml)"
  fi
}

# --- Kubernetes level (real k3s only) ---
kubectl() {
  KUBECONFIG="${K3S_KUBECONFIG}" "${HC_BIN}" kubectl "$@"
}

check_node_ready() {
  local out
  if out=$(kubectl wait --for=condition=Ready node --all --timeout="$(remaining)s" 2>&1); then
    gl_check_pass node-ready "$(tr '\n' ' ' <<<"${out}" | sed 's/ *$//')"
  else
    gl_check_fail node-ready "node(s) not Ready within ${HEALTH_TIMEOUT}s: $(tail -n1 <<<"${out}")" \
      "k3s kubectl describe node; journalctl -u k3s (CNI, disk pressure, clock)"
  fi
}

pods_not_running() {  # prints kube-system pods not Running/Succeeded; fails when there are any or none
  local out
  out=$(kubectl get pods -n kube-system --no-headers \
        -o 'custom-columns=NAME:.metadata.name,PHASE:.status.phase' 2>/dev/null) || return 1
  [[ -n "${out}" ]] || return 1
  ! awk '$2 != "Running" && $2 != "Succeeded" {print; bad = 1} END {exit !bad}' <<<"${out}"
}

check_system_pods() {
  if wait_until pods_not_running >/dev/null; then
    gl_check_pass system-pods "all kube-system pods Running or Completed"
  else
    local bad
    bad=$(kubectl get pods -n kube-system --no-headers -o 'custom-columns=NAME:.metadata.name,PHASE:.status.phase' 2>&1 \
          | awk '$2 != "Running" && $2 != "Succeeded" {printf "%s(%s) ", $1, $2}' || true)
    gl_check_fail system-pods "kube-system pods not Running within ${HEALTH_TIMEOUT}s: ${bad:-none listed}" \
      "k3s kubectl -n kube-system describe pod <name>; air-gapped: are the airgap images in /var/lib/rancher/k3s/agent/images?"
  fi
}

check_rollout() {
  local deploys d out failed=""
  deploys=$(kubectl -n "${NAMESPACE}" get deployments -o name 2>/dev/null || true)
  if [[ -z "${deploys}" ]]; then
    gl_check_fail backend-rollout "no deployment in namespace ${NAMESPACE}" \
      "deploy the backend: 03_deploy_gl_backend.sh (invoke deploy-gl-backend)"
    return 1
  fi
  for d in ${deploys}; do
    out=$(kubectl -n "${NAMESPACE}" rollout status "${d}" --timeout="$(remaining)s" 2>&1) || failed+="${d#*/}: $(tail -n1 <<<"${out}"); "
  done
  if [[ -z "${failed}" ]]; then
    gl_check_pass backend-rollout "rollout complete in ${NAMESPACE}: $(tr '\n' ' ' <<<"${deploys//deployment.apps\//}")"
  else
    gl_check_fail backend-rollout "rollout incomplete in ${NAMESPACE}: ${failed%; }" \
      "k3s kubectl -n ${NAMESPACE} describe deploy; check image pulls (registry, imported images)"
    return 1
  fi
}

healthz() {  # NODE_IP
  curl -fsS --max-time 5 -o /dev/null -H "Host: ${BACKEND_INGRESS_HOST}" "http://$1/healthz" 2>/dev/null
}

check_healthz() {
  local ip
  ip=$(kubectl get nodes -o 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null || true)
  if [[ -z "${ip}" ]]; then
    gl_check_fail backend-healthz "could not read the node's InternalIP" "k3s kubectl get nodes -o wide"
  elif wait_until healthz "${ip}"; then
    gl_check_pass backend-healthz "http://${ip}/healthz (Host: ${BACKEND_INGRESS_HOST}) answered 200"
  else
    gl_check_fail backend-healthz "http://${ip}/healthz (Host: ${BACKEND_INGRESS_HOST}) did not answer 200 within ${HEALTH_TIMEOUT}s" \
      "k3s kubectl -n ${NAMESPACE} get ingress,svc,endpoints; k3s kubectl -n kube-system logs deploy/traefik"
  fi
}

check_kubernetes() {
  local c
  if [[ "${HC_MODE}" != real ]]; then
    for c in "${K8S_CHECKS[@]}"; do gl_check_skip "${c}" "${NEEDS_REAL}"; done
    return
  fi
  if [[ "${HC_API_UP}" != 1 ]]; then
    for c in "${K8S_CHECKS[@]}"; do gl_check_skip "${c}" "API not answering (see api-ping)"; done
    return
  fi
  check_node_ready
  check_system_pods
  if check_rollout; then check_healthz
  else gl_check_skip backend-healthz "backend rollout incomplete (see backend-rollout)"; fi
}

skip_rest() {  # REASON: everything after k3s-installed
  local c
  for c in k3s-service api-ping api-cert-expiry token-mode kubeconfig-mode "${K8S_CHECKS[@]}"; do
    gl_check_skip "${c}" "$1"
  done
}

main() {
  local service_up=0
  gl_parse_args "04_health_check.sh [--json]" norole "$@"
  gl_load_settings
  validate_settings
  HC_DEADLINE=$(($(date +%s) + HEALTH_TIMEOUT))
  info "health check (read-only), budget ${HEALTH_TIMEOUT}s"
  if check_installed; then
    check_service && service_up=1
    check_api "${service_up}"
    check_cert
    check_mode_0600 token-mode /var/lib/rancher/k3s/server/token
    check_mode_0600 kubeconfig-mode /etc/rancher/k3s/k3s.yaml
    check_kubernetes
  else
    skip_rest "k3s is not installed"
  fi
  gl_checks_finish "${HC_MODE}"
}

main "$@"
