#!/usr/bin/env bash
# lib/doctor_bundle.sh: `doctor.sh --bundle DIR` writes one archive for a support request:
#   checks.txt / checks.json   the doctor results
#   logs/                      k3s, k3s-agent, HAProxy, Keepalived and registry logs of the last
#                              --since hours (journalctl when present, else their log files)
#   configs/                   config.yaml, registries.yaml, the k3s unit env, haproxy.cfg,
#                              keepalived.conf, settings.env, resolv.conf, hosts: every secret redacted
#   facts/                     versions and host facts (OS, kernel, disk, memory, addresses, routes, ports, time)
# Every file is redacted before it is archived: values of password/token/secret/auth_pass/key-data
# keys, private key blocks, and every literal secret this host holds (the join token files, the
# registry password file). The archive is written as a hidden partial file in DIR and renamed when
# complete: a full disk gives a clear error and leaves nothing behind.
# Sourced after lib/doctor_run.sh.
# shellcheck disable=SC2034  # set by doctor.sh's arguments

DR_BUNDLE_DIR=""
DR_SINCE_HOURS=6
DR_REDACTED="<redacted by gl-doctor>"

# dr_bundle_check_dir DIR: bad input (exit 2) unless DIR is a writable directory; before any check runs
dr_bundle_check_dir() {
  [[ -d "$1" ]] || die_input "--bundle $1: not a directory; give an existing directory for the support archive"
  [[ -w "$1" && -x "$1" ]] || die_input "--bundle $1: directory is not writable by this user; choose another or run as root"
}

dr_secret_values() {  # the literal secrets of this host, one per line (read from files, never argv)
  local f v
  for f in "$(gl_bundle_path "${K3S_TOKEN_FILE}")" "$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")" \
      "${K3S_TOKEN_DEST}" "${K3S_DATA_DIR}/server/token" "${K3S_DATA_DIR}/server/node-token" \
      "${K3S_DATA_DIR}/server/agent-token" "${K3S_DATA_DIR}/agent/token"; do
    [[ -n "${f}" && -f "${f}" && -r "${f}" ]] || continue
    while IFS= read -r v || [[ -n "${v}" ]]; do
      [[ ${#v} -ge 4 ]] || continue
      printf '%s\n' "${v}"
      # K10<ca-hash>::<user>:<password>: the password alone is a secret too
      if [[ "${v}" == *::*:* ]]; then printf '%s\n' "${v##*:}"; fi
    done <"${f}"
  done
  # the registry password as registries.yaml holds it
  if [[ -r "${K3S_REGISTRIES}" ]]; then
    awk '$1 == "password:" { v = $2; gsub(/^"|"$/, "", v); if (length(v) >= 4) print v }' "${K3S_REGISTRIES}"
  fi
}

# dr_redact SECRETS FILE [literal]: rewrite FILE with every secret replaced; "literal" replaces only
# the known secret values (doctor's own reports, whose messages carry no key: value secrets)
dr_redact() {
  local secrets="$1" file="$2" keys=1
  [[ "${3:-}" != literal ]] || keys=0
  awk -v r="${DR_REDACTED}" -v keys="${keys}" '
    FILENAME == ARGV[1] { if ($0 != "") s[++n] = $0; next }  # not NR == FNR: the secrets file may be empty
    /-----BEGIN [A-Z ]*PRIVATE KEY-----/ { skip = 1; print r; next }
    skip { if (/-----END [A-Z ]*PRIVATE KEY-----/) skip = 0; next }
    {
      line = $0
      for (i = 1; i <= n; i++) while ((p = index(line, s[i])) > 0) line = substr(line, 1, p - 1) r substr(line, p + length(s[i]))
      low = tolower(line)
      if (keys && low ~ /(pass(word|wd)?|token|secret|auth_pass|key-data|apikey|api_key)[a-z_-]*["'"'"']?[ \t]*[:= \t]/ && low !~ /_file[ \t]*=|-file[ \t]*:/) {
        if (match(line, /(pass(word|wd)?|token|secret|auth_pass|key-data|apikey|api_key)[A-Za-z_-]*["'"'"']?[ \t]*[:= \t][ \t]*/) ||
            match(low, /(pass(word|wd)?|token|secret|auth_pass|key-data|apikey|api_key)[a-z_-]*["'"'"']?[ \t]*[:= \t][ \t]*/))
          line = substr(line, 1, RSTART + RLENGTH - 1) r
      }
      print line
    }' "${secrets}" "${file}" >"${file}.redacted" && mv -f -- "${file}.redacted" "${file}"
}

dr_bundle_logs() {  # DEST
  local dest="$1" unit f
  if gl_has_systemd && command -v journalctl >/dev/null 2>&1; then
    for unit in k3s k3s-agent haproxy keepalived docker-registry registry gl-registry; do
      timeout 20 journalctl -u "${unit}" --since "-${DR_SINCE_HOURS}h" --no-pager -q >"${dest}/${unit}.journal.log" 2>/dev/null || true
      [[ -s "${dest}/${unit}.journal.log" ]] || rm -f -- "${dest}/${unit}.journal.log"
    done
  fi
  for f in "${K3S_LOG}" "$(gl_path /var/log/k3s-agent.log)" "$(gl_path /var/log/haproxy.log)" \
      "$(gl_path /var/log/keepalived.log)" "$(gl_path /var/log/registry.log)" "$(gl_path /var/log/gl-registry.log)"; do
    # files changed within the window: their last 5000 lines (plain log files carry no common timestamp)
    [[ -f "${f}" && -n "$(find "${f}" -mmin "-$((DR_SINCE_HOURS * 60))" 2>/dev/null)" ]] || continue
    tail -n 5000 -- "${f}" >"${dest}/$(basename -- "${f}")"
  done
}

dr_bundle_configs() {  # DEST
  local dest="$1" f env_file="${GL_ENV_FILE:-${GL_BUNDLE_DIR}/settings.env}"
  for f in "${K3S_CONFIG}" "${K3S_REGISTRIES}" "${K3S_UNIT_ENV}" "$(gl_path /etc/haproxy/haproxy.cfg)" \
      "$(gl_path /etc/keepalived/keepalived.conf)" "$(host_file /etc/resolv.conf)" "$(host_file /etc/hosts)"; do
    [[ -f "${f}" && -r "${f}" ]] && cp -- "${f}" "${dest}/$(basename -- "${f}")"
  done
  if [[ "${GL_BAKED:-0}" != 1 && -r "${env_file}" ]]; then cp -- "${env_file}" "${dest}/settings.env"; fi
  return 0
}

dr_bundle_facts() {  # DEST
  local dest="$1"
  {
    echo "## versions"
    timeout 5 "${K3S_BIN}" --version 2>&1 | head -n 2 || echo "k3s: not installed"
    for f in haproxy keepalived; do command -v "${f}" >/dev/null 2>&1 && { timeout 5 "${f}" -v 2>&1 | head -n 1 || true; }; done
    openssl version 2>&1 || true
    echo "bash ${BASH_VERSION}"
    echo "## host"; date -u '+%F %T UTC'; uname -a; cat "$(host_file /etc/os-release)" 2>/dev/null || true
    echo "## uptime"; cat /proc/uptime
    echo "## disk"; df -hP 2>/dev/null || true
    echo "## memory"; free -m 2>/dev/null || head -n 5 /proc/meminfo
    echo "## addresses"; ip -o addr 2>/dev/null || true
    echo "## routes"; ip route 2>/dev/null || true
    echo "## listening tcp"; ss -ltn 2>/dev/null || true
    echo "## time sync"; timeout 2 chronyc -n tracking 2>&1 || timeout 2 timedatectl 2>&1 || true
  } >"${dest}/host.txt" 2>&1
}

# doctor_bundle: build, redact and archive; sets DR_BUNDLE_PATH. A write failure is fatal and
# leaves no partial archive (the hidden partial file is removed by the cleanup trap).
doctor_bundle() {
  local stage name top secrets part f free
  gl_tmpdir stage
  name="gl-doctor-$(gl_hostname)-$(date -u +%Y%m%dT%H%M%SZ)"
  top="${stage}/${name}"
  mkdir -p "${top}/logs" "${top}/configs" "${top}/facts"
  doctor_table_text >"${top}/checks.txt"
  doctor_json >"${top}/checks.json"
  dr_bundle_logs "${top}/logs"
  dr_bundle_configs "${top}/configs"
  dr_bundle_facts "${top}/facts"
  secrets="${stage}/secrets"
  (umask 077; dr_secret_values | sort -u | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- >"${secrets}")
  dr_redact "${secrets}" "${top}/checks.txt" literal
  dr_redact "${secrets}" "${top}/checks.json" literal
  while IFS= read -r -d '' f; do dr_redact "${secrets}" "${f}"; done < <(find "${top}/logs" "${top}/configs" "${top}/facts" -type f -print0)
  rm -f -- "${secrets}"
  part=$(mktemp "${DR_BUNDLE_DIR}/.${name}.tar.gz.partial.XXXXXX") \
    || fatal "cannot create a file in ${DR_BUNDLE_DIR} for the support bundle (disk full or read-only?)"
  local q; printf -v q 'rm -f -- %q' "${part}"; gl_on_exit "${q}"
  if ! tar -czf "${part}" -C "${stage}" "${name}" 2>"${stage}/tar.err"; then
    rm -f -- "${part}"
    free=$(df -Pk -- "${DR_BUNDLE_DIR}" 2>/dev/null | awk 'NR == 2 {print $4}')
    fatal "could not write the support bundle to ${DR_BUNDLE_DIR} (${free:-?} KiB free): $(head -n1 "${stage}/tar.err"); no partial archive was left; free space there or give another --bundle directory"
  fi
  chmod 600 -- "${part}"
  DR_BUNDLE_PATH="${DR_BUNDLE_DIR%/}/${name}.tar.gz"
  mv -f -- "${part}" "${DR_BUNDLE_PATH}" || { rm -f -- "${part}"; fatal "could not rename the support bundle into ${DR_BUNDLE_PATH}"; }
  info "support bundle: ${DR_BUNDLE_PATH} (secrets redacted; mode 0600)"
}
