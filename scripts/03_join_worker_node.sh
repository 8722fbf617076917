#!/usr/bin/env bash
# 03_join_worker_node.sh: join this host to the HA cluster, as an agent (default) or a server.
#   usage: 03_join_worker_node.sh [--json] [--role agent|server] --server-url https://HOST:PORT
#                                 [--token-file FILE | --token TOKEN]
#   --server-url  the API VIP (default https://API_VIP:API_PORT from the settings)
#   token         --token-file FILE (mode 0600), else --token (warned: visible to other local users),
#                 else K3S_TOKEN in the environment, else K3S_TOKEN_FILE of the settings. Servers need
#                 the full K10<ca-hash>::server:<secret> token of the first server; agents may also
#                 use K10<ca-hash>::<id>.<secret> (k3s token create).
# Before anything is installed the join is checked as k3s checks it (lib/k3s_join.sh): a wrong
# token, a server of another cluster or an unreachable server is refused and nothing is changed.
# Exit: 0 joined, 1 refused or failed, 2 bad arguments or settings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_install.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/cni.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_join.sh"  # gl:include

main() {
  # arguments -> settings -> validate (URL, token, role; exit 2) -> verify artifacts -> join
  # handshake -> install files -> (re)start only on change -> wait until joined
  k3s_join_parse_args "03_join_worker_node.sh [--json] [--role agent|server] --server-url https://HOST:PORT [--token-file FILE | --token TOKEN]" "$@"
  gl_load_settings
  k3s_join_main "${GL_ROLE:-agent}"
}

main "$@"
