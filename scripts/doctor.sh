#!/usr/bin/env bash
# doctor.sh: read-only diagnosis of this node: every failure mode the architecture lists, one check per
# row of lib/doctor_table.sh (symptom, probable cause, documented fix); docs/troubleshooting.md is
# generated from the same table.
#
# Usage: doctor.sh [--role single|first-server|server|agent] [--json] [--compare FILE]...
#                  [--bundle DIR [--since HOURS]]
#   --role     this host's role (TOPOLOGY=single: single; a cluster host must be named)
#   --json     one JSON result object on stdout (per check: status, message, symptom, cause, fix, seconds)
#   --compare  another server's /etc/rancher/k3s/config.yaml: cluster-wide keys must agree (repeatable)
#   --bundle   also write a support archive to DIR: the results, logs of the last --since hours
#              (default 6), configs with every secret redacted, versions and host facts
# Checks needing k3s are skipped with the reason when it is absent (not installed, not running, or
# the test stand-in: "needs real k3s"). Nothing on the host is changed.
# Exit status (worst finding): 0 ok, 3 warnings only, 1 a check failed (or the bundle could not be
# written), 2 bad arguments or settings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_api.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s_files.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/host_checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_certs.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/doctor_table.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/doctor_checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/doctor_run.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/doctor_bundle.sh"  # gl:include

USAGE="doctor.sh [--role single|first-server|server|agent] [--json] [--compare FILE]... [--bundle DIR [--since HOURS]]"

# shellcheck disable=SC2034  # DR_SINCE_HOURS is read by lib/doctor_bundle.sh
doctor_args() {
  local arg
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (($#)); do
    case "$1" in
      --json) ;;
      --role|--bundle|--since|--compare)
        (($# > 1)) || die_input "$1 needs a value; usage: ${USAGE}"
        case "$1" in
          --role) [[ " ${GL_ROLES} " == *" $2 "* ]] || die_input "--role '$2': expected one of ${GL_ROLES// /, }"
                  DOCTOR_ROLE="$2" ;;
          --bundle) dr_bundle_check_dir "$2"; DR_BUNDLE_DIR="$2" ;;
          --since) [[ "$2" =~ ^[1-9][0-9]{0,3}$ ]] || die_input "--since '$2': expected a number of hours (1-9999)"
                   DR_SINCE_HOURS="$2" ;;
          --compare) [[ -f "$2" && -r "$2" ]] || die_input "--compare $2: not a readable file (another server's /etc/rancher/k3s/config.yaml)"
                     DR_COMPARE+=("$2") ;;
        esac
        shift ;;
      -h|--help) printf 'usage: %s\n' "${USAGE}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${USAGE}" ;;
    esac
    shift
  done
}

doctor_role() {  # a single-node topology has one role; a cluster host's role is named by the caller
  if [[ -z "${DOCTOR_ROLE}" ]]; then
    [[ "${TOPOLOGY}" == single ]] || die_input "--role is required for TOPOLOGY=${TOPOLOGY} hosts (first-server, server or agent)"
    DOCTOR_ROLE=single
  elif [[ "${TOPOLOGY}" == single && "${DOCTOR_ROLE}" != single ]] || [[ "${TOPOLOGY}" != single && "${DOCTOR_ROLE}" == single ]]; then
    die_input "--role ${DOCTOR_ROLE} does not fit TOPOLOGY=${TOPOLOGY} (single: single; ha: first-server, server, agent)"
  fi
}

main() {
  doctor_args "$@"
  gl_load_settings
  doctor_role
  k3s_use_role "${DOCTOR_ROLE}"  # the service k3s names for this role: k3s, or k3s-agent on an agent
  doctor_table_load
  info "doctor for role ${DOCTOR_ROLE} (read-only)"
  doctor_run_all                 # every row of lib/doctor_table.sh for this role, timed
  if [[ -n "${DR_BUNDLE_DIR}" ]]; then doctor_bundle; fi
  doctor_table_text >&2
  if [[ "${GL_JSON}" == 1 ]]; then gl_result_print "$(doctor_json)"; fi
  exit "$(gl_checks_exit_code)"
}

main "$@"
