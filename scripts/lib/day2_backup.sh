#!/usr/bin/env bash
# lib/day2_backup.sh: write and verify a backup directory (backup.sh, restore.sh).
# Sourced after lib/day2_common.sh; inlined verbatim into generated standalone scripts.
#
# A backup is one directory, mode 0700:
#   manifest.json   format, kind (sqlite|etcd), host, created, k3s version, the cluster CA's sha256,
#                   and every file with its sha256 and size
#   SHA256SUMS      the same sums in `sha256sum -c` form (so the copy can be checked anywhere)
#   datastore/      state.db (a consistent SQLite copy) or the etcd snapshot file
#   token           the server token (0600): without it the datastore cannot be read again
#   config.yaml     the k3s configuration it ran with (0600), for reference: a restore keeps the
#                   config.yaml the target node was installed with (its own addresses)
#   tls/            the cluster CA certificates and keys (0600), never leaf certificates
# shellcheck disable=SC2034  # DAY2_* variables are used by the sourcing tools

DAY2_ERROR=""
DAY2_BACKUP_FORMAT=1

# day2_manifest DIR KIND SNAPSHOT_NAME: write manifest.json and SHA256SUMS over DIR's files
day2_manifest() {
  local dir="$1" kind="$2" snap="$3" f rel sum size sep="" files="" q ca_sum="" created host version
  : >"${dir}/SHA256SUMS"
  while IFS= read -r f; do
    rel="${f#"${dir}/"}"
    sum=$(day2_sha256 "${f}") && size=$(stat -c %s -- "${f}")
    printf '%s  %s\n' "${sum}" "${rel}" >>"${dir}/SHA256SUMS"
    gl_json_quote q "${rel}"
    files+="${sep}{\"path\": ${q}, \"sha256\": \"${sum}\", \"size\": ${size}}"
    sep=", "
  done < <(find "${dir}" -type f ! -name SHA256SUMS ! -name manifest.json | LC_ALL=C sort)
  [[ ! -f "${dir}/tls/server-ca.crt" ]] || ca_sum=$(day2_sha256 "${dir}/tls/server-ca.crt")
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  gl_json_quote host "$(gl_hostname)"
  gl_json_quote version "$(day2_installed_version)"
  gl_json_quote snap "${snap}"
  printf '{"format": %s, "kind": "%s", "host": %s, "created": "%s", "k3s_version": %s, "snapshot": %s, "ca_sha256": "%s", "files": [%s]}\n' \
    "${DAY2_BACKUP_FORMAT}" "${kind}" "${host}" "${created}" "${version}" "${snap}" "${ca_sum}" "${files}" >"${dir}/manifest.json"
  chmod 600 -- "${dir}/manifest.json" "${dir}/SHA256SUMS"
}

# day2_manifest_field DIR KEY: a top-level string/number field of manifest.json (no jq on hosts)
day2_manifest_field() {
  local text
  text=$(<"$1/manifest.json")
  if [[ "${text}" =~ \"$2\":\ \"([^\"]*)\" ]] || [[ "${text}" =~ \"$2\":\ ([0-9]+) ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

# day2_verify_backup DIR: every listed file present with its sha256 and nothing listed missing;
# sets DAY2_KIND, DAY2_DATASTORE (the datastore file) and DAY2_ERROR
day2_verify_backup() {
  local dir="$1" sum rel got n=0 listed
  DAY2_KIND="" DAY2_DATASTORE=""
  [[ -d "${dir}" ]] || { DAY2_ERROR="${dir}: no such backup directory"; return 1; }
  [[ -f "${dir}/manifest.json" && -f "${dir}/SHA256SUMS" ]] \
    || { DAY2_ERROR="${dir}: manifest.json or SHA256SUMS missing: not a complete backup (copy interrupted?)"; return 1; }
  [[ "$(day2_manifest_field "${dir}" format)" == "${DAY2_BACKUP_FORMAT}" ]] \
    || { DAY2_ERROR="${dir}/manifest.json: format is not ${DAY2_BACKUP_FORMAT} (written by another tool or version?)"; return 1; }
  DAY2_KIND=$(day2_manifest_field "${dir}" kind)
  [[ "${DAY2_KIND}" == sqlite || "${DAY2_KIND}" == etcd ]] || { DAY2_ERROR="${dir}/manifest.json: kind '${DAY2_KIND}' is neither sqlite nor etcd"; return 1; }
  while read -r sum rel; do
    [[ -n "${rel}" ]] || continue
    n=$((n + 1))
    [[ "${rel}" != /* && "${rel}" != *..* ]] || { DAY2_ERROR="SHA256SUMS names ${rel}: paths must stay inside the backup"; return 1; }
    [[ -f "${dir}/${rel}" ]] || { DAY2_ERROR="${rel} is listed in SHA256SUMS but missing from ${dir} (truncated copy?)"; return 1; }
    got=$(day2_sha256 "${dir}/${rel}")
    [[ "${got}" == "${sum}" ]] || { DAY2_ERROR="${rel}: sha256 ${got} but SHA256SUMS lists ${sum}: corrupt or truncated"; return 1; }
    listed=$(grep -c -F "\"path\": \"${rel}\", \"sha256\": \"${sum}\"" "${dir}/manifest.json" || true)
    [[ "${listed}" == 1 ]] || { DAY2_ERROR="${rel}: SHA256SUMS and manifest.json disagree (edited?)"; return 1; }
    if [[ "${rel}" == datastore/* ]]; then DAY2_DATASTORE="${dir}/${rel}"; fi
  done <"${dir}/SHA256SUMS"
  ((n > 0)) || { DAY2_ERROR="${dir}/SHA256SUMS lists no files"; return 1; }
  [[ -n "${DAY2_DATASTORE}" ]] || { DAY2_ERROR="${dir}: no datastore/ file in the backup"; return 1; }
  [[ -s "${DAY2_DATASTORE}" ]] || { DAY2_ERROR="${DAY2_DATASTORE#"${dir}/"} is empty"; return 1; }
  if [[ "${DAY2_KIND}" == sqlite ]] || [[ "$(k3s_mode)" == standin ]]; then  # the stand-in's etcd store is SQLite too
    day2_sqlite_check "${DAY2_DATASTORE}" || return 1
  fi
  return 0
}

# day2_backup_write DEST_DIR: the backup of this server into DEST_DIR (created; must not exist)
day2_backup_write() {
  local dest="$1" part="$1.part" kind snap="" f token
  kind=$(day2_datastore_kind)
  [[ "${kind}" != none ]] || { DAY2_ERROR="no k3s datastore under ${K3S_DATA_DIR#"${GL_ROOT}"}/server/db: not a server, or k3s never started"; return 1; }
  [[ -s "${K3S_DATA_DIR}/server/token" ]] || { DAY2_ERROR="no server token at ${K3S_DATA_DIR#"${GL_ROOT}"}/server/token: a backup without it could not be restored"; return 1; }
  rm -rf -- "${part}"
  mkdir -p -- "$(dirname -- "${dest}")" && (umask 077 && mkdir -- "${part}" "${part}/datastore" "${part}/tls") \
    || { DAY2_ERROR="cannot create ${part} (disk full or read-only?)"; return 1; }
  if [[ "${kind}" == sqlite ]]; then
    day2_sqlite_backup "${DAY2_SQLITE_DB}" "${part}/datastore/state.db" || return 1
  else
    day2_etcd_snapshot "${part}/datastore" || return 1
    snap="${DAY2_SNAPSHOT_NAME}"
  fi
  token=$(day2_read_token "${K3S_DATA_DIR}/server/token")
  (umask 077 && printf '%s\n' "${token}" >"${part}/token")
  [[ ! -f "${K3S_CONFIG}" ]] || install -m 0600 -- "${K3S_CONFIG}" "${part}/config.yaml"
  for f in ${DAY2_CA_FILES}; do
    if [[ -f "${K3S_DATA_DIR}/server/tls/${f}" ]]; then
      (umask 077 && mkdir -p -- "$(dirname -- "${part}/tls/${f}")")
      install -m 0600 -- "${K3S_DATA_DIR}/server/tls/${f}" "${part}/tls/${f}"
    fi
  done
  day2_manifest "${part}" "${kind}" "${snap}"
  mv -- "${part}" "${dest}" || { DAY2_ERROR="cannot rename ${part} to ${dest}"; return 1; }
  DAY2_KIND="${kind}"
}

# day2_etcd_snapshot DIR: `k3s etcd-snapshot save` and copy the new snapshot into DIR
DAY2_SNAPSHOT_NAME=""
day2_etcd_snapshot() {
  local dir="$1" out before newest
  before=$(date +%s)
  out=$("${K3S_BIN}" etcd-snapshot save --config "${K3S_CONFIG}" --name gl-backup 2>&1) \
    || { DAY2_ERROR="k3s etcd-snapshot save failed: $(tail -n 2 <<<"${out}" | tr '\n' ' ')"; return 1; }
  newest=$(find "${DAY2_SNAPSHOT_DIR}" -maxdepth 1 -type f -name 'gl-backup-*' -newermt "@$((before - 1))" -printf '%T@ %p\n' 2>/dev/null \
    | sort -n | tail -n 1 | cut -d' ' -f2-)
  [[ -n "${newest}" ]] || { DAY2_ERROR="k3s etcd-snapshot save reported success but no new gl-backup-* file is in ${DAY2_SNAPSHOT_DIR#"${GL_ROOT}"}"; return 1; }
  DAY2_SNAPSHOT_NAME=$(basename -- "${newest}")
  install -m 0600 -- "${newest}" "${dir}/${DAY2_SNAPSHOT_NAME}"
}

# day2_prune DIR KEEP: keep the newest KEEP backups of this host in DIR (by name: the names sort by time)
day2_prune() {
  local dir="$1" keep="$2" old
  while IFS= read -r old; do
    [[ -f "${old}/manifest.json" ]] || continue
    rm -rf -- "${old}"
    info "pruned ${old} (keeping the newest ${keep})"
  done < <(find "${dir}" -mindepth 1 -maxdepth 1 -type d -name "gl-backup-$(gl_hostname)-*" ! -name '*.part' | LC_ALL=C sort -r | tail -n "+$((keep + 1))")
}
