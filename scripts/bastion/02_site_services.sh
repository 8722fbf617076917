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
  if site_registry_files; then site_reload docker-registry; gl_check_pass registry "docker-registry configured (TLS, htpasswd) and restarted"
  else gl_check_pass registry "docker-registry configuration unchanged"; fi
  if gl_has_systemd; then
    systemctl enable docker-registry >/dev/null 2>&1 || true
    local i code _rc
    for ((i = 0; i < 60; i++)); do
      read -r code _rc < <(site_curl_code /v2/ 0)
      [[ "${code}" == 401 || ( -z "${REGISTRY_USER}" && "${code}" == 200 ) ]] && return 0
      sleep 1
    done
    fatal "the registry does not answer on https://${REGISTRY}/v2/ after 60 s; see journalctl -u docker-registry"
  fi
}

step_chrony() {
  if site_install_if_changed "$(site_file chrony-server.conf)" /etc/chrony/chrony.conf 0644; then site_reload chrony; fi
  gl_check_pass ntp-server "chrony serves ${SITE_SUBNET} on UDP ${SITE_NTP_PORT}"
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
