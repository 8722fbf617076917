#!/usr/bin/env bash
# upgrade.sh: upgrade (or, with --allow-downgrade, downgrade) k3s on this node, with a safety net.
#
# Usage: upgrade.sh [--json] --to VERSION [--artifacts DIR] [--allow-downgrade]
#        upgrade.sh [--json] --rollback | --status
#   --to         the k3s release, e.g. v1.29.4+k3s1; its binary and sha256sum-<arch>.txt come from
#                --artifacts DIR (a release copy) or are downloaded from K3S_RELEASE_URL
#   --rollback   put the previous binary, config.yaml and (servers) the pre-upgrade datastore back
#   --status     print the recorded upgrade state (read-only)
# Steps: verify the new release (sums, and the binary reports VERSION) before anything changes; on a
# server take a backup (backup.sh's format) into /var/lib/gl-deploy/upgrade-backups; keep the
# previous binary and config as k3s.prev / config.yaml.prev; swap the binary and restart; health
# check (version, /ping verified by the CA, token); on failure roll back automatically.
# The state is recorded in /var/lib/gl-deploy/upgrade.state at every step: a run interrupted half way
# is completed by the next `--to` the same version, and rolled back by any other run. Every
# upgrade and rollback appends a line to /etc/gl-deploy/CHANGELOG.
# Exit status: 0 upgraded (or already there), 3 an interrupted upgrade was rolled back, 1 failed
# (the node was rolled back automatically), 2 refused (bad input,
# downgrade without --allow-downgrade, missing or corrupt artifacts: nothing changed).
# shellcheck disable=SC2034  # GL_JSON and GL_CHANGED are read by lib/common.sh and lib/checks.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_install.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_backup.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_restore.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_upgrade.sh"  # gl:include

USAGE="upgrade.sh [--json] --to VERSION [--artifacts DIR] [--allow-downgrade] | --rollback | --status"
TO="" ARTIFACTS="" ALLOW_DOWNGRADE=0 ACTION=upgrade

upgrade_args() {
  local arg
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (($#)); do
    case "$1" in
      --json) ;;
      --allow-downgrade) ALLOW_DOWNGRADE=1 ;;
      --rollback) ACTION=rollback ;;
      --status) ACTION=status ;;
      --to|--artifacts)
        (($# > 1)) || die_input "$1 needs a value; usage: ${USAGE}"
        if [[ "$1" == --to ]]; then TO="$2"; else ARTIFACTS="$2"; fi
        shift ;;
      -h|--help) printf 'usage: %s\n' "${USAGE}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${USAGE}" ;;
    esac
    shift
  done
  if [[ "${ACTION}" == upgrade ]]; then
    [[ -n "${TO}" ]] || die_input "--to VERSION is required; usage: ${USAGE}"
    [[ "${TO}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$ ]] || die_input "--to '${TO}': expected a k3s release such as v1.29.4+k3s1"
  fi
  if [[ -n "${ARTIFACTS}" && ! -d "${ARTIFACTS}" ]]; then die_input "--artifacts ${ARTIFACTS}: not a directory"; fi
}

upgrade_fetch() {  # the new release, verified; nothing is changed when this fails
  K3S_ARTIFACTS_DIR="${ARTIFACTS}" K3S_VERSION="${TO}" K3S_SHA256=""   # the pin is the old release's
  if [[ -n "${ARTIFACTS}" && ! -f "${ARTIFACTS}/$(k3s_binary_name)" ]]; then
    die_input "the ${TO} artifact is missing: no $(k3s_binary_name) in ${ARTIFACTS}; nothing was changed"
  fi
  k3s_fetch || die_input "the ${TO} artifact could not be fetched: ${K3S_VERIFY_ERROR}; nothing was changed"
  k3s_verify "${K3S_SRC_DIR}" || die_input "the ${TO} artifact fails its checksum: ${K3S_VERIFY_ERROR}; nothing was changed"
  local says
  says=$("${K3S_SRC_DIR}/$(k3s_binary_name)" --version 2>/dev/null | awk 'NR == 1 {print $3}') || true
  [[ "${says}" == "${TO}" ]] || die_input "the artifact in ${K3S_SRC_DIR} reports version '${says}', not ${TO}; nothing was changed"
  gl_check_pass artifacts "$(k3s_binary_name) ${TO} matches $(k3s_sums_name) and reports ${TO}"
}

upgrade_main() {
  local current cmp
  if upgrade_in_progress; then
    if [[ "${TO}" == "${UP_TO}" ]]; then
      info "completing the interrupted upgrade ${UP_FROM} -> ${UP_TO} (recorded at ${UP_PHASE})"
      [[ "${UP_PHASE}" != prepared ]] || upgrade_fetch
      upgrade_apply "${K3S_SRC_DIR:-}"
      return
    fi
    upgrade_rollback "an upgrade ${UP_FROM} -> ${UP_TO} was interrupted at '${UP_PHASE}'; rolled back before anything else"
    return
  fi
  current=$(day2_installed_version)
  [[ -n "${current}" ]] || die_input "k3s is not installed on this node (${K3S_BIN#"${GL_ROOT}"}); install it with phase 02"
  cmp=$(day2_version_cmp "${TO}" "${current}")
  if [[ "${cmp}" == 0 ]]; then gl_check_pass upgrade "already at ${TO}: nothing to do"; return; fi
  if [[ "${cmp}" == -1 && "${ALLOW_DOWNGRADE}" == 0 ]]; then
    die_input "--to ${TO} is older than the installed ${current}: downgrades are refused (Kubernetes does not support them; the datastore may already be migrated). Pass --allow-downgrade to force; nothing was changed"
  fi
  upgrade_fetch
  UP_FROM="${current}" UP_TO="${TO}" UP_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ) UP_BACKUP=""
  if [[ "$(day2_datastore_kind)" != none ]]; then
    UP_BACKUP="${UPGRADE_BACKUPS}/pre-upgrade-${current}-to-${TO}-$(date -u +%Y%m%dT%H%M%SZ)"
    UP_BACKUP="${UP_BACKUP//+/_}"
    day2_backup_write "${UP_BACKUP}" || die_input "the pre-upgrade backup failed: ${DAY2_ERROR}; nothing was changed"
    gl_check_pass "pre-upgrade backup" "${UP_BACKUP#"${GL_ROOT}"} (${DAY2_KIND})"
  fi
  install -m 0755 -- "${K3S_BIN}" "${K3S_BIN}.prev"
  if [[ -f "${K3S_CONFIG}" ]]; then install -m 0600 -- "${K3S_CONFIG}" "${K3S_CONFIG}.prev"; fi
  GL_CHANGED=true
  upgrade_state_write prepared
  upgrade_apply "${K3S_SRC_DIR}"
}

main() {
  upgrade_args "$@"
  gl_load_settings
  gl_require_root
  upgrade_state_read
  case "${ACTION}" in
    status) gl_check_pass state "$(if [[ -n "${UP_PHASE}" ]]; then echo "${UP_PHASE}: ${UP_FROM} -> ${UP_TO} (started ${UP_STARTED}; backup ${UP_BACKUP#"${GL_ROOT}"})"; else echo 'no upgrade recorded'; fi); installed: $(day2_installed_version)" ;;
    rollback)
      [[ -n "${UP_PHASE}" && "${UP_PHASE}" != rolled-back && -f "${K3S_BIN}.prev" ]] \
        || die_input "nothing to roll back: no upgrade recorded (or already rolled back) in ${UPGRADE_STATE#"${GL_ROOT}"}"
      upgrade_rollback "requested (upgrade.sh --rollback)" ;;
    *) upgrade_main ;;
  esac
  gl_checks_finish "$(k3s_mode)"
}

main "$@"
