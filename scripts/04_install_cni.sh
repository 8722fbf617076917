#!/usr/bin/env bash
# 04_install_cni.sh: install or verify the cluster's CNI on the first server.
#   usage: 04_install_cni.sh [--json] [--role first-server] [--plugin flannel|calico|cilium]
#   --plugin  overrides the CNI setting (empty CNI = flannel, k3s' built-in)
# flannel: verified (k3s runs it; config.yaml must not disable it). calico / cilium: the manifest
# shipped in the bundle (artifacts/cni/<plugin>.yaml) is put into k3s' auto-deploy directory
# /var/lib/rancher/k3s/server/manifests, which k3s applies itself (no kubectl). A plugin that
# disagrees with the config.yaml 02 installed (flannel-backend: none ...) is refused with the fix.
# Under the k3s stand-in the Kubernetes-level check is skipped: needs real k3s.
# Exit: 0 done, 1 refused or failed, 2 bad arguments or settings.
# shellcheck disable=SC2034  # GL_JSON / GL_CHANGED are read by lib/checks.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/cni.sh"  # gl:include

CNI_PLUGIN_ARG=""

parse_args() {
  local usage="04_install_cni.sh [--json] [--role first-server] [--plugin flannel|calico|cilium]"
  while (( $# )); do
    case "$1" in
      --json) GL_JSON=1 ;;
      --plugin=*|--role=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
      --plugin|--role)
        (( $# > 1 )) || die_input "$1 needs a value; usage: ${usage}"
        if [[ "$1" == --plugin ]]; then CNI_PLUGIN_ARG="$2"; else GL_ROLE="$2"; fi
        shift ;;
      -h|--help) printf 'usage: %s\n' "${usage}" >&2; exit 0 ;;
      *) die_input "unknown argument '$1'; usage: ${usage}" ;;
    esac
    shift
  done
  case "${GL_ROLE:-first-server}" in
    first-server) ;;
    *) die_input "--role ${GL_ROLE}: the CNI is installed from the first server only (--role first-server)" ;;
  esac
  if [[ -n "${CNI_PLUGIN_ARG}" ]]; then [[ -n "${CNI_PLUGIN_ARG// /}" ]] || die_input "--plugin is empty; expected one of: ${K3S_CNI_PLUGINS// /, }"; fi
}

# the installed config.yaml must carry exactly the keys this plugin needs
check_config() {
  local want have installed
  [[ -r "${K3S_CONFIG}" ]] || k3s_abort cni-config "k3s is not installed here (${K3S_CONFIG#"${GL_ROOT}"} missing)" \
    "run 02_init_control_plane.sh on this host first"
  want=$(k3s_cni_config_lines "${K3S_CNI}")
  have=$(k3s_cni_installed_lines "${K3S_CONFIG}")
  if [[ "${want}" != "${have}" ]]; then
    installed=$(k3s_cni_of_config "${K3S_CONFIG}")
    k3s_abort cni-config "--plugin/CNI ${K3S_CNI} disagrees with the installed ${K3S_CONFIG#"${GL_ROOT}"} (written for $([[ "${installed}" == flannel ]] && echo "k3s' built-in flannel" || echo 'an external CNI: flannel-backend none')): it has [${have//$'\n'/; }], ${K3S_CNI} needs [${want//$'\n'/; }]" \
      "set CNI=${K3S_CNI} in the env file and run 02_init_control_plane.sh again on every server (k3s takes these keys only at install time), then this phase; or pass the plugin the cluster was installed with"
  fi
  gl_check_pass cni-config "config.yaml matches ${K3S_CNI}$([[ -n "${want}" ]] && echo " (${want//$'\n'/, })")"
}

ship_manifest() {
  local src dest
  src=$(k3s_cni_manifest "${K3S_CNI}")
  dest=$(k3s_cni_manifest_dest "${K3S_CNI}")
  [[ -s "${src}" ]] && grep -q '^kind:' "${src}" || die_input "${src}: no ${K3S_CNI} manifest in the bundle (artifacts/cni/${K3S_CNI}.yaml, Kubernetes YAML); stage the CNI artifacts (the phase needs 'cni') and ship again"
  gl_install_file "${src}" "${dest}" 0600
  if [[ "${GL_INSTALLED}" == changed ]]; then
    GL_CHANGED=true
    gl_check_pass cni-manifest "${K3S_CNI} manifest written to ${dest#"${GL_ROOT}"}; k3s applies it"
  else
    gl_check_pass cni-manifest "${K3S_CNI} manifest already in ${dest#"${GL_ROOT}"}: nothing changed"
  fi
}

check_nodes() {
  if [[ "$(k3s_mode)" != real ]]; then
    gl_check_skip cni-ready "skipped: needs real k3s (${K3S_CNI} pods running, nodes Ready)"
    return 0
  fi
  if "${K3S_BIN}" kubectl wait --for=condition=Ready nodes --all --timeout="${HEALTH_TIMEOUT}s" >/dev/null 2>&1; then
    gl_check_pass cni-ready "every node is Ready with ${K3S_CNI}"
  else
    gl_check_fail cni-ready "not every node became Ready within ${HEALTH_TIMEOUT}s with ${K3S_CNI}" \
      "k3s kubectl get nodes; k3s kubectl -n kube-system get pods (the ${K3S_CNI} pods)"
  fi
}

main() {
  # arguments -> settings -> plugin (flag over CNI) -> installed config agrees -> manifest -> nodes
  parse_args "$@"
  gl_load_settings
  k3s_cni_validate "${CNI_PLUGIN_ARG}"
  gl_require_root
  check_config
  if [[ "${K3S_CNI}" == flannel ]]; then
    gl_check_pass cni-manifest "flannel is built into k3s: no manifest to apply"
  else
    ship_manifest
  fi
  check_nodes
  gl_checks_finish "$(k3s_mode)"
}

main "$@"
