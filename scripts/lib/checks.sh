#!/usr/bin/env bash
# lib/checks.sh: record named checks (pass|warn|fail|skipped + message + fix) and report them
# as a human table (stderr) and, with --json / GL_JSON=1, one JSON object on stdout.
# Sourced after lib/common.sh by every phase (each reports its steps as checks);
# inlined verbatim into generated standalone scripts.
#
# Exit status convention for check phases (gl_checks_exit_code):
#   0  every check passed (or was skipped)
#   3  warnings only: the phase may proceed, read the warnings
#   1  at least one check failed
# Bad input (arguments, settings) exits 2 before any check runs (die_input from common.sh).

_GL_CHECK_NAMES=()
_GL_CHECK_STATUS=()
_GL_CHECK_MESSAGES=()
_GL_CHECK_FIXES=()

# gl_check NAME STATUS MESSAGE [FIX]: record one result; STATUS is pass|warn|fail|skipped
gl_check() {
  local name="$1" status="$2" message="$3" fix="${4:-}"
  case "${status}" in
    pass|warn|fail|skipped) ;;
    *) fatal "gl_check ${name}: unknown status '${status}' (expected pass|warn|fail|skipped)" ;;
  esac
  _GL_CHECK_NAMES+=("${name}")
  _GL_CHECK_STATUS+=("${status}")
  _GL_CHECK_MESSAGES+=("${message}")
  _GL_CHECK_FIXES+=("${fix}")
}

gl_check_pass() { gl_check "$1" pass "$2" ""; }
gl_check_warn() { gl_check "$1" warn "$2" "${3:-}"; }
gl_check_fail() { gl_check "$1" fail "$2" "${3:-}"; }
gl_check_skip() { gl_check "$1" skipped "$2" ""; }

# gl_check_problem SEVERITY NAME MESSAGE FIX: record a finding whose severity (warn|fail) is data
gl_check_problem() { gl_check "$2" "$1" "$3" "${4:-}"; }

gl_checks_count() { printf '%s\n' "${#_GL_CHECK_NAMES[@]}"; }

# worst status over all checks: fail > warn > pass > skipped (all skipped, or none: skipped)
gl_checks_status() {
  local s worst=skipped
  for s in "${_GL_CHECK_STATUS[@]}"; do
    case "${s}" in
      fail) worst=fail ;;
      warn) [[ "${worst}" == fail ]] || worst=warn ;;
      pass) [[ "${worst}" != skipped ]] || worst=pass ;;
    esac
  done
  printf '%s\n' "${worst}"
}

# fatal (lib/common.sh) ends the phase through here: the failure becomes a failed check in the report
_GL_FATAL_REPORTED=0
_gl_fatal_report() {
  ((_GL_FATAL_REPORTED == 0)) || return 0  # once, even if reporting itself fails
  _GL_FATAL_REPORTED=1
  gl_check_fail "${GL_PHASE}" "$1" "read the FATAL line above; fix the cause and run the phase again"
  gl_checks_report "$(if declare -F k3s_mode >/dev/null; then k3s_mode; else echo none; fi)"
}

# gl_checks_finish K3S_MODE: print the report (human or --json) and exit with gl_checks_exit_code
gl_checks_finish() {
  gl_checks_report "$1"
  exit "$(gl_checks_exit_code)"
}

gl_checks_exit_code() {
  case "$(gl_checks_status)" in
    fail) echo 1 ;;
    warn) echo 3 ;;
    *) echo 0 ;;
  esac
}

# human table on stderr: one line per check, the fix indented below failures and warnings
gl_checks_table() {
  local i width=10 mark
  for i in "${!_GL_CHECK_NAMES[@]}"; do
    (( ${#_GL_CHECK_NAMES[i]} > width )) && width=${#_GL_CHECK_NAMES[i]}
  done
  {
    printf '\n%-7s  %-*s  %s\n' "STATUS" "${width}" "CHECK" "DETAIL"
    for i in "${!_GL_CHECK_NAMES[@]}"; do
      case "${_GL_CHECK_STATUS[i]}" in
        pass) mark="ok" ;; warn) mark="WARN" ;; fail) mark="FAIL" ;; *) mark="skip" ;;
      esac
      printf '%-7s  %-*s  %s\n' "${mark}" "${width}" "${_GL_CHECK_NAMES[i]}" "${_GL_CHECK_MESSAGES[i]}"
      if [[ -n "${_GL_CHECK_FIXES[i]}" && "${_GL_CHECK_STATUS[i]}" != pass ]]; then
        printf '%-7s  %-*s  fix: %s\n' "" "${width}" "" "${_GL_CHECK_FIXES[i]}"
      fi
    done
  } >&2
}

# the one JSON result object (architecture.md contract) on stdout; K3S_MODE is real|standin|none
gl_checks_json() {
  local i sep="" phase host status mode name state message fix out
  gl_json_quote phase "${GL_PHASE}"
  gl_json_quote host "$(gl_hostname)"
  gl_json_quote status "$(gl_checks_status)"
  gl_json_quote mode "${1:-none}"
  out="{\"phase\": ${phase}, \"host\": ${host}, \"status\": ${status}, \"changed\": ${GL_CHANGED:-false}, \"k3s_mode\": ${mode}, \"checks\": ["
  for i in "${!_GL_CHECK_NAMES[@]}"; do
    gl_json_quote name "${_GL_CHECK_NAMES[i]}"
    gl_json_quote state "${_GL_CHECK_STATUS[i]}"
    gl_json_quote message "${_GL_CHECK_MESSAGES[i]}"
    gl_json_quote fix "${_GL_CHECK_FIXES[i]}"
    out+="${sep}{\"name\": ${name}, \"status\": ${state}, \"message\": ${message}, \"fix\": ${fix}}"
    sep=", "
  done
  gl_result_print "${out}]}"
}

# gl_checks_report K3S_MODE: table to stderr, JSON to stdout when GL_JSON=1, summary line
gl_checks_report() {
  local k3s_mode="${1:-none}" status i n_pass=0 n_warn=0 n_fail=0 n_skip=0
  status=$(gl_checks_status)
  for i in "${_GL_CHECK_STATUS[@]}"; do
    case "${i}" in pass) n_pass=$((n_pass + 1)) ;; warn) n_warn=$((n_warn + 1)) ;;
      fail) n_fail=$((n_fail + 1)) ;; *) n_skip=$((n_skip + 1)) ;; esac
  done
  gl_checks_table
  info "result: ${status} (${n_pass} passed, ${n_warn} warnings, ${n_fail} failed, ${n_skip} skipped; $([[ "${GL_CHANGED:-false}" == true ]] && echo changed || echo 'no change'))"
  if [[ "${GL_JSON}" == 1 ]]; then gl_checks_json "${k3s_mode}"; fi
}
