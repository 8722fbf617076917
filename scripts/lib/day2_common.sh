#!/usr/bin/env bash
# lib/day2_common.sh: what the day-2 tools (backup.sh, restore.sh, certs.sh, upgrade.sh) share:
# the datastore kind, consistent SQLite copies and checks, sha256 manifests, token parsing and the
# upgrade state/versions files. Sourced after lib/common.sh, lib/checks.sh and lib/k3s.sh; inlined
# verbatim into generated standalone scripts.
# shellcheck disable=SC2034  # DAY2_* variables are used by the sourcing tools

DAY2_STATE_DIR=$(gl_path /var/lib/gl-deploy)      # upgrade state, versions history
DAY2_ETC=$(gl_path /etc/gl-deploy)                # versions.json, CHANGELOG
DAY2_SQLITE_DB="${K3S_DATA_DIR}/server/db/state.db"
DAY2_ETCD_DIR="${K3S_DATA_DIR}/server/db/etcd"
DAY2_SNAPSHOT_DIR="${K3S_DATA_DIR}/server/db/snapshots"
# the cluster's CA material: with the token, what a datastore needs to be read again; leaf
# certificates are not kept (k3s issues them again at start, for the addresses it has then)
DAY2_CA_FILES="server-ca.crt server-ca.key client-ca.crt client-ca.key request-header-ca.crt request-header-ca.key service.key etcd/server-ca.crt etcd/server-ca.key etcd/peer-ca.crt etcd/peer-ca.key"

# day2_datastore_kind: sqlite | etcd | none, from what is on this host
day2_datastore_kind() {
  if [[ -d "${DAY2_ETCD_DIR}" ]]; then echo etcd
  elif [[ -f "${DAY2_SQLITE_DB}" ]]; then echo sqlite
  else echo none; fi
}

# --- SQLite: the sqlite3 CLI when installed, else Python's sqlite3 module (the online backup API) ---
day2_sqlite_tool() {
  if command -v sqlite3 >/dev/null 2>&1; then echo sqlite3
  elif command -v python3 >/dev/null 2>&1 && python3 -c 'import sqlite3' 2>/dev/null; then echo python3
  else return 1; fi
}

# day2_sqlite_backup SRC DEST: a consistent copy of a live database (never cp: a copy taken while
# k3s writes can be torn); DEST is written beside and renamed when complete
day2_sqlite_backup() {
  local src="$1" dest="$2" tool
  tool=$(day2_sqlite_tool) || { DAY2_ERROR="neither sqlite3 nor python3 is installed: a live SQLite datastore cannot be copied consistently"; return 1; }
  rm -f -- "${dest}.part"
  if [[ "${tool}" == sqlite3 ]]; then
    # .backup is SQLite's online backup API; the path goes in as one quoted argument of the dot-command
    sqlite3 -readonly "${src}" ".timeout 10000" ".backup '${dest//\'/\'\'}.part'" 2>"${dest}.err" || {
      DAY2_ERROR="sqlite3 .backup of ${src} failed: $(head -c 300 "${dest}.err")"; rm -f -- "${dest}.part" "${dest}.err"; return 1; }
  else
    python3 - "${src}" "${dest}.part" 2>"${dest}.err" <<'PY' || {
import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
out = sqlite3.connect(sys.argv[2])
src.backup(out)
out.close(); src.close()
PY
      DAY2_ERROR="python3 sqlite3 backup of ${src} failed: $(tail -n 1 "${dest}.err")"; rm -f -- "${dest}.part" "${dest}.err"; return 1; }
  fi
  rm -f -- "${dest}.err"
  chmod 600 -- "${dest}.part" && mv -f -- "${dest}.part" "${dest}"
}

# day2_sqlite_check FILE: 0 when PRAGMA integrity_check says ok; else DAY2_ERROR says why
day2_sqlite_check() {
  local file="$1" tool out
  tool=$(day2_sqlite_tool) || { DAY2_ERROR="neither sqlite3 nor python3 is installed: cannot check ${file}"; return 1; }
  if [[ "${tool}" == sqlite3 ]]; then
    out=$(sqlite3 -readonly "${file}" "PRAGMA integrity_check;" 2>&1) || true
  else
    out=$(python3 -c 'import sqlite3,sys
try:
    c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
    print("\n".join(r[0] for r in c.execute("PRAGMA integrity_check")))
except sqlite3.Error as e:
    print(e)' "${file}" 2>&1) || true
  fi
  if [[ "${out}" == ok ]]; then return 0; fi
  DAY2_ERROR="PRAGMA integrity_check of ${file#"${GL_ROOT}"}: $(head -n 3 <<<"${out}" | tr '\n' ' ')"
  return 1
}

# day2_sqlite_rows FILE: the number of rows in the kine table (the stand-in's and k3s' kine schema)
day2_sqlite_rows() {
  if [[ "$(day2_sqlite_tool)" == sqlite3 ]]; then sqlite3 -readonly "$1" "SELECT count(*) FROM kine;"
  else python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True).execute("SELECT count(*) FROM kine").fetchone()[0])' "$1"; fi
}

day2_sha256() { local s; s=$(sha256sum -- "$1") && printf '%s\n' "${s%% *}"; }

# --- tokens: K10<sha256 of the cluster CA>::<user>:<secret>, or a bare secret ---
day2_token_ca_hash() {  # TOKEN: the CA hash, empty for a bare secret
  local t="$1"
  if [[ "${t}" == K10*::* ]]; then t="${t#K10}"; printf '%s\n' "${t%%::*}"; fi
}
day2_token_secret() {  # TOKEN: the password part (what the datastore's bootstrap data is keyed by)
  local t="$1"
  if [[ "${t}" == K10*::* ]]; then t="${t#*::}"; t="${t#*:}"; fi
  printf '%s\n' "${t}"
}
day2_read_token() {  # FILE: the first line, no whitespace
  local t
  t=$(head -n 1 -- "$1") || return 1
  t="${t//[[:space:]]/}"
  printf '%s\n' "${t}"
}

# day2_config_value KEY: a scalar of config.yaml (k3s' own flat keys), empty when absent
day2_config_value() {
  [[ -r "${K3S_CONFIG}" ]] || return 0
  awk -v k="$1" -F': *' '$1 == k { v = $2; gsub(/^"|"$/, "", v); print v; exit }' "${K3S_CONFIG}"
}

# day2_installed_version: the version the installed k3s binary reports (empty when none)
day2_installed_version() {
  [[ -x "${K3S_BIN}" ]] || return 0
  "${K3S_BIN}" --version 2>/dev/null | awk 'NR == 1 && $1 == "k3s" {print $3}'
}

# day2_version_cmp A B: prints -1, 0 or 1 comparing k3s versions v1.28.3+k3s2 (major.minor.patch, then kN)
day2_version_cmp() {
  local a b i
  IFS=. read -r -a a <<<"$(sed -E 's/^v//; s/\+k3s/./; s/[^0-9.].*$//' <<<"$1")"
  IFS=. read -r -a b <<<"$(sed -E 's/^v//; s/\+k3s/./; s/[^0-9.].*$//' <<<"$2")"
  for i in 0 1 2 3; do
    if ((10#${a[i]:-0} < 10#${b[i]:-0})); then echo -1; return; fi
    if ((10#${a[i]:-0} > 10#${b[i]:-0})); then echo 1; return; fi
  done
  echo 0
}
