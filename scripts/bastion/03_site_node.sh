#!/usr/bin/env bash
# 03_site_node.sh: join a k3s node (any role) to the air-gapped site before k3s is installed: its
# packages from the bundle (site/packages: the chrony client), the site CA in the trust store and for
# k3s, the one registries.yaml gldeploy rendered (mirrors + auth + CA, 0600), chrony pointing at the
# bastion, the site time zone, the site names (and this host resolving them), a default route.
# Idempotent: a second run changes nothing and says so.
#
# Usage: 03_site_node.sh [--json]
# Exit status: 0 done, 1 a step failed, 2 bad arguments or settings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_node.sh"  # gl:include

main() {
  gl_parse_args "03_site_node.sh [--json]" norole "$@"
  gl_load_settings
  gl_require_root
  site_install_packages
  site_trust_ca
  site_registries_yaml
  site_chrony_client
  site_timezone
  site_names
  site_host_resolves
  site_default_route
  gl_checks_finish none
}

main "$@"
