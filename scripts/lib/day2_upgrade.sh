#!/usr/bin/env bash
# lib/day2_upgrade.sh: upgrade.sh's steps on one node, with the state recorded in a file so an
# interrupted run is completed or rolled back by the next one. Sourced after lib/day2_restore.sh and
# lib/k3s_install.sh; inlined verbatim into generated standalone scripts.
# shellcheck disable=SC2034  # GL_CHANGED and K3S_* are read by the sourced libraries

UPGRADE_STATE="${DAY2_STATE_DIR}/upgrade.state"   # phase from to backup started (KEY=VALUE lines)
UPGRADE_BACKUPS="${DAY2_STATE_DIR}/upgrade-backups"
UP_PHASE="" UP_FROM="" UP_TO="" UP_BACKUP="" UP_STARTED=""

upgrade_state_read() {
  local key value
  UP_PHASE="" UP_FROM="" UP_TO="" UP_BACKUP="" UP_STARTED=""
  [[ -f "${UPGRADE_STATE}" ]] || return 0
  while IFS='=' read -r key value; do
    case "${key}" in
      phase) UP_PHASE="${value}" ;; from) UP_FROM="${value}" ;; to) UP_TO="${value}" ;;
      backup) UP_BACKUP="${value}" ;; started) UP_STARTED="${value}" ;;
    esac
  done <"${UPGRADE_STATE}"
}

upgrade_state_write() {  # PHASE: record the state (written beside, then renamed: never half a file)
  UP_PHASE="$1"
  mkdir -p -- "${DAY2_STATE_DIR}"
  printf 'phase=%s\nfrom=%s\nto=%s\nbackup=%s\nstarted=%s\n' "${UP_PHASE}" "${UP_FROM}" "${UP_TO}" "${UP_BACKUP}" "${UP_STARTED}" \
    >"${UPGRADE_STATE}.new" && mv -f -- "${UPGRADE_STATE}.new" "${UPGRADE_STATE}"
  info "upgrade state: ${UP_PHASE} (${UP_FROM} -> ${UP_TO})"
}

upgrade_in_progress() { [[ -n "${UP_PHASE}" && "${UP_PHASE}" != "done" && "${UP_PHASE}" != rolled-back ]]; }

# upgrade_healthy VERSION: the binary reports VERSION, k3s answers /ping verified by its CA, the token matches
upgrade_healthy() {
  local got
  got=$(day2_installed_version)
  [[ "${got}" == "$1" ]] || { K3S_VERIFY_ERROR="the installed k3s reports ${got:-nothing}, expected $1"; return 1; }
  k3s_service_active || k3s_start
  k3s_wait_ready "${HEALTH_TIMEOUT}" || return 1
  if [[ -d "${K3S_DATA_DIR}/server" ]]; then k3s_token_matches_ca || { K3S_VERIFY_ERROR="the token's CA hash does not match the served CA"; return 1; }; fi
}

# upgrade_rollback WHY: previous binary and config back, datastore restored from the pre-upgrade backup
upgrade_rollback() {
  local why="$1"
  warn "rolling back ${UP_TO} -> ${UP_FROM}: ${why}"
  k3s_stop
  GL_CHANGED=true
  if [[ -f "${K3S_BIN}.prev" ]]; then install -m 0755 -- "${K3S_BIN}.prev" "${K3S_BIN}"; fi
  if [[ -f "${K3S_CONFIG}.prev" ]]; then install -m 0600 -- "${K3S_CONFIG}.prev" "${K3S_CONFIG}"; fi
  if [[ -n "${UP_BACKUP}" && -d "${UP_BACKUP}" ]]; then
    day2_verify_backup "${UP_BACKUP}" || fatal "rollback: the pre-upgrade backup ${UP_BACKUP} is not intact (${DAY2_ERROR}); the previous binary is in place, k3s is stopped"
    RESTORE_TOKEN=$(day2_read_token "${UP_BACKUP}/token")
    restore_apply "${UP_BACKUP}"   # stops, puts the datastore back, starts, waits for the API
  else
    k3s_start
    k3s_wait_ready "${HEALTH_TIMEOUT}" || fatal "rollback: k3s ${UP_FROM} does not answer either: ${K3S_VERIFY_ERROR}"
  fi
  upgrade_state_write rolled-back
  day2_changelog "k3s rolled back ${UP_TO} -> ${UP_FROM}: ${why}"
  gl_check_warn rollback "rolled back to ${UP_FROM} (previous binary, config and datastore): ${why}" \
    "read the log of the failed start; fix the cause, then upgrade again"
}

# upgrade_apply: the version swap (from the recorded state on; safe to repeat)
upgrade_apply() {
  local src="$1"
  if [[ "${UP_PHASE}" == prepared ]]; then
    k3s_stop
    gl_install_file "${src}/$(k3s_binary_name)" "${K3S_BIN}" 0755
    upgrade_state_write swapped
  fi
  k3s_service_active || k3s_start
  if upgrade_healthy "${UP_TO}"; then
    upgrade_state_write "done"
    day2_changelog "k3s upgraded ${UP_FROM} -> ${UP_TO}"
    gl_check_pass upgrade "k3s ${UP_FROM} -> ${UP_TO}; API /ping ok; previous binary kept at ${K3S_BIN#"${GL_ROOT}"}.prev"
  else
    upgrade_rollback "health check after the upgrade failed: ${K3S_VERIFY_ERROR}"
    gl_check_fail upgrade "k3s ${UP_TO} failed its health check; rolled back to ${UP_FROM}" "see the rollback line"
  fi
}

# day2_changelog (the host's append-only /etc/gl-deploy/CHANGELOG) is in lib/k3s_install.sh, which
# phase 02 shares: it logs versions.json changes there
