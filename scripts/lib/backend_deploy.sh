#!/usr/bin/env bash
# lib/backend_deploy.sh: the steps of the backend deploy phase (03_deploy_gl_backend.sh, single node;
# 05_deploy_gl_backend.sh, cluster): import the backend image archives, install the backend's
# HelmChart manifest into k3s' auto-deploy directory (k3s' own Helm controller installs the chart
# from it: no helm binary on the host), then wait (bounded by ROLLOUT_TIMEOUT) until the Deployment
# carries this release's digest and has rolled out; idempotent (same manifest bytes: no change).
# Bundle inputs: artifacts/images/*.tar* (OCI/docker archives, optional SHA256SUMS next to them)
# and backend/gl-backend-helmchart.yaml (rendered by gldeploy.backend). Under the k3s stand-in the
# Kubernetes steps are reported "skipped: needs real k3s"; the file steps still run.
# Sourced after lib/common.sh, lib/checks.sh, lib/k3s.sh and lib/k3s_api.sh.

IMAGES_DIR=""
MANIFEST=""
RELEASE_DIGEST=""
IMAGES=()
NEEDS_REAL="needs real k3s"
BACKEND_HELMCHART="gl-backend-helmchart.yaml"   # gldeploy.backend.HELMCHART_FILE
BACKEND_DEPLOYMENT="gl-backend"                 # the chart's Deployment (and release) name
K3S_MANIFESTS_DIR=""  # k3s applies every file in its server/manifests (as an AddOn)

# the bundle's inputs: bad input is refused before anything is touched (exit 2). The settings
# (ROLLOUT_TIMEOUT, NAMESPACE, ...) were decided and checked by gldeploy: not checked again here.
backend_inputs() {
  local f
  IMAGES_DIR="${GL_BUNDLE_DIR}/artifacts/images"
  MANIFEST="${GL_BUNDLE_DIR}/backend/${BACKEND_HELMCHART}"
  K3S_MANIFESTS_DIR="${K3S_DATA_DIR}/server/manifests"
  [[ -s "${MANIFEST}" ]] || die_input "${MANIFEST}: backend HelmChart manifest missing or empty; render the bundle again (invoke deploy-gl-backend builds it)"
  # the annotation gldeploy writes on the HelmChart (one line, value double-quoted)
  RELEASE_DIGEST=$(sed -nE 's/^    gl-native\.io\/release-digest: "([0-9a-f]{64})"$/\1/p' "${MANIFEST}")
  [[ "${RELEASE_DIGEST}" =~ ^[0-9a-f]{64}$ ]] || die_input "${MANIFEST}: no gl-native.io/release-digest annotation (64 hex digits); it was not rendered by gldeploy: render the bundle again"
  for f in "${IMAGES_DIR}"/*.tar "${IMAGES_DIR}"/*.tar.gz "${IMAGES_DIR}"/*.tar.zst; do
    if [[ -f "${f}" ]]; then IMAGES+=("${f}"); fi
  done
  return 0
}

backend_listed_in_sums() {  # NAME SUMS: 0 when SUMS has a line "<sha>  NAME" (or "<sha> *NAME", binary mode)
  local name
  while read -r _ name; do
    if [[ "${name#\*}" == "$1" ]]; then return 0; fi
  done <"$2"
  return 1
}

backend_verify_images() {  # SHA256SUMS, when present, must list and match every archive before any copy
  local sums="${IMAGES_DIR}/SHA256SUMS" out f unlisted=()
  if (( ${#IMAGES[@]} == 0 )); then return 0; fi
  if [[ ! -f "${sums}" ]]; then
    gl_check_warn "backend image checksums" "no SHA256SUMS in artifacts/images: archives not verified" \
      "ship artifacts/images/SHA256SUMS (sha256sum *.tar > SHA256SUMS) with the bundle"
    return 0
  fi
  for f in "${IMAGES[@]}"; do
    backend_listed_in_sums "$(basename "${f}")" "${sums}" || unlisted+=("$(basename "${f}")")
  done
  if (( ${#unlisted[@]} )); then  # sha256sum -c --ignore-missing would pass them unchecked
    k3s_abort "backend image checksums" "not listed in artifacts/images/SHA256SUMS, refusing unverified archive(s): ${unlisted[*]}" \
      "remove them from artifacts/images, or ship the release's SHA256SUMS that lists them; nothing was copied"
  fi
  if ! out=$(cd "${IMAGES_DIR}" && sha256sum -c --ignore-missing --quiet SHA256SUMS 2>&1); then
    k3s_abort "backend image checksums" "image archives do not match artifacts/images/SHA256SUMS: ${out//$'\n'/; }" \
      "copy the image archives again from the release bundle"
  fi
  gl_check_pass "backend image checksums" "${#IMAGES[@]} archive(s) match SHA256SUMS"
}

# backend_image_present REF: 0 when containerd (k8s.io namespace) already has the backend image: first under
# BACKEND_IMAGE_REF, the name the archives are imported as (gldeploy's backend.containerd_name), else
# as REF or its docker.io forms. No empty pattern: grep -x "" would match an empty listing.
backend_image_present() {
  local ref="$1" listed forms=()
  listed=$("${K3S_BIN}" ctr images ls -q 2>/dev/null) || return 1
  if [[ -n "${BACKEND_IMAGE_REF}" ]]; then forms+=(-e "${BACKEND_IMAGE_REF}"); fi
  forms+=(-e "${ref}" -e "docker.io/${ref}" -e "docker.io/library/${ref}")
  grep -qxF "${forms[@]}" <<<"${listed}"
}

backend_import_images() {
  local f dest copied=() imported=()
  if (( ${#IMAGES[@]} == 0 )); then
    gl_check_pass "backend images" "no image archives in artifacts/images: pods pull ${BACKEND_IMAGE}:${BACKEND_VERSION}$([[ -n "${REGISTRY}" ]] && echo " via ${REGISTRY}")"
    return 0
  fi
  for f in "${IMAGES[@]}"; do
    dest="${K3S_IMAGES_DIR}/$(basename "${f}")"
    gl_install_file "${f}" "${dest}" 0644  # in this shell: a failed copy ends the phase
    if [[ "${GL_INSTALLED}" == changed ]]; then copied+=("$(basename "${f}")"); fi
    # import this archive when it is new on the host, or when containerd lacks the backend image
    if [[ "${K3S_RUNNING_MODE}" == real ]] && { [[ "${GL_INSTALLED}" == changed ]] || ! backend_image_present "${BACKEND_IMAGE}:${BACKEND_VERSION}"; }; then
      "${K3S_BIN}" ctr images import "${dest}" >&2 || k3s_abort "backend images" "k3s ctr images import ${dest} failed" \
        "check the archive (skopeo inspect oci-archive:${dest}) and free space under /var/lib/rancher"
      imported+=("$(basename "${f}")")
    fi
  done
  if (( ${#copied[@]} )); then GL_CHANGED=true; fi
  gl_check_pass "backend images" "$(( ${#IMAGES[@]} )) archive(s) in ${K3S_IMAGES_DIR#"${GL_ROOT}"}$( (( ${#copied[@]} )) && echo "; copied ${copied[*]}" || echo ", unchanged")"
  if [[ "${K3S_RUNNING_MODE}" == real ]]; then
    if (( ${#imported[@]} )); then GL_CHANGED=true; gl_check_pass "backend image import" "imported ${imported[*]} into containerd"
    else gl_check_pass "backend image import" "${BACKEND_IMAGE_REF} already in containerd"; fi
  else
    gl_check_skip "backend image import" "${NEEDS_REAL}"
  fi
}

# The HelmChart manifest into k3s' auto-deploy directory, in every mode (a file step): k3s applies
# it, and its Helm controller runs the chart's install/upgrade job in kube-system.
# shellcheck disable=SC2034  # GL_CHANGED is reported by lib/checks.sh
backend_apply_manifests() {
  local dest="${K3S_MANIFESTS_DIR}/${BACKEND_HELMCHART}"
  gl_install_file "${MANIFEST}" "${dest}" 0600  # in this shell: a failed copy ends the phase
  if [[ "${GL_INSTALLED}" == changed ]]; then
    GL_CHANGED=true
    gl_check_pass "backend chart" "installed ${dest#"${GL_ROOT}"} (release ${RELEASE_DIGEST:0:12}) for k3s' Helm controller"
  else
    gl_check_pass "backend chart" "${dest#"${GL_ROOT}"} unchanged (release ${RELEASE_DIGEST:0:12})"
  fi
}

backend_deployed_digest() {  # the release digest the backend Deployment carries ("" while it does not exist)
  k3s_kubectl -n "${NAMESPACE}" get deployment "${BACKEND_DEPLOYMENT}" --request-timeout=30s --ignore-not-found \
    -o jsonpath='{.metadata.annotations.gl-native\.io/release-digest}'
}

# First until the Deployment carries this release's digest (the Helm job has installed this
# chart and these values: a rollout status before that would report on the previous release),
# then the rollout itself, both within ROLLOUT_TIMEOUT.
backend_wait_rollout() {
  local tmp got="" seen err="" deadline remaining
  if [[ "${K3S_RUNNING_MODE}" != real ]]; then gl_check_skip "backend rollout" "${NEEDS_REAL}"; return 0; fi
  gl_tmpdir tmp
  deadline=$(( $(date +%s) + ROLLOUT_TIMEOUT ))
  info "waiting up to ${ROLLOUT_TIMEOUT}s for k3s' Helm controller to install release ${RELEASE_DIGEST:0:12}"
  while :; do
    if got=$(backend_deployed_digest 2>"${tmp}/err"); then
      err=""
      if [[ "${got}" == "${RELEASE_DIGEST}" ]]; then break; fi
    else
      err="; last error: $(tr '\n' ' ' <"${tmp}/err")"
    fi
    if (( $(date +%s) >= deadline )); then
      if [[ -n "${got}" ]]; then seen="release ${got:0:12}"; else seen="no release digest"; fi
      k3s_abort "backend rollout" "release ${RELEASE_DIGEST:0:12} was not installed within ${ROLLOUT_TIMEOUT}s: deployment/${BACKEND_DEPLOYMENT} in ${NAMESPACE} carries ${seen}${err}" \
        "k3s kubectl -n kube-system logs job/helm-install-${BACKEND_DEPLOYMENT}; k3s kubectl -n kube-system get helmchart ${BACKEND_DEPLOYMENT} -o yaml"
    fi
    sleep 2
  done
  remaining=$(( deadline - $(date +%s) ))
  if (( remaining < 1 )); then remaining=1; fi
  k3s_kubectl -n "${NAMESPACE}" rollout status "deployment/${BACKEND_DEPLOYMENT}" --timeout="${remaining}s" >&2 </dev/null \
    || k3s_abort "backend rollout" "deployment/${BACKEND_DEPLOYMENT} did not become ready within ${ROLLOUT_TIMEOUT}s" \
         "k3s kubectl -n ${NAMESPACE} describe deployment/${BACKEND_DEPLOYMENT}; k3s kubectl -n ${NAMESPACE} get events --sort-by=.lastTimestamp"
  gl_check_pass "backend rollout" "ready: deployment/${BACKEND_DEPLOYMENT} (release ${RELEASE_DIGEST:0:12})"
}
