#!/usr/bin/env bash
# lib/cni.sh: the CNI choice (settings key CNI=flannel|calico|cilium) and what it means for k3s.
# flannel is k3s' built-in CNI; calico and cilium replace it, which k3s must know when it is
# installed (flannel-backend: none, disable-network-policy; for cilium's kube-proxy replacement
# also disable-kube-proxy), so 02 writes these keys into every server's config.yaml
# (k3s_cni_config_lines) and 04_install_cni.sh checks that the installed config.yaml agrees before
# it ships the plugin's manifest into k3s' auto-deploy directory. Sourced after lib/common.sh.
# shellcheck disable=SC2034  # K3S_CNI_* variables are used by the sourcing scripts

K3S_CNI_PLUGINS="flannel calico cilium"
K3S_CNI=""

# k3s_cni_validate [PLUGIN]: PLUGIN (a --plugin flag, checked here: it is an argument) or the CNI
# setting (decided by gldeploy). Sets K3S_CNI; a bad --plugin exits 2.
k3s_cni_validate() {
  local plugin="${1:-${CNI}}"
  [[ " ${K3S_CNI_PLUGINS} " == *" ${plugin} "* ]] \
    || die_input "--plugin '${plugin}' is not a supported CNI; expected one of: ${K3S_CNI_PLUGINS// /, }"
  K3S_CNI="${plugin}"
}

# k3s_cni_config_lines [PLUGIN]: the server config.yaml keys the plugin needs at install time
k3s_cni_config_lines() {
  local plugin="${1:-${K3S_CNI:-${CNI}}}"
  case "${plugin}" in
    flannel) ;;
    calico|cilium)
      printf '# CNI: %s (installed by 04_install_cni.sh)\n' "${plugin}"  # k3s ignores it; 04 reads it
      printf 'flannel-backend: "none"\n'
      printf 'disable-network-policy: true\n'
      if [[ "${plugin}" == cilium && "${CILIUM_KUBE_PROXY_REPLACEMENT}" == true ]]; then
        printf 'disable-kube-proxy: true\n'
      fi ;;
  esac
}

# k3s_cni_installed_lines CONFIG: the CNI keys of an installed config.yaml, normalised like
# k3s_cni_config_lines prints them (so the two compare as text)
k3s_cni_installed_lines() {
  local key value line
  while IFS= read -r line; do
    if [[ "${line}" =~ ^#\ CNI:\ ([a-z]+)\  ]]; then printf '# CNI: %s (installed by 04_install_cni.sh)\n' "${BASH_REMATCH[1]}"; continue; fi
    [[ "${line}" =~ ^(flannel-backend|disable-network-policy|disable-kube-proxy):[[:space:]]*(.*)$ ]] || continue
    key="${BASH_REMATCH[1]}" value="${BASH_REMATCH[2]//[\"\']/}"
    value="${value%%[[:space:]]#*}" value="${value%"${value##*[![:space:]]}"}"
    case "${key}" in
      flannel-backend) if [[ "${value}" != vxlan ]]; then printf 'flannel-backend: "%s"\n' "${value}"; fi ;;
      *) if [[ "${value}" == true ]]; then printf '%s: true\n' "${key}"; fi ;;
    esac
  done <"$1"
}

# k3s_cni_of_config CONFIG: the plugin an installed config.yaml was written for (flannel | external)
k3s_cni_of_config() {
  if grep -qE '^flannel-backend:[[:space:]]*"?none"?' "$1"; then echo external; else echo flannel; fi
}

# k3s_cni_manifest PLUGIN: the plugin's manifest in the bundle (artifacts/cni/<plugin>.yaml)
k3s_cni_manifest() { gl_bundle_path "artifacts/cni/$1.yaml"; }

# k3s_cni_manifest_dest PLUGIN: where k3s' deploy controller picks it up (no kubectl needed)
k3s_cni_manifest_dest() { printf '%s/server/manifests/gl-cni-%s.yaml\n' "${K3S_DATA_DIR}" "$1"; }
