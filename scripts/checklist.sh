#!/usr/bin/env bash
# checklist.sh: the air-gapped site's dependency checklist, automated (read-only). Each item passes
# or fails with its fix: images imported, charts packaged, OS packages present, registry running and
# answering with auth, NTP reachable and in sync, time zone, DNS resolving the site names,
# certificates valid and distributed, disk space for the images, node-to-node ports open.
#
# Usage: checklist.sh [--role bastion|node] [--address IP] [--json]
#   --role     bastion: the site services' host; node (default): a k3s node
#   --address  this host's address among CONTROL_PLANE_IPS/WORKER_IPS (ports to the others are checked)
#   --json     one JSON result object on stdout (the human table always goes to stderr)
# Exit status (worst item): 0 all passed, 3 warnings only, 1 an item failed, 2 bad arguments.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include

USAGE="checklist.sh [--role bastion|node] [--address IP] [--json]"
CL_ROLE=node
CL_ADDRESS=""

# shellcheck disable=SC2034  # GL_JSON is read by lib/common.sh and lib/checks.sh
checklist_args() {
  local arg
  for arg in "$@"; do if [[ "${arg}" == --json ]]; then GL_JSON=1; fi; done
  while (($#)); do
    case "$1" in
      --json) ;;
      --role|--address)
        (($# > 1)) || die_input "$1 needs a value; usage: ${USAGE}"
        if [[ "$1" == --role ]]; then
          [[ "$2" == bastion || "$2" == node ]] || die_input "--role '$2': expected bastion or node; usage: ${USAGE}"
          CL_ROLE="$2"
        else
          site_is_ip "$2" || die_input "--address '$2': expected this host's IPv4 address; usage: ${USAGE}"
          CL_ADDRESS="$2"
        fi
        shift ;;
      -h|--help) printf 'usage: %s\n' "${USAGE}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${USAGE}" ;;
    esac
    shift
  done
}

main() {
  checklist_args "$@"
  gl_load_settings
  info "site checklist (${CL_ROLE}) from ${GL_BUNDLE_DIR}"
  site_check_packages "${CL_ROLE}"
  site_check_charts
  site_check_registry
  site_check_certificates
  site_check_images
  if [[ "${CL_ROLE}" == bastion ]]; then site_check_disk /var/lib/docker-registry
  else site_check_disk /var/lib/rancher; site_check_ca_distributed; fi
  site_check_ntp
  site_check_timezone
  site_check_dns
  if [[ "${CL_ROLE}" == node && -n "${CL_ADDRESS}" ]]; then site_check_ports "${CL_ADDRESS}"
  elif [[ "${CL_ROLE}" == node ]]; then gl_check_skip ports "give --address to check the ports to the other nodes"; fi
  gl_checks_finish none
}

main "$@"
