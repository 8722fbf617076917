#!/usr/bin/env bash
# lib/day2_restore.sh: restore.sh's steps: validate (refuse with the reason, nothing touched), then
# apply (stop k3s, keep the old datastore aside, put the backup in place, start, check).
# Sourced after lib/day2_backup.sh; inlined verbatim into generated standalone scripts.
# shellcheck disable=SC2034  # GL_CHANGED is read by lib/checks.sh

RESTORE_TOKEN=""

# the datastore this node is configured for: etcd (cluster-init or joining server) or sqlite
restore_target_kind() {
  if [[ "$(day2_config_value cluster-init)" == true || -n "$(day2_config_value server)" ]]; then echo etcd; else echo sqlite; fi
}

# restore_token_agrees WHAT TOKEN CA_SHA: refuse when TOKEN belongs to another cluster than the backup's
restore_token_agrees() {
  local what="$1" token="$2" ca="$3" hash
  hash=$(day2_token_ca_hash "${token}")
  if [[ -n "${hash}" && -n "${ca}" && "${hash}" != "${ca}" ]]; then
    die_input "${what} is for another cluster: its CA hash is ${hash}, the backup's cluster CA is ${ca}." \
      "Refusing to restore: use the token of the cluster the backup was taken from"
  fi
  if [[ "$(day2_token_secret "${token}")" != "$(day2_token_secret "${RESTORE_TOKEN}")" ]]; then
    die_input "${what} has another secret than the backup's token: the backup's datastore is encrypted with its" \
      "own cluster's token. Refusing to restore: put the old cluster's token (secret) in K3S_TOKEN_FILE, install again (phase 02), then restore"
  fi
}

restore_validate() {  # DIR TOKEN_FILE
  local dir="$1" token_file="$2" ca target configured existing
  day2_verify_backup "${dir}" || die_input "refusing to restore from ${dir}: ${DAY2_ERROR}; nothing was changed." \
    "Use an intact copy of the backup (copy it again and compare SHA256SUMS)"
  ca=$(day2_manifest_field "${dir}" ca_sha256)
  [[ -z "${ca}" || ! -f "${dir}/tls/server-ca.crt" ]] || [[ "$(day2_sha256 "${dir}/tls/server-ca.crt")" == "${ca}" ]] \
    || die_input "refusing to restore from ${dir}: tls/server-ca.crt does not match the manifest's ca_sha256"
  if [[ -n "${token_file}" ]]; then
    [[ -s "${token_file}" ]] || die_input "--token-file ${token_file}: missing or empty"
    [[ "$(stat -c %a -- "${token_file}")" =~ ^[0-7]?[0-7]00$ ]] || die_input "--token-file ${token_file}: readable by others; chmod 600 it"
    RESTORE_TOKEN=$(day2_read_token "${token_file}")
    restore_token_agrees "--token-file ${token_file}" "${RESTORE_TOKEN}" "${ca}"
    if [[ -f "${dir}/token" ]]; then restore_token_agrees "the backup's own token (compared with --token-file)" "$(day2_read_token "${dir}/token")" ""; fi
  elif [[ -s "${dir}/token" ]]; then
    RESTORE_TOKEN=$(day2_read_token "${dir}/token")
  else
    die_input "refusing to restore from ${dir}: the token is missing (no token file in the backup and no --token-file)." \
      "A k3s datastore cannot be used without its cluster's token: pass --token-file with the old cluster's token"
  fi
  restore_token_agrees "the token for ${dir}" "${RESTORE_TOKEN}" "${ca}"
  [[ -n "$(day2_token_ca_hash "${RESTORE_TOKEN}")" ]] || [[ -n "${ca}" ]] \
    || die_input "refusing to restore from ${dir}: neither the token nor the backup names the cluster CA, so a wrong cluster could not be told"
  [[ -f "${K3S_CONFIG}" && -x "${K3S_BIN}" ]] || die_input "k3s is not installed on this node (${K3S_CONFIG#"${GL_ROOT}"} or the binary missing):" \
    "install it first with this node's settings (phases 01 and 02; K3S_TOKEN_FILE = the old cluster's token secret), then restore"
  target=$(restore_target_kind)
  [[ "${target}" == "${DAY2_KIND}" ]] || die_input "the backup holds a ${DAY2_KIND} datastore but this node is configured for ${target}" \
    "(config.yaml $([[ "${target}" == etcd ]] && echo 'has cluster-init/server' || echo 'has no cluster-init')): restore it onto a node of the same topology"
  configured=$(day2_config_value token-file)
  if [[ -n "${configured}" && -r "${GL_ROOT}${configured#"${GL_ROOT}"}" ]]; then
    restore_token_agrees "this node's configured token (${configured#"${GL_ROOT}"})" "$(day2_read_token "${GL_ROOT}${configured#"${GL_ROOT}"}")" "${ca}"
  fi
  existing="${K3S_DATA_DIR}/server/token"
  if [[ -s "${existing}" ]]; then
    restore_token_agrees "this node's current cluster token (${existing#"${GL_ROOT}"})" "$(day2_read_token "${existing}")" ""
  fi
  gl_check_pass "backup verified" "${dir}: every file matches SHA256SUMS$([[ "${DAY2_KIND}" == sqlite ]] && echo ', PRAGMA integrity_check ok'); token of the same cluster (CA ${ca:0:12}…)"
}

restore_put_ca() {  # DIR STAMP: the backup's CA in place; the old tls/ kept aside when the CA differs
  local dir="$1" stamp="$2" tls="${K3S_DATA_DIR}/server/tls" f
  [[ -f "${dir}/tls/server-ca.crt" ]] || return 0
  if [[ -f "${tls}/server-ca.crt" ]] && cmp -s -- "${dir}/tls/server-ca.crt" "${tls}/server-ca.crt"; then return 0; fi
  if [[ -d "${tls}" ]]; then mv -- "${tls}" "${tls}.before-restore-${stamp}"; fi
  (umask 077 && mkdir -p -- "${tls}")
  while IFS= read -r f; do
    f="${f#"${dir}/tls/"}"
    (umask 077 && mkdir -p -- "$(dirname -- "${tls}/${f}")")
    install -m 0600 -- "${dir}/tls/${f}" "${tls}/${f}"
  done < <(find "${dir}/tls" -type f)
  [[ ! -f "${tls}/server-ca.crt" ]] || chmod 644 -- "${tls}/server-ca.crt"
  info "cluster CA restored from the backup (leaf certificates are issued again at start, for this node's addresses)"
}

restore_apply() {  # DIR
  local dir="$1" stamp db="${K3S_DATA_DIR}/server/db" was="stopped" snap out rows_before rows_after started
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  started=$(date +%s%N)
  if k3s_service_active; then was=running; fi
  info "stopping k3s (${was})"
  k3s_stop
  GL_CHANGED=true
  if [[ -d "${db}" ]]; then mv -- "${db}" "${db}.before-restore-${stamp}"; info "previous datastore kept at ${db#"${GL_ROOT}"}.before-restore-${stamp}"; fi
  (umask 077 && mkdir -p -- "${db}")
  restore_put_ca "${dir}" "${stamp}"
  (umask 077 && printf '%s\n' "${RESTORE_TOKEN}" >"${K3S_DATA_DIR}/server/token" && printf '%s\n' "${RESTORE_TOKEN}" >"${K3S_DATA_DIR}/server/node-token")
  if [[ "${DAY2_KIND}" == sqlite ]]; then
    install -m 0600 -- "${DAY2_DATASTORE}" "${db}/state.db"
    rows_before=$(day2_sqlite_rows "${db}/state.db")
  else
    (umask 077 && mkdir -p -- "${db}/snapshots")
    snap="${db}/snapshots/$(basename -- "${DAY2_DATASTORE}")"
    install -m 0600 -- "${DAY2_DATASTORE}" "${snap}"
    info "k3s server --cluster-reset --cluster-reset-restore-path=${snap#"${GL_ROOT}"}"
    out=$(timeout "${HEALTH_TIMEOUT}" "${K3S_BIN}" server --config "${K3S_CONFIG}" --cluster-reset \
      "--cluster-reset-restore-path=${snap}" 2>&1) \
      || k3s_abort "restore" "k3s --cluster-reset failed: $(tail -n 3 <<<"${out}" | tr '\n' ' '); the previous datastore is at ${db#"${GL_ROOT}"}.before-restore-${stamp}" \
        "read the k3s output above; to go back: stop k3s, move the .before-restore directory back to server/db, start k3s"
    gl_check_pass "cluster reset" "etcd restored from $(basename -- "${snap}") and reset to this one member"
  fi
  k3s_start
  k3s_wait_ready "${HEALTH_TIMEOUT}" || k3s_abort "k3s api" "after the restore: ${K3S_VERIFY_ERROR}; the previous datastore is at ${db#"${GL_ROOT}"}.before-restore-${stamp}" \
    "read the k3s log; to go back: stop k3s, move the .before-restore directory back to server/db, start k3s"
  k3s_token_matches_ca || k3s_abort "k3s token" "after the restore the token's CA hash does not match the served CA" \
    "the backup's tls/ and token disagree; restore from another backup"
  if [[ "${DAY2_KIND}" == sqlite ]]; then
    rows_after=$(day2_sqlite_rows "${db}/state.db")
    ((rows_after >= rows_before)) || k3s_abort "datastore" "state.db has ${rows_after} rows after the start, the backup ${rows_before}" "restore again"
    gl_check_pass "datastore" "state.db restored (${rows_before} rows from the backup), k3s started on it"
  fi
  gl_check_pass "restore" "restored from ${dir} in $(( ($(date +%s%N) - started) / 1000000 )) ms; k3s was ${was}, now running; API /ping ok, token matches the CA"
  if [[ "$(k3s_mode)" == real ]]; then
    if out=$(timeout 30 "${K3S_BIN}" kubectl get --raw /readyz 2>&1) && [[ "${out}" == ok ]]; then
      gl_check_pass "kubernetes" "API /readyz ok after the restore"
    else
      gl_check_warn "kubernetes" "API /readyz not ok yet after the restore: ${out:0:200}" "k3s kubectl get nodes; wait for the nodes to be Ready"
    fi
  else
    gl_check_skip "kubernetes" "Kubernetes-level restore checks (objects, nodes Ready): skipped: needs real k3s"
  fi
}

restore_rejoin() {  # the other etcd servers after the first was restored (k3s' documented procedure)
  local db="${K3S_DATA_DIR}/server/db" stamp
  [[ -f "${K3S_CONFIG}" && "$(restore_target_kind)" == etcd && -n "$(day2_config_value server)" ]] \
    || die_input "--rejoin is for the other servers of an etcd cluster (config.yaml with server:); this node is not one"
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  k3s_stop
  GL_CHANGED=true
  if [[ -d "${db}" ]]; then mv -- "${db}" "${db}.before-rejoin-${stamp}"; fi
  k3s_start
  k3s_wait_ready "${HEALTH_TIMEOUT}" || k3s_abort "k3s api" "after rejoining: ${K3S_VERIFY_ERROR}" "read the k3s log"
  gl_check_pass "rejoin" "server/db moved aside (${db#"${GL_ROOT}"}.before-rejoin-${stamp}); k3s started and joins the restored cluster"
}
