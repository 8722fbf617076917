#!/usr/bin/env bash
# 02_init_control_plane.sh: cluster entry point: install k3s on the first server with embedded
# etcd (cluster-init). The same install as 02_install_k3s.sh --role first-server (lib/k3s.sh).
#   usage: 02_init_control_plane.sh [--json] --role first-server|server|agent
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_install.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/cni.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_join.sh"  # gl:include

main() {
  # the same install path as 02_install_k3s.sh; the role comes from the caller (--role)
  k3s_phase_main 02_init_control_plane.sh "$@"
}

main "$@"
