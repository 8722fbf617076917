#!/usr/bin/env bash
# 02_init_control_plane.sh: cluster entry point: install k3s on the first server with embedded
# etcd (cluster-init). The same install as 02_install_k3s.sh --role first-server (lib/k3s.sh).
#   usage: 02_init_control_plane.sh [--json]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include

# shellcheck disable=SC2034  # GL_JSON is read by the libraries
parse_args() {
  while (( $# )); do
    case "$1" in
      --json) GL_JSON=1 ;;  # read by lib/k3s.sh
      -h|--help) echo "usage: 02_init_control_plane.sh [--json]" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: 02_init_control_plane.sh [--json]" ;;
    esac
    shift
  done
}

main() {
  parse_args "$@"
  gl_load_settings
  k3s_install_main first-server
}

main "$@"
