#!/usr/bin/env bash
# 01_site_check.sh: read-only check of the bastion before the site services are installed: the
# bundle's site files, the packages (installed or in site/packages), the registry certificate
# (chain, names, expiry) and disk space for the images.
#
# Usage: 01_site_check.sh [--json]
# Exit status (worst finding): 0 all passed, 3 warnings only, 1 a check failed, 2 bad arguments.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include

check_site_files() {
  local f missing=()
  for f in images.list site.hosts chrony-server.conf dnsmasq.conf; do [[ -f "$(site_file "${f}")" ]] || missing+=("site/${f}"); done
  if [[ "${REGISTRY_KIND}" == distribution ]]; then
    for f in registry-config.yml registry.crt registry.key ca.crt; do [[ -f "$(site_file "${f}")" ]] || missing+=("site/${f}"); done
  fi
  if ((${#missing[@]})); then gl_check_fail site-files "the bundle lacks ${missing[*]}" "stage the bastion bundle with invoke site.deploy (it renders them)"
  else gl_check_pass site-files "the bundle's site files are present"; fi
}

check_certificate_files() {
  local cert ca host want problems=()
  [[ "${REGISTRY_KIND}" == distribution ]] || { gl_check_skip registry-cert "REGISTRY_KIND=${REGISTRY_KIND}: the site's own registry"; return 0; }
  cert="$(site_file registry.crt)"; ca="$(site_file ca.crt)"; host="$(site_registry_host)"
  [[ -f "${cert}" && -f "${ca}" ]] || return 0
  openssl verify -CAfile "${ca}" "${cert}" >/dev/null 2>&1 || problems+=("not signed by site/ca.crt")
  openssl x509 -in "${cert}" -noout -checkend 0 >/dev/null || problems+=("expired ($(openssl x509 -in "${cert}" -noout -enddate))")
  want=(-checkhost "${host}"); site_is_ip "${host}" && want=(-checkip "${host}")
  openssl x509 -in "${cert}" -noout "${want[@]}" | grep -q 'does match' || problems+=("does not name ${host}")
  openssl x509 -in "${cert}" -noout -checkip "${BASTION_IP}" | grep -q 'does match' || problems+=("does not name ${BASTION_IP}")
  if ((${#problems[@]})); then gl_check_fail registry-cert "site/registry.crt: ${problems[*]}" "re-issue it: invoke ca.init, then invoke site.deploy"
  else gl_check_pass registry-cert "site/registry.crt names ${host} and ${BASTION_IP}, chains to the site CA"; fi
}

main() {
  gl_parse_args "01_site_check.sh [--json]" norole "$@"
  gl_load_settings
  check_site_files
  check_certificate_files
  site_check_packages bastion
  site_check_disk /var/lib/docker-registry
  gl_checks_finish none
}

main "$@"
