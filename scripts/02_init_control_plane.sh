#!/usr/bin/env bash
# 02_init_control_plane.sh: cluster entry point, one server at a time:
#   --role first-server  the API VIP load balancer when this host is one of its nodes (co-located:
#                        HAProxy + Keepalived from the bundle's lb/<address>/), then k3s with embedded
#                        etcd (cluster-init); the same install as 02_install_k3s.sh --role first-server
#   --role server        the load balancer likewise, then k3s joined through the API VIP
#                        (--server-url https://API_VIP:LB_PORT --token-file FILE; lib/k3s_join.sh)
#   --role lb            a dedicated load balancer node (LB_IPS): HAProxy + Keepalived only
#   usage: 02_init_control_plane.sh [--json] --role first-server|server|lb
#                                   [--server-url https://HOST:PORT] [--token-file FILE]
# Bad arguments or settings exit 2 before anything is installed. Exit: 0 done, 3 done with warnings,
# 1 failed, 2 bad input.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_install.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/cni.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_join.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/loadbalancer.sh"  # gl:include

USAGE="02_init_control_plane.sh [--json] --role first-server|server|lb [--server-url https://HOST:PORT] [--token-file FILE]"

validate() {  # the arguments and everything k3s will be given: exit 2 before the host is touched
  [[ -n "${GL_ROLE}" ]] || die_input "--role is required (the plan passes it for each host); usage: ${USAGE}"
  case "${GL_ROLE}" in
    first-server|lb)
      [[ -z "${_K3S_JOIN_URL_ARG}${_K3S_JOIN_TOKEN_FILE_ARG}" && "${_K3S_JOIN_TOKEN_ARG_SET}" == 0 ]] \
        || die_input "--server-url/--token-file/--token are for --role server (a joining server); usage: ${USAGE}"
      [[ "${GL_ROLE}" == lb ]] || k3s_validate first-server ;;
    server) k3s_join_validate server ;;
    single|agent) die_input "--role ${GL_ROLE} is not a role of this phase: a single node installs with 02_install_k3s.sh, agents join with 03_join_worker_node.sh (valid here: first-server, server, lb)" ;;
    *) die_input "--role '${GL_ROLE}': expected one of ${GL_ROLES// /, }; usage: ${USAGE}" ;;
  esac
}

main() {
  # arguments -> settings -> validate (exit 2) -> load balancer (when this host is one of its nodes)
  # -> k3s: first server (cluster-init) or a server joining through the VIP; role lb stops after the LB
  k3s_join_parse_args "${USAGE}" "$@"
  gl_load_settings
  validate
  gl_require_root
  lb_phase_step "${GL_ROLE}"
  if [[ "${GL_ROLE}" == lb ]]; then gl_checks_finish none; fi
  k3s_install_main "${GL_ROLE}"
}

main "$@"
