#!/usr/bin/env bash
# 06_health_check.sh: read-only health check of one cluster server (run on every server), k3s and the
# GL-Native Execution Backend.
#   usage: 06_health_check.sh [--json] [--server-url https://API_VIP:LB_PORT]
#   --json        print one JSON result object on stdout (human table always goes to stderr).
#   --server-url  the API VIP endpoint to check through the load balancer (the plan passes it)
# Cluster checks (lib/health.sh health_cluster): api-own-address (this server's /ping on its own
# address), api-vip (/ping through the VIP), config-digest (sha256 of the values every server must
# share; the controller compares the servers' digests and reports config drift).
# The checks are in lib/health.sh (listed there), shared by 04_health_check.sh and 06_health_check.sh.
# Exit status (worst finding): 0 all passed (skipped counts as passed), 3 warnings only,
# 1 any check failed, 2 bad arguments or settings. Nothing on the host is changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_api.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/cni.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/health.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include

USAGE="06_health_check.sh [--json] [--server-url https://API_VIP:LB_PORT]"

parse_args() {
  local args=() re
  while (( $# )); do
    case "$1" in
      --server-url=*) HC_VIP_URL="${1#*=}" ;;
      --server-url) (( $# > 1 )) || die_input "--server-url needs a value; usage: ${USAGE}"; HC_VIP_URL="$2"; shift ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  gl_parse_args "${USAGE}" norole "${args[@]}"
  re='^https://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
  if [[ -n "${HC_VIP_URL}" && ! "${HC_VIP_URL}" =~ ${re} ]]; then
    die_input "--server-url '${HC_VIP_URL}': expected https://<host>:<port>, e.g. https://192.168.56.100:16443"
  fi
}

main() {
  parse_args "$@"
  gl_load_settings
  health_start                  # the HEALTH_TIMEOUT budget every wait below shares
  health_installed              # k3s-installed: binary present, mode real|standin
  health_service                # k3s-service: active
  health_api                    # api-ping: /ping answers pong (waits while the service runs)
  health_cert                   # api-cert-expiry: serving certificate not about to expire
  health_mode_0600 token-mode /var/lib/rancher/k3s/server/token
  health_mode_0600 kubeconfig-mode /etc/rancher/k3s/k3s.yaml
  health_cluster                # api-own-address, api-vip, config-digest (TOPOLOGY=ha)
  health_kubernetes             # node-ready, system-pods, backend-rollout, backend-healthz (real k3s)
  site_check_health             # with a bastion: certificates, registry (lib/site_checks.sh)
  gl_checks_finish "${HC_MODE}"
}

main "$@"
