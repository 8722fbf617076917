#!/usr/bin/env bash
# restore.sh: restore this k3s server from a backup directory written by backup.sh, onto the same
# node or a new machine with other addresses.
#
# Usage: restore.sh [--json] --from DIR [--token-file FILE]
#        restore.sh [--json] --rejoin
#   --from        the backup directory (manifest.json, SHA256SUMS, datastore/, token, tls/)
#   --token-file  the cluster's token (0600), when the backup carries none
#   --rejoin      on the OTHER etcd servers after the first one was restored: stop k3s, move
#                 server/db aside, start, so the server joins the restored cluster (k3s' procedure)
# Before anything is touched the backup is verified, and the restore refused (exit 2, with the
# reason) when a file is corrupt or truncated (sha256, SQLite PRAGMA integrity_check), the token is
# missing, the token belongs to another cluster (its CA hash or secret differ from the backup's or
# from this node's configured token), or the datastore kind does not fit this node.
# New addresses: config.yaml is NOT taken from the backup. Install the new machine first with its
# own settings (phases 01 and 02, K3S_TOKEN_FILE holding the old cluster's token secret): its
# config.yaml carries the new tls-san and node-ip, and k3s issues its serving certificates for them.
# The replaced datastore and certificates are kept beside (server/db.before-restore-<time>).
# Exit status: 0 restored, 1 failed while restoring (the log names what was kept), 2 refused.
# shellcheck disable=SC2034  # GL_JSON and GL_CHANGED are read by lib/common.sh and lib/checks.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_backup.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_restore.sh"  # gl:include

USAGE="restore.sh [--json] --from DIR [--token-file FILE] | restore.sh [--json] --rejoin"
FROM="" TOKEN_FILE="" REJOIN=0

restore_args() {
  local arg
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (($#)); do
    case "$1" in
      --json) ;;
      --rejoin) REJOIN=1 ;;
      --from|--token-file)
        (($# > 1)) || die_input "$1 needs a value; usage: ${USAGE}"
        if [[ "$1" == --from ]]; then FROM="$2"; else TOKEN_FILE="$2"; fi
        shift ;;
      -h|--help) printf 'usage: %s\n' "${USAGE}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${USAGE}" ;;
    esac
    shift
  done
  if ((REJOIN)); then [[ -z "${FROM}" ]] || die_input "--rejoin and --from exclude each other; usage: ${USAGE}"
  else [[ -n "${FROM}" ]] || die_input "--from DIR is required; usage: ${USAGE}"; fi
}

main() {
  restore_args "$@"
  gl_load_settings
  gl_require_root
  if ((REJOIN)); then restore_rejoin; else
    restore_validate "${FROM}" "${TOKEN_FILE}"   # refuses with exit 2; nothing touched yet
    restore_apply "${FROM}"
  fi
  gl_checks_finish "$(k3s_mode)"
}

main "$@"
