#!/usr/bin/env bash
# lib/doctor_run.sh: run the rows of lib/doctor_table.sh for this host's role, time each check, and
# report: a human table (symptom, probable cause and fix under every finding) on stderr, and with
# --json one result object on stdout whose checks carry symptom, cause, fix and seconds.
# Sourced after lib/doctor_checks.sh.

DOCTOR_ROLE=""
DR_SECONDS=() DR_SYMPTOMS=() DR_CAUSES=()
DR_TOTAL=0
DR_BUNDLE_PATH=""

dr_usec() { printf '%s\n' "${EPOCHREALTIME/./}"; }
dr_seconds() { local us="$1"; printf '%d.%03d' "$((us / 1000000))" "$(((us % 1000000) / 1000))"; }

# dr_unmet NEEDS: sets DR_UNMET to why a check needing NEEDS cannot run here (empty: it can)
dr_unmet() {
  DR_UNMET=""
  case "$1" in
    none) ;;
    installed) [[ "${DR_MODE}" != none ]] || DR_UNMET="k3s is not installed" ;;
    running)
      if [[ "${DR_MODE}" == none ]]; then DR_UNMET="k3s is not installed"
      elif ((DR_RUNNING == 0)); then DR_UNMET="k3s is not running (see k3s-service)"; fi ;;
    real)
      if [[ "${DR_MODE}" == none ]]; then DR_UNMET="k3s is not installed"
      elif [[ "${DR_MODE}" != real ]]; then DR_UNMET="needs real k3s"
      elif ((DR_RUNNING == 0)); then DR_UNMET="k3s is not running (see k3s-service)"; fi ;;
    *) fatal "lib/doctor_table.sh: unknown needs '$1'" ;;
  esac
}

doctor_run_all() {
  local name start fix started
  started=$(dr_usec)
  for name in "${DOCTOR_CHECKS[@]}"; do
    [[ " ${DOCTOR_ROLES[${name}]} " == *" ${DOCTOR_ROLE} "* ]] || continue
    start=$(dr_usec)
    DR_STATUS="" DR_MESSAGE="" DR_DETAIL=""
    dr_unmet "${DOCTOR_NEEDS[${name}]}"
    if [[ -n "${DR_UNMET}" ]]; then dr_result skipped "${DR_UNMET}"
    else "doctor_check_${name//-/_}"; fi
    [[ -n "${DR_STATUS}" ]] || dr_result fail "the check ended without a result (a bug in doctor: please report it)"
    fix=""
    if [[ "${DR_STATUS}" == warn || "${DR_STATUS}" == fail ]]; then fix="${DOCTOR_FIX[${name}]}${DR_DETAIL:+ (${DR_DETAIL})}"; fi
    gl_check "${name}" "${DR_STATUS}" "${DR_MESSAGE}" "${fix}"
    DR_SYMPTOMS+=("${DOCTOR_SYMPTOM[${name}]}")
    DR_CAUSES+=("${DOCTOR_CAUSE[${name}]}")
    DR_SECONDS+=("$(dr_seconds "$(($(dr_usec) - start))")")
  done
  DR_TOTAL=$(dr_seconds "$(($(dr_usec) - started))")
}

doctor_table_text() {  # the human report
  local i width=14 mark
  for i in "${!_GL_CHECK_NAMES[@]}"; do (( ${#_GL_CHECK_NAMES[i]} > width )) && width=${#_GL_CHECK_NAMES[i]}; done
  printf '\n%-5s  %-*s  %6s  %s\n' "" "${width}" "CHECK" "SECS" "RESULT"
  for i in "${!_GL_CHECK_NAMES[@]}"; do
    case "${_GL_CHECK_STATUS[i]}" in pass) mark="ok" ;; warn) mark="WARN" ;; fail) mark="FAIL" ;; *) mark="skip" ;; esac
    printf '%-5s  %-*s  %6s  %s\n' "${mark}" "${width}" "${_GL_CHECK_NAMES[i]}" "${DR_SECONDS[i]}" "${_GL_CHECK_MESSAGES[i]}"
    if [[ "${mark}" == WARN || "${mark}" == FAIL ]]; then
      printf '%-5s  %-*s  %6s    symptom: %s\n' "" "${width}" "" "" "${DR_SYMPTOMS[i]}"
      printf '%-5s  %-*s  %6s    cause:   %s\n' "" "${width}" "" "" "${DR_CAUSES[i]}"
      printf '%-5s  %-*s  %6s    fix:     %s\n' "" "${width}" "" "" "${_GL_CHECK_FIXES[i]}"
    fi
  done
  local s n_pass=0 n_warn=0 n_fail=0 n_skip=0
  for s in "${_GL_CHECK_STATUS[@]}"; do
    case "${s}" in pass) n_pass=$((n_pass + 1)) ;; warn) n_warn=$((n_warn + 1)) ;; fail) n_fail=$((n_fail + 1)) ;; *) n_skip=$((n_skip + 1)) ;; esac
  done
  printf '\ndoctor on %s (role %s, k3s %s): %s; %s ok, %s warnings, %s failed, %s skipped in %ss\n' \
    "$(gl_hostname)" "${DOCTOR_ROLE}" "${DR_MODE}" "$(gl_checks_status)" "${n_pass}" "${n_warn}" "${n_fail}" "${n_skip}" "${DR_TOTAL}"
}

doctor_json() {  # the one result object (docs/architecture.md, plus role, seconds, bundle and per-check symptom/cause/seconds)
  local i sep="" out host status mode role bundle name state message fix symptom cause
  gl_json_quote host "$(gl_hostname)"
  gl_json_quote status "$(gl_checks_status)"
  gl_json_quote mode "${DR_MODE}"
  gl_json_quote role "${DOCTOR_ROLE}"
  gl_json_quote bundle "${DR_BUNDLE_PATH}"
  out="{\"phase\": \"doctor\", \"host\": ${host}, \"status\": ${status}, \"changed\": false, \"k3s_mode\": ${mode}, \"role\": ${role}, \"seconds\": ${DR_TOTAL}, \"bundle\": ${bundle}, \"checks\": ["
  for i in "${!_GL_CHECK_NAMES[@]}"; do
    gl_json_quote name "${_GL_CHECK_NAMES[i]}"
    gl_json_quote state "${_GL_CHECK_STATUS[i]}"
    gl_json_quote message "${_GL_CHECK_MESSAGES[i]}"
    gl_json_quote fix "${_GL_CHECK_FIXES[i]}"
    gl_json_quote symptom "${DR_SYMPTOMS[i]}"
    gl_json_quote cause "${DR_CAUSES[i]}"
    out+="${sep}{\"name\": ${name}, \"status\": ${state}, \"message\": ${message}, \"fix\": ${fix}, \"symptom\": ${symptom}, \"cause\": ${cause}, \"seconds\": ${DR_SECONDS[i]}}"
    sep=", "
  done
  printf '%s]}\n' "${out}"
}
