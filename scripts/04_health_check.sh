#!/usr/bin/env bash
# 04_health_check.sh: read-only health check of k3s and the GL-Native Execution Backend (the single server).
#   usage: 04_health_check.sh [--json]
#   --json   print one JSON result object on stdout (human table always goes to stderr).
# The checks are in lib/health.sh (listed there), shared by 04_health_check.sh and 06_health_check.sh;
# with a bastion (BASTION_IP) also the site registry: certificates, registry (lib/site_checks.sh).
# Exit status (worst finding): 0 all passed (skipped counts as passed), 3 warnings only,
# 1 any check failed, 2 bad arguments or settings. Nothing on the host is changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_api.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/health.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include

main() {
  gl_parse_args "04_health_check.sh [--json]" norole "$@"
  gl_load_settings
  health_start                  # the HEALTH_TIMEOUT budget every wait below shares
  health_installed              # k3s-installed: binary present, mode real|standin
  health_service                # k3s-service: active
  health_api                    # api-ping: /ping answers pong (waits while the service runs)
  health_cert                   # api-cert-expiry: serving certificate not about to expire
  health_mode_0600 token-mode /var/lib/rancher/k3s/server/token
  health_mode_0600 kubeconfig-mode /etc/rancher/k3s/k3s.yaml
  health_kubernetes             # node-ready, system-pods, backend-rollout, backend-healthz (real k3s)
  site_check_health             # with a bastion: certificates, registry (lib/site_checks.sh)
  gl_checks_finish "${HC_MODE}"
}

main "$@"
