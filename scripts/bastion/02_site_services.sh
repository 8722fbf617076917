#!/usr/bin/env bash
# 02_site_services.sh: install the site services on the bastion from the bundle (no network): the OS
# packages (site/packages/*.deb), the site CA in the trust store, Docker Distribution v2 as a systemd
# service (TLS from the internal CA, bcrypt htpasswd auth), the images (skopeo, from site/images),
# chrony as the site's NTP server, dnsmasq serving the registry and API names, the site time zone.
# Idempotent: a second run changes nothing and says so.
#
# Usage: 02_site_services.sh [--json]
# Exit status: 0 done, 1 a step failed, 2 bad arguments or settings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_node.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_bastion.sh"  # gl:include

step_registry() {
  [[ "${REGISTRY_KIND}" == distribution ]] || { gl_check_skip registry "REGISTRY_KIND=${REGISTRY_KIND}: the site runs its own registry"; return 0; }
  local restart=false
  if site_registry_files; then restart=true; fi
  if gl_has_systemd; then
    systemctl enable "${SITE_REGISTRY_UNIT}" >/dev/null 2>&1 || true
    # a run that stopped half-way (or the package's first start with its own config) leaves it down
    # shellcheck disable=SC2034  # GL_CHANGED is read by lib/checks.sh
    systemctl is-active --quiet "${SITE_REGISTRY_UNIT}" || { restart=true; GL_CHANGED=true; }
  fi
  if [[ "${restart}" == true ]]; then site_reload "${SITE_REGISTRY_UNIT}"; fi
  if gl_has_systemd; then site_wait_registry "${SITE_REGISTRY_WAIT}"; fi
  if [[ "${restart}" == true ]]; then gl_check_pass registry "docker-registry configured (TLS, htpasswd), restarted and answering"
  else gl_check_pass registry "docker-registry configuration unchanged and answering"; fi
}

step_chrony() {
  if site_install_if_changed "$(site_file chrony-server.conf)" /etc/chrony/chrony.conf 0644; then site_reload chrony; fi
  gl_check_pass ntp-server "chrony serves the site (its allow line) on ${BASTION_IP}:${SITE_NTP_PORT}/udp"
}

step_dns() {
  local changed=1
  site_install_if_changed "$(site_file site.hosts)" "${SITE_ETC}/site.hosts" 0644 && changed=0
  if [[ "${SITE_DNS}" == dnsmasq ]]; then
    site_install_if_changed "$(site_file dnsmasq.conf)" /etc/dnsmasq.d/gl-site.conf 0644 && changed=0
    if ((changed == 0)); then site_reload dnsmasq; fi
    gl_check_pass dns-server "dnsmasq answers the site names on ${BASTION_IP}:${SITE_DNS_PORT}"
  else gl_check_skip dns-server "SITE_DNS=hosts: the names go into every /etc/hosts"; fi
}

main() {
  gl_parse_args "02_site_services.sh [--json]" norole "$@"
  gl_load_settings
  gl_require_root
  site_install_packages
  site_trust_ca
  site_timezone
  step_chrony
  step_dns
  step_registry
  if gl_has_systemd; then site_import_images; gl_check_pass images "site/images.list imported"
  else gl_check_skip images "no systemd here: the registry is not running"; fi
  gl_checks_finish none
}

main "$@"
