#!/usr/bin/env bash
# certs.sh: certificate expiry report for this node, and rotation by k3s' documented procedure.
#
# Usage: certs.sh [--json] [--threshold DAYS]
#        certs.sh [--json] --rotate
#   (report) every certificate `k3s certificate check` reads (server/tls, server/tls/etcd, agent/)
#            and the internal CA installed for the registry: one check per certificate with its
#            status in k3s' words (OK, WARNING, EXPIRED, NOT YET VALID), days left and end date.
#            --threshold: warn when fewer days remain (default 120: k3s' renewal window; doctor's
#            cert-expiry check uses the same scan and default). Read-only.
#   --rotate k3s' procedure: stop k3s, `k3s certificate rotate` (k3s backs the old ones up to
#            server/tls-<time>), start k3s (it issues new leaf certificates), wait for the API.
#            CA certificates are not rotated here (k3s certificate rotate-ca; see docs/day2.md).
# Exit status: 0 all OK, 3 warnings, 1 a certificate expired/ends within 7 days or rotation failed,
# 2 bad arguments.
# shellcheck disable=SC2034  # GL_JSON and GL_CHANGED are read by lib/common.sh and lib/checks.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/day2_certs.sh"  # gl:include

USAGE="certs.sh [--json] [--threshold DAYS] | certs.sh [--json] --rotate"
THRESHOLD="${DAY2_CERT_THRESHOLD_DAYS}" ROTATE=0

certs_args() {
  local arg
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (($#)); do
    case "$1" in
      --json) ;;
      --rotate) ROTATE=1 ;;
      --threshold)
        (($# > 1)) || die_input "--threshold needs a number of days; usage: ${USAGE}"
        [[ "$2" =~ ^[0-9]{1,5}$ ]] || die_input "--threshold '$2': expected a whole number of days (0-99999)"
        THRESHOLD=$((10#$2)); shift ;;
      -h|--help) printf 'usage: %s\n' "${USAGE}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${USAGE}" ;;
    esac
    shift
  done
}

certs_report() {
  local row status days end kind path subject fix
  day2_cert_scan "${THRESHOLD}"
  if ((DAY2_CERT_N == 0)); then
    gl_check_warn certificates "no k3s certificates under ${K3S_DATA_DIR#"${GL_ROOT}"} (k3s never started here?)" "start k3s once (phase 02)"
    return
  fi
  for row in "${DAY2_CERT_ROWS[@]}"; do
    IFS='|' read -r status days end kind path subject <<<"${row}"
    fix="restart k3s (leaf certificates inside the window are renewed at start) or: invoke certs.rotate; a CA near its end: k3s certificate rotate-ca"
    [[ "${kind}" != internal-ca ]] || fix="issue a new internal CA, re-sign the registry certificate, set REGISTRY_CA_FILE and run phase 02 again"
    case "$(day2_cert_rank "${status}" "${days}")" in
      0) gl_check_pass "${path}" "${status}: ${days} day(s) left, ends ${end} (${subject}; ${kind})" ;;
      1) gl_check_warn "${path}" "${status}: ${days} day(s) left (threshold ${THRESHOLD}), ends ${end} (${subject}; ${kind})" "${fix}" ;;
      *) gl_check_fail "${path}" "${status}: ${days} day(s) left, ends ${end:-?} (${subject:-unreadable}; ${kind})" "${fix}" ;;
    esac
  done
  info "${DAY2_CERT_N} certificate(s), threshold ${THRESHOLD} days; most urgent: ${DAY2_CERT_SOONEST:-none}"
}

certs_rotate() {
  local out was=stopped
  gl_require_root
  [[ -x "${K3S_BIN}" ]] || die_input "k3s is not installed on this node (${K3S_BIN#"${GL_ROOT}"})"
  if k3s_service_active; then was=running; fi
  k3s_stop
  GL_CHANGED=true
  out=$("${K3S_BIN}" certificate rotate --config "${K3S_CONFIG}" 2>&1) \
    || { k3s_start; k3s_abort "rotate" "k3s certificate rotate failed: $(tail -n 2 <<<"${out}" | tr '\n' ' '); k3s started again with the old certificates" "read the message; run certs.sh --rotate again"; }
  gl_check_pass "rotate" "k3s certificate rotate: $(grep -o 'backed up certificates to [^,]*' <<<"${out}" | head -n 1 | sed "s|${GL_ROOT}||")"
  k3s_start
  k3s_wait_ready "${HEALTH_TIMEOUT}" || k3s_abort "k3s api" "after the rotation: ${K3S_VERIFY_ERROR}" \
    "read the k3s log; the old certificates are in the backup directory named above"
  gl_check_pass "k3s api" "k3s (was ${was}) started with new certificates; /ping verified against the CA"
}

main() {
  certs_args "$@"
  gl_load_settings
  if ((ROTATE)); then certs_rotate; fi
  certs_report
  gl_checks_finish "$(k3s_mode)"
}

main "$@"
