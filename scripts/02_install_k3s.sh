#!/usr/bin/env bash
# 02_install_k3s.sh: install (or update) k3s from a verified release and start it; idempotent.
#   usage: 02_install_k3s.sh [--json] [--role single|first-server|server|agent]
# The install itself is k3s_install_main in lib/k3s.sh, shared with 02_init_control_plane.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include

ROLE=""

usage() {
  cat >&2 <<'USAGE'
usage: 02_install_k3s.sh [--json] [--role single|first-server|server|agent]
  --role   single: one server (default for TOPOLOGY=single); first-server: embedded etcd
           (cluster-init), the first server of an HA cluster; server/agent: HA join (not yet)
  --json   print one JSON result object on stdout
USAGE
}

# shellcheck disable=SC2034  # GL_JSON is read by the libraries
parse_args() {
  while (( $# )); do
    case "$1" in
      --json) GL_JSON=1 ;;  # read by lib/k3s.sh
      --role) (( $# > 1 )) || die_input "--role needs a value: single, first-server, server or agent"
              ROLE="$2"; shift ;;
      --role=*) ROLE="${1#--role=}" ;;
      -h|--help) usage; exit 0 ;;
      *) usage; die_input "unknown argument '$1'" ;;
    esac
    shift
  done
}

default_role() {
  case "${TOPOLOGY:-single}" in
    single) echo single ;;
    *) die_input "TOPOLOGY=${TOPOLOGY}: pass --role first-server|server|agent for this host (02_init_control_plane.sh runs first-server)" ;;
  esac
}

main() {
  parse_args "$@"
  gl_load_settings
  [[ -n "${ROLE}" ]] || ROLE=$(default_role)
  k3s_install_main "${ROLE}"
}

main "$@"
