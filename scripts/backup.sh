#!/usr/bin/env bash
# backup.sh: back up this k3s server: the datastore taken consistently (SQLite: an online backup,
# never a plain copy of the live file; etcd: `k3s etcd-snapshot save`), the token, config.yaml and
# the cluster CA, into one directory with manifest.json + SHA256SUMS (see lib/day2_backup.sh).
#
# Usage: backup.sh [--json] --out DIR [--name NAME] [--keep N]
#   --out   where the backup directory is written (DIR/NAME); copy it off the node afterwards
#           (invoke backup.create does, and checks the sums after the copy)
#   --name  directory name (default gl-backup-<host>-<UTC time>)
#   --keep  keep only the newest N backups of this host in DIR
# Exit status: 0 written, 1 failed (nothing partial is left: the .part directory is removed),
# 2 bad arguments.
# shellcheck disable=SC2034  # GL_JSON and GL_CHANGED are read by lib/common.sh and lib/checks.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_backup.sh"  # gl:include

USAGE="backup.sh [--json] --out DIR [--name NAME] [--keep N]"
OUT="" NAME="" KEEP=""

backup_args() {
  local arg
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (($#)); do
    case "$1" in
      --json) ;;
      --out|--name|--keep)
        (($# > 1)) || die_input "$1 needs a value; usage: ${USAGE}"
        case "$1" in
          --out) OUT="$2" ;;
          --name) [[ "$2" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die_input "--name '$2': letters, digits, '.', '_' and '-' only"
                  NAME="$2" ;;
          --keep) [[ "$2" =~ ^[1-9][0-9]{0,3}$ ]] || die_input "--keep '$2': expected a number of backups (1-9999)"
                  KEEP="$2" ;;
        esac
        shift ;;
      -h|--help) printf 'usage: %s\n' "${USAGE}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${USAGE}" ;;
    esac
    shift
  done
  [[ -n "${OUT}" ]] || die_input "--out DIR is required; usage: ${USAGE}"
  NAME="${NAME:-gl-backup-$(gl_hostname)-$(date -u +%Y%m%dT%H%M%SZ)}"
  [[ ! -e "${OUT}/${NAME}" ]] || die_input "${OUT}/${NAME} exists already; choose another --name"
}

main() {
  local started seconds size
  backup_args "$@"
  gl_load_settings
  gl_require_root
  gl_on_exit "rm -rf -- $(printf '%q' "${OUT}/${NAME}.part")"
  started=$(date +%s%N)
  day2_backup_write "${OUT}/${NAME}" || k3s_abort backup "${DAY2_ERROR}; no backup was written" \
    "fix the cause above and run backup.sh again"
  seconds=$(( ($(date +%s%N) - started) / 1000000 ))
  size=$(du -sb -- "${OUT}/${NAME}" | cut -f1)
  gl_check_pass backup "${OUT}/${NAME} (${DAY2_KIND}, ${size} bytes, ${seconds} ms)"
  info "backup written: ${OUT}/${NAME}; copy it off this node (invoke backup.create does)"
  if [[ -n "${KEEP}" ]]; then day2_prune "${OUT}" "${KEEP}"; fi
  GL_CHANGED=true
  gl_checks_finish "$(k3s_mode)"
}

main "$@"
