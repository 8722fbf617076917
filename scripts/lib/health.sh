#!/usr/bin/env bash
# lib/health.sh: the read-only checks of the health phase (04_health_check.sh, single node;
# 06_health_check.sh, cluster), each a step its entry point's main lists:
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
# Sourced after lib/common.sh, lib/checks.sh, lib/k3s.sh and lib/k3s_api.sh.

HC_NEEDS_REAL="needs real k3s"
HC_K8S_CHECKS=(node-ready system-pods backend-rollout backend-healthz)
HC_MODE=none
HC_DEADLINE=0
HC_API_UP=0
HC_SERVICE_UP=0

# health_start: the shared HEALTH_TIMEOUT budget starts now
health_start() {
  HC_DEADLINE=$(($(date +%s) + HEALTH_TIMEOUT))
  info "health check (read-only), budget ${HEALTH_TIMEOUT}s"
}

health_remaining() {  # seconds left of the shared HEALTH_TIMEOUT budget (at least 1)
  local left=$((HC_DEADLINE - $(date +%s)))
  ((left > 0)) || left=1
  printf '%s\n' "${left}"
}

# --- k3s itself ---
health_installed() {
  HC_MODE="$(k3s_mode)"
  if [[ "${HC_MODE}" == none ]]; then
    gl_check_fail k3s-installed "k3s is not installed (no executable ${K3S_BIN})" \
      "install it first: 02_install_k3s.sh (invoke install-k3s)"
    return 0
  fi
  local version
  version=$(timeout 5 "${K3S_BIN}" --version 2>/dev/null | head -n1 || true)
  gl_check_pass k3s-installed "${version:-k3s} (mode ${HC_MODE})"
}

# health_absent NAME...: when k3s is not installed, record NAMEs as skipped and return 0
health_absent() {
  local c
  [[ "${HC_MODE}" == none ]] || return 1
  for c in "$@"; do gl_check_skip "${c}" "k3s is not installed"; done
}

health_service() {
  health_absent k3s-service && return 0
  if k3s_service_active; then
    HC_SERVICE_UP=1
    gl_check_pass k3s-service "${K3S_SERVICE} service is active"
    return 0
  fi
  gl_check_fail k3s-service "${K3S_SERVICE} service is not active" \
    "start it (systemctl start ${K3S_SERVICE}; OpenRC: rc-service ${K3S_SERVICE} start) and read its log ($(k3s_log_hint))"
}

health_api() {  # waits within the budget only when the service runs, else one try
  health_absent api-ping && return 0
  if k3s_api_ping || { [[ "${HC_SERVICE_UP}" == 1 ]] && health_wait_until k3s_api_ping; }; then
    HC_API_UP=1
    gl_check_pass api-ping "https://127.0.0.1:${API_PORT}/ping answered pong"
  else
    gl_check_fail api-ping "https://127.0.0.1:${API_PORT}/ping did not answer pong within ${HEALTH_TIMEOUT}s" \
      "check that k3s listens on ${API_PORT} (ss -ltnp 'sport = :${API_PORT}') and read its log ($(k3s_log_hint))"
  fi
}

health_wait_until() {  # health_wait_until CMD...: retry until the shared deadline; 0 when CMD succeeded
  while (($(date +%s) < HC_DEADLINE)); do
    "$@" && return 0
    sleep 1
  done
  "$@"
}

health_cert() {
  health_absent api-cert-expiry && return 0
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

health_mode_0600() {  # NAME PATH
  local name="$1" path mode
  health_absent "${name}" && return 0
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
health_node_ready() {
  local out
  if out=$(k3s_kubectl wait --for=condition=Ready node --all --timeout="$(health_remaining)s" 2>&1); then
    gl_check_pass node-ready "$(tr '\n' ' ' <<<"${out}" | sed 's/ *$//')"
  else
    gl_check_fail node-ready "node(s) not Ready within ${HEALTH_TIMEOUT}s: $(tail -n1 <<<"${out}")" \
      "k3s kubectl describe node; on that node: journalctl -u k3s (a server) or -u k3s-agent (an agent): CNI, disk pressure, clock"
  fi
}

health_pods_not_running() {  # prints kube-system pods not Running/Succeeded; fails when there are any or none
  local out
  out=$(k3s_kubectl get pods -n kube-system --no-headers \
        -o 'custom-columns=NAME:.metadata.name,PHASE:.status.phase' 2>/dev/null) || return 1
  [[ -n "${out}" ]] || return 1
  ! awk '$2 != "Running" && $2 != "Succeeded" {print; bad = 1} END {exit !bad}' <<<"${out}"
}

health_system_pods() {
  if health_wait_until health_pods_not_running >/dev/null; then
    gl_check_pass system-pods "all kube-system pods Running or Completed"
  else
    local bad
    bad=$(k3s_kubectl get pods -n kube-system --no-headers -o 'custom-columns=NAME:.metadata.name,PHASE:.status.phase' 2>&1 \
          | awk '$2 != "Running" && $2 != "Succeeded" {printf "%s(%s) ", $1, $2}' || true)
    gl_check_fail system-pods "kube-system pods not Running within ${HEALTH_TIMEOUT}s: ${bad:-none listed}" \
      "k3s kubectl -n kube-system describe pod <name>; air-gapped: are the airgap images in /var/lib/rancher/k3s/agent/images?"
  fi
}

health_rollout() {
  local deploys d out failed=""
  deploys=$(k3s_kubectl -n "${NAMESPACE}" get deployments -o name 2>/dev/null || true)
  if [[ -z "${deploys}" ]]; then
    gl_check_fail backend-rollout "no deployment in namespace ${NAMESPACE}" \
      "deploy the backend: 03_deploy_gl_backend.sh (invoke deploy-gl-backend)"
    return 1
  fi
  for d in ${deploys}; do
    out=$(k3s_kubectl -n "${NAMESPACE}" rollout status "${d}" --timeout="$(health_remaining)s" 2>&1) || failed+="${d#*/}: $(tail -n1 <<<"${out}"); "
  done
  if [[ -z "${failed}" ]]; then
    gl_check_pass backend-rollout "rollout complete in ${NAMESPACE}: $(tr '\n' ' ' <<<"${deploys//deployment.apps\//}")"
  else
    gl_check_fail backend-rollout "rollout incomplete in ${NAMESPACE}: ${failed%; }" \
      "k3s kubectl -n ${NAMESPACE} describe deploy; check image pulls (registry, imported images)"
    return 1
  fi
}

health_ingress_answers() {  # NODE_IP
  curl -fsS --max-time 5 -o /dev/null -H "Host: ${BACKEND_INGRESS_HOST}" "http://$1/healthz" 2>/dev/null
}

health_backend_healthz() {
  local ip
  ip=$(k3s_kubectl get nodes -o 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null || true)
  if [[ -z "${ip}" ]]; then
    gl_check_fail backend-healthz "could not read the node's InternalIP" "k3s kubectl get nodes -o wide"
  elif health_wait_until health_ingress_answers "${ip}"; then
    gl_check_pass backend-healthz "http://${ip}/healthz (Host: ${BACKEND_INGRESS_HOST}) answered 200"
  else
    gl_check_fail backend-healthz "http://${ip}/healthz (Host: ${BACKEND_INGRESS_HOST}) did not answer 200 within ${HEALTH_TIMEOUT}s" \
      "k3s kubectl -n ${NAMESPACE} get ingress,svc,endpoints; k3s kubectl -n kube-system logs deploy/traefik"
  fi
}

health_kubernetes() {
  local c
  health_absent "${HC_K8S_CHECKS[@]}" && return 0
  if [[ "${HC_MODE}" != real ]]; then
    for c in "${HC_K8S_CHECKS[@]}"; do gl_check_skip "${c}" "${HC_NEEDS_REAL}"; done
    return
  fi
  if [[ "${HC_API_UP}" != 1 ]]; then
    for c in "${HC_K8S_CHECKS[@]}"; do gl_check_skip "${c}" "API not answering (see api-ping)"; done
    return
  fi
  health_node_ready
  health_system_pods
  if health_rollout; then health_backend_healthz
  else gl_check_skip backend-healthz "backend rollout incomplete (see backend-rollout)"; fi
}

# --- cluster (06 on every server): this server's API on its own address and through the API VIP,
# and the digest of the settings every server must share (the controller compares the digests) ---
HC_VIP_URL=""  # https://API_VIP:LB_PORT, from --server-url (the plan passes the endpoint it decided)

health_url_pings() {  # URL: /ping answers pong (a liveness probe: certificate not verified here)
  [[ "$(curl -sk --max-time 3 "$1/ping" 2>/dev/null || true)" == pong ]]
}

health_cluster() {
  local own="" ip ips=() config token
  [[ "${TOPOLOGY}" == ha ]] || return 0
  health_absent api-own-address api-vip config-digest && return 0
  IFS=, read -r -a ips <<<"${CONTROL_PLANE_IPS}"
  for ip in "${ips[@]}"; do if k3s_address_is_local "${ip}"; then own="${ip}"; break; fi; done
  if [[ -z "${own}" ]]; then
    gl_check_fail api-own-address "this host holds none of CONTROL_PLANE_IPS (${CONTROL_PLANE_IPS})" \
      "run the health check on the servers listed in CONTROL_PLANE_IPS"
  elif health_url_pings "https://${own}:${API_PORT}" || health_wait_until health_url_pings "https://${own}:${API_PORT}"; then
    gl_check_pass api-own-address "https://${own}:${API_PORT}/ping answered pong"
  else
    gl_check_fail api-own-address "https://${own}:${API_PORT}/ping did not answer pong within ${HEALTH_TIMEOUT}s" \
      "k3s must listen on ${own}:${API_PORT} (ss -ltnp 'sport = :${API_PORT}'); read its log ($(k3s_log_hint))"
  fi
  if [[ -z "${HC_VIP_URL}" ]]; then
    gl_check_skip api-vip "no --server-url given: the API VIP endpoint was not checked"
  elif health_url_pings "${HC_VIP_URL}" || health_wait_until health_url_pings "${HC_VIP_URL}"; then
    gl_check_pass api-vip "${HC_VIP_URL}/ping answered pong (through the load balancer)"
  else
    gl_check_fail api-vip "${HC_VIP_URL}/ping did not answer pong within ${HEALTH_TIMEOUT}s" \
      "which node holds ${API_VIP} (ip -4 addr on LB_INTERFACE)? is haproxy running there (systemctl status haproxy keepalived)?"
  fi
  config="$(gl_path /etc/rancher/k3s/config.yaml)" token="$(gl_path /var/lib/rancher/k3s/server/token)"
  if [[ -r "${config}" ]]; then
    gl_check_pass config-digest "$(k3s_cluster_digest "${config}" "${token}") over ${K3S_CLUSTER_KEYS// /, } and the server token's hash"
  else
    gl_check_fail config-digest "${config} is missing or unreadable" "install this server with 02_init_control_plane.sh"
  fi
}
