#!/usr/bin/env bash
# 03_deploy_gl_backend.sh: deploy the GL-Native Execution Backend into its namespace (single node: the backend on the single server).
#   usage: 03_deploy_gl_backend.sh [--json]
# The steps are in lib/backend_deploy.sh, shared by 03_deploy_gl_backend.sh and 05_deploy_gl_backend.sh.
# Exit status: 0 deployed (or unchanged), 3 deployed with warnings, 1 failed, 2 bad input.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_api.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/backend_deploy.sh"  # gl:include

main() {
  gl_parse_args "03_deploy_gl_backend.sh [--json]" norole "$@"
  gl_load_settings
  backend_inputs                       # backend/gl-backend-helmchart.yaml and the image archives (bad input: exit 2)
  gl_require_root
  k3s_require_running "k3s running"    # installed, service up, API answers /ping; else fail, nothing done
  backend_verify_images                # SHA256SUMS lists and matches every archive, before any copy
  backend_import_images                # copy to agent/images; import into containerd (real k3s)
  backend_apply_manifests              # the HelmChart into k3s server/manifests (its Helm controller installs it)
  backend_wait_rollout                 # every workload ready within ROLLOUT_TIMEOUT (real k3s)
  gl_checks_finish "$(k3s_mode)"
}

main "$@"
