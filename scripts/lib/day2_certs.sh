#!/usr/bin/env bash
# lib/day2_certs.sh: the certificate expiry scan shared by certs.sh and doctor's cert-expiry check:
# one list of files, one threshold, one rule. Sourced after lib/k3s.sh; inlined into standalone scripts.
# shellcheck disable=SC2034  # DAY2_CERT_* variables are read by certs.sh and lib/doctor_checks.sh

# k3s' own window: `k3s certificate check` marks a certificate WARNING when it ends within
# config.CertificateRenewDays (pkg/cli/cert/cert.go collectCertInfo), and k3s renews leaf
# certificates at start inside the same window: 90 days in older releases, 120 since k3s #12171.
# The larger one is the default, so a warning comes no later than k3s' own on any release.
DAY2_CERT_THRESHOLD_DAYS=120
DAY2_CERT_FAIL_DAYS=7   # fewer days left than this (or expired, or not yet valid): a failure

# day2_cert_files: "KIND PATH" lines: the k3s certificates `k3s certificate check` reads (server/tls,
# its etcd/ subdir, the agent's), then the internal CA this node trusts for the registry
day2_cert_files() {
  local f
  for f in "${K3S_DATA_DIR}"/server/tls/*.crt "${K3S_DATA_DIR}"/server/tls/etcd/*.crt "${K3S_DATA_DIR}"/agent/*.crt; do
    if [[ -f "${f}" ]]; then printf 'k3s %s\n' "${f}"; fi
  done
  if [[ -f "${K3S_REGISTRY_CA_DEST}" ]]; then printf 'internal-ca %s\n' "${K3S_REGISTRY_CA_DEST}"; fi
  return 0
}

# day2_cert_status FILE THRESHOLD: sets DAY2_CERT_STATUS (OK, WARNING, EXPIRED, NOT YET VALID,
# UNREADABLE: k3s' words), DAY2_CERT_DAYS (whole days left), DAY2_CERT_END, DAY2_CERT_SUBJECT
day2_cert_status() {
  local file="$1" threshold="$2" out start end now start_s end_s line
  DAY2_CERT_STATUS=UNREADABLE DAY2_CERT_DAYS=-1 DAY2_CERT_END="" DAY2_CERT_SUBJECT=""
  out=$(openssl x509 -noout -startdate -enddate -subject -nameopt RFC2253 -in "${file}" 2>/dev/null) || return 0
  while IFS= read -r line; do
    case "${line}" in
      notBefore=*) start="${line#notBefore=}" ;;
      notAfter=*) end="${line#notAfter=}" ;;
      subject=*) DAY2_CERT_SUBJECT="${line#subject=}"; DAY2_CERT_SUBJECT="${DAY2_CERT_SUBJECT# }" ;;
    esac
  done <<<"${out}"
  now=$(date +%s)
  start_s=$(date -d "${start}" +%s) && end_s=$(date -d "${end}" +%s) || return 0
  DAY2_CERT_END=$(date -u -d "@${end_s}" +%Y-%m-%dT%H:%M:%SZ)
  DAY2_CERT_DAYS=$(( (end_s - now) / 86400 ))
  if ((start_s > now)); then DAY2_CERT_STATUS="NOT YET VALID"
  elif ((end_s <= now)); then DAY2_CERT_STATUS=EXPIRED
  elif ((end_s <= now + threshold * 86400)); then DAY2_CERT_STATUS=WARNING
  else DAY2_CERT_STATUS=OK; fi
}

# day2_cert_scan THRESHOLD: scan every file; sets DAY2_CERT_N, DAY2_CERT_WORST (pass|warn|fail),
# DAY2_CERT_SOONEST (the most urgent finding, as text) and DAY2_CERT_ROWS ("status|days|end|kind|path|subject")
day2_cert_scan() {
  local threshold="$1" kind file rank=0 r soonest_days=999999
  DAY2_CERT_N=0 DAY2_CERT_WORST=pass DAY2_CERT_SOONEST="" DAY2_CERT_ROWS=()
  while read -r kind file; do
    DAY2_CERT_N=$((DAY2_CERT_N + 1))
    day2_cert_status "${file}" "${threshold}"
    DAY2_CERT_ROWS+=("${DAY2_CERT_STATUS}|${DAY2_CERT_DAYS}|${DAY2_CERT_END}|${kind}|${file#"${GL_ROOT}"}|${DAY2_CERT_SUBJECT}")
    r=$(day2_cert_rank "${DAY2_CERT_STATUS}" "${DAY2_CERT_DAYS}")
    if ((r > rank || (r == rank && r > 0 && DAY2_CERT_DAYS < soonest_days))); then
      rank=${r} soonest_days=${DAY2_CERT_DAYS}
      DAY2_CERT_SOONEST="${file#"${GL_ROOT}"}: ${DAY2_CERT_STATUS}, $(day2_cert_words)"
    fi
  done < <(day2_cert_files)
  case "${rank}" in 0) DAY2_CERT_WORST=pass ;; 1) DAY2_CERT_WORST=warn ;; *) DAY2_CERT_WORST=fail ;; esac
}

day2_cert_rank() {  # STATUS DAYS: 0 ok, 1 warn, 2 fail
  case "$1" in
    OK) echo 0 ;;
    WARNING) if (($2 < DAY2_CERT_FAIL_DAYS)); then echo 2; else echo 1; fi ;;
    *) echo 2 ;;
  esac
}

day2_cert_words() {  # the last day2_cert_status as words
  case "${DAY2_CERT_STATUS}" in
    UNREADABLE) echo "not a readable PEM certificate" ;;
    "NOT YET VALID") echo "not valid before this host's clock (ends ${DAY2_CERT_END})" ;;
    EXPIRED) echo "expired ${DAY2_CERT_END}" ;;
    *) echo "${DAY2_CERT_DAYS} day(s) left, ends ${DAY2_CERT_END}" ;;
  esac
}
