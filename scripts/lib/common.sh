#!/usr/bin/env bash
# lib/common.sh: logging, error trap, cleanup, OS detection, root check, settings and paths.
# Sourced by every phase script; inlined verbatim into generated standalone scripts.
# shellcheck disable=SC2034  # variables here are used by the sourcing phase scripts

GL_PHASE="${GL_PHASE:-$(basename "$0" .sh)}"
GL_BUNDLE_DIR="${GL_BUNDLE_DIR:-$(cd "$(dirname "$0")" && pwd)}"
GL_ROOT="${GL_ROOT:-}"          # sandbox prefix for every host path (tests only); empty on real hosts
GL_JSON="${GL_JSON:-0}"

# --- logging: human text to stderr, so stdout stays clean for --json ---
_gl_log() { printf '%s [%s] %s\n' "$1" "${GL_PHASE}" "$2" >&2; }
info()  { _gl_log "INFO " "$*"; }
warn()  { _gl_log "WARN " "$*"; }
fatal() {
  _gl_log "FATAL" "$*"
  # phases that report checks (lib/checks.sh) still give --json callers their one JSON object
  if declare -F _gl_fatal_report >/dev/null; then _gl_fatal_report "$*"; fi
  exit 1
}
# bad input: exit 2, and callers must not have touched the host yet; --json callers still get
# their one result object (status fail, the message as a failed "bad-input" check)
die_input() {
  _gl_log "ERROR" "$*"
  if [[ "${GL_JSON}" == 1 ]]; then gl_result_json fail none bad-input "$*" \
    "nothing was changed; correct the input named above and run the phase again"; fi
  exit 2
}

# --- cleanup trap: register commands, run them once on exit ---
_GL_CLEANUP=()
gl_on_exit() { _GL_CLEANUP+=("$*"); }
_GL_LAST_ERROR=""
_gl_run_cleanup() {
  local rc=$? cmd
  for cmd in "${_GL_CLEANUP[@]}"; do eval "${cmd}" || true; done
  # an unexpected end (set -e) still gives --json callers their one result object
  if (( rc != 0 )) && [[ "${GL_JSON}" == 1 && "${_GL_RESULT_PRINTED}" == 0 ]]; then
    local why="${_GL_LAST_ERROR:-the phase ended with exit ${rc} before reporting}"
    if declare -F _gl_fatal_report >/dev/null; then _gl_fatal_report "${why}"
    else gl_result_json fail none "${GL_PHASE}" "${why}" "read the log above; fix the cause and run the phase again"; fi
  fi
  return "${rc}"
}
_gl_err() { _GL_LAST_ERROR="line $1: '$2' failed (exit $3)"; _gl_log "FATAL" "${_GL_LAST_ERROR}"; }
trap _gl_run_cleanup EXIT
trap '_gl_err "${LINENO}" "${BASH_COMMAND}" "$?"' ERR

# gl_tmpdir VAR: a private temp dir removed on exit. Sets VAR instead of printing the path, so the
# cleanup is registered in this shell (a $(...) subshell would register it and forget it).
# The path is %q-quoted into the cleanup command, which is eval'ed: a quote in TMPDIR stays data.
gl_tmpdir() {
  local _gl_dir _gl_cmd
  _gl_dir=$(mktemp -d "${TMPDIR:-/tmp}/gl-${GL_PHASE}.XXXXXX")
  printf -v _gl_cmd 'rm -rf -- %q' "${_gl_dir}"
  gl_on_exit "${_gl_cmd}"
  printf -v "$1" '%s' "${_gl_dir}"
}

GL_CHANGED=false  # a phase sets this to true when it changed the host; reported as "changed"

# --- arguments shared by every phase: [--json] [--role R] [-h] ---
GL_ROLES="single first-server server agent lb"  # sequences.ROLES; the caller always names the role
GL_ROLE=""
# gl_parse_args "USAGE" norole|role|role-required ARGS...: sets GL_JSON and (when roles are accepted)
# GL_ROLE; bad arguments exit 2 before anything is read or touched. --json is looked for first, so
# a bad argument before it still answers with the one JSON object.
gl_parse_args() {
  local usage="$1" roles="$2" arg
  shift 2
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (( $# )); do
    case "$1" in
      --json) GL_JSON=1 ;;
      --role|--role=*)
        [[ "${roles}" == role* ]] || die_input "unknown argument '$1'; usage: ${usage}"
        if [[ "$1" == --role=* ]]; then GL_ROLE="${1#--role=}"
        else
          (( $# > 1 )) || die_input "--role needs a value: ${GL_ROLES// /, }; usage: ${usage}"
          GL_ROLE="$2"; shift
        fi
        [[ " ${GL_ROLES} " == *" ${GL_ROLE} "* ]] \
          || die_input "--role '${GL_ROLE}': expected one of ${GL_ROLES// /, }; usage: ${usage}" ;;
      -h|--help) printf 'usage: %s\n' "${usage}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${usage}" ;;
    esac
    shift
  done
  if [[ "${roles}" == role-required && -z "${GL_ROLE}" ]]; then
    die_input "--role is required (${GL_ROLES// /, }): the caller names this host's role; usage: ${usage}"
  fi
}

# --- settings: baked into generated scripts, else sourced from the settings.env gldeploy wrote ---
# Only a file carrying gldeploy's marker line is sourced: a hand-written env file (env/single.env)
# lacks the defaults and checks, and would fail later as "unbound variable" instead of bad input.
GL_SETTINGS_MARKER="GL_SETTINGS_FORMAT='1'"
gl_load_settings() {
  if [[ "${GL_BAKED:-0}" == 1 ]]; then return 0; fi
  local env_file="${GL_ENV_FILE:-${GL_BUNDLE_DIR}/settings.env}"
  [[ -r "${env_file}" ]] || die_input "settings file ${env_file} not found; set GL_ENV_FILE or run through invoke"
  grep -qxF -- "${GL_SETTINGS_MARKER}" "${env_file}" || die_input "${env_file} was not written by gldeploy" \
    "(no ${GL_SETTINGS_MARKER} line). The phases need the settings.env gldeploy writes: a gldeploy" \
    "settings.env carries every key with defaults applied and checked. Get one by running the phase" \
    "through invoke (e.g. invoke pre-install-check --env ${env_file}), or render standalone scripts" \
    "with the settings baked in: invoke scripts.render --env ${env_file} --out <dir>"
  # shellcheck disable=SC1090
  source "${env_file}"
}

# resolve a path from the settings: relative paths are relative to the bundle directory
gl_bundle_path() {
  local p="$1"
  if [[ -z "${p}" || "${p}" == /* ]]; then printf '%s\n' "${p}"; else printf '%s\n' "${GL_BUNDLE_DIR}/${p}"; fi
}

# host path under the sandbox root (GL_ROOT is empty on real hosts)
gl_path() { printf '%s%s\n' "${GL_ROOT}" "$1"; }

# --- environment facts ---
gl_require_root() {
  if [[ -n "${GL_ROOT}" ]]; then return 0; fi
  [[ "$(id -u)" -eq 0 ]] || fatal "must run as root; re-run with sudo"
}

gl_detect_os() {  # sets OS_ID, OS_VERSION, OS_FAMILY (debian|rhel|unknown)
  OS_ID=unknown OS_VERSION="" OS_FAMILY=unknown
  local os_release
  os_release="$(gl_path /etc/os-release)"
  [[ -r "${os_release}" ]] || os_release=/etc/os-release
  if [[ -r "${os_release}" ]]; then
    local like
    # shellcheck disable=SC1090
    read -r OS_ID OS_VERSION like < <(. "${os_release}" && printf '%s %s %s\n' "${ID:-unknown}" "${VERSION_ID:-0}" "${ID_LIKE:-}")
    case " ${OS_ID} ${like} " in
      *" debian "*|*" ubuntu "*) OS_FAMILY=debian ;;
      *" rhel "*|*" fedora "*|*" centos "*|*" rocky "*|*" almalinux "*) OS_FAMILY=rhel ;;
    esac
  fi
}

gl_has_systemd() { [[ -z "${GL_ROOT}" && -d /run/systemd/system ]]; }

# --- idempotent file install: sets GL_INSTALLED=changed|unchanged ---
# Call it directly, never inside $(...): set -e is off in command substitutions, so a failure there
# would be reported as a change. A failed step removes the temp copy and ends the phase (fatal);
# DEST is replaced by rename only once a complete copy exists.
GL_INSTALLED=""
gl_install_file() {  # SRC DEST MODE
  local src="$1" dest="$2" mode="$3" tmp="$2.gl-new" hint="disk full or read-only file system?"
  GL_INSTALLED=""
  mkdir -p -- "$(dirname -- "${dest}")" || fatal "could not create the directory of ${dest} (${hint})"
  if [[ -f "${dest}" ]] && cmp -s -- "${src}" "${dest}" && [[ "$(stat -c %a -- "${dest}")" == "${mode#0}" ]]; then
    GL_INSTALLED=unchanged
    return 0
  fi
  if ! install -m "${mode}" -- "${src}" "${tmp}"; then
    rm -f -- "${tmp}"
    fatal "could not install ${dest} from ${src} (${hint}); ${dest} was left as it was"
  fi
  if ! mv -f -- "${tmp}" "${dest}"; then
    rm -f -- "${tmp}"
    fatal "could not install ${dest}: renaming ${tmp} failed (${hint}); ${dest} was left as it was"
  fi
  GL_INSTALLED=changed
}

# bounded wait: gl_wait SECONDS DESCRIPTION CMD... ; fails loudly on timeout
gl_wait() {
  local timeout="$1" what="$2" start
  shift 2
  start=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) - start >= timeout )); then
      fatal "timed out after ${timeout}s waiting for ${what}"
    fi
    sleep 2
  done
}

# --- JSON output helpers (no jq on minimal hosts) ---
# gl_json_quote VAR STRING: VAR becomes STRING as a JSON string literal (no subshell: forks are
# expensive on slow hosts); gl_json_str STRING prints the same. Every control character is escaped
# (\n \t \r by name, the others as \u00XX), so an ESC from a colourised tool cannot break the object.
gl_json_quote() {
  local s="$2" c code
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
  if [[ "${s}" == *[[:cntrl:]]* ]]; then
    for code in 01 02 03 04 05 06 07 08 0b 0c 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 7f; do
      printf -v c '%b' "\\x${code}"
      s=${s//"${c}"/\\u00${code}}
    done
  fi
  printf -v "$1" '"%s"' "${s}"
}
gl_json_str() { local quoted; gl_json_quote quoted "$1"; printf '%s' "${quoted}"; }

gl_hostname() {
  local h
  h=$(</proc/sys/kernel/hostname) 2>/dev/null || h=""
  [[ -n "${h}" ]] || h=$(uname -n)
  printf '%s\n' "${h}"
}

# The result object (docs/architecture.md): printed once, on a line of its own after a newline, so
# text a login shell put on stdout without a trailing newline cannot glue onto it.
_GL_RESULT_PRINTED=0
# gl_result_print OBJECT: print the one result object (a second one is dropped)
gl_result_print() {
  (( _GL_RESULT_PRINTED == 0 )) || return 0
  _GL_RESULT_PRINTED=1
  printf '\n%s\n' "$1"
}
# gl_result_json STATUS K3S_MODE CHECK_NAME MESSAGE FIX: a result object with one check (bad input,
# a failure before any check ran)
gl_result_json() {
  local phase host status mode name message fix
  gl_json_quote phase "${GL_PHASE}"
  gl_json_quote host "$(gl_hostname)"
  gl_json_quote status "$1"
  gl_json_quote mode "$2"
  gl_json_quote name "$3"
  gl_json_quote message "$4"
  gl_json_quote fix "$5"
  gl_result_print "{\"phase\": ${phase}, \"host\": ${host}, \"status\": ${status}, \"changed\": ${GL_CHANGED:-false}, \"k3s_mode\": ${mode}, \"checks\": [{\"name\": ${name}, \"status\": ${status}, \"message\": ${message}, \"fix\": ${fix}}]}"
}
