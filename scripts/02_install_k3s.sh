#!/usr/bin/env bash
# 02_install_k3s.sh: install (or update) k3s from a verified release and start it; idempotent.
#   usage: 02_install_k3s.sh [--json] --role single|first-server|server|agent
# The install itself is k3s_install_main in lib/k3s_install.sh, shared with 02_init_control_plane.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_install.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/cni.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_join.sh"  # gl:include

main() {
  # parse --json and --role (required: the plan passes it), load settings, then k3s_install_main:
  # validate -> fetch + verify artifacts -> install files -> (re)start when the running k3s was
  # started with other files than those installed -> wait for /ping
  k3s_phase_main 02_install_k3s.sh "$@"
}

main "$@"
