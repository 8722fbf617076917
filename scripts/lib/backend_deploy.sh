#!/usr/bin/env bash
# lib/backend_deploy.sh: the steps of the backend deploy phase (03_deploy_gl_backend.sh, single node;
# 05_deploy_gl_backend.sh, cluster): import the backend image archives and apply the backend manifests
# to k3s, then wait (bounded by ROLLOUT_TIMEOUT) for the rollout; idempotent.
# Bundle inputs: artifacts/images/*.tar* (OCI/docker archives, optional SHA256SUMS next to them)
# and backend/backend.yaml. Under the k3s stand-in the Kubernetes steps are reported
# "skipped: needs real k3s"; the file steps still run.
# Sourced after lib/common.sh, lib/checks.sh, lib/k3s.sh and lib/k3s_api.sh.

IMAGES_DIR=""
MANIFEST=""
IMAGES=()
NEEDS_REAL="needs real k3s"

# the bundle's inputs: bad input is refused before anything is touched (exit 2). The settings
# (ROLLOUT_TIMEOUT, NAMESPACE, ...) were decided and checked by gldeploy: not checked again here.
backend_inputs() {
  local f
  IMAGES_DIR="${GL_BUNDLE_DIR}/artifacts/images"
  MANIFEST="${GL_BUNDLE_DIR}/backend/backend.yaml"
  [[ -s "${MANIFEST}" ]] || die_input "${MANIFEST}: backend manifest missing or empty; render the bundle again (invoke deploy-gl-backend builds it)"
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

# shellcheck disable=SC2034  # GL_CHANGED is reported by lib/checks.sh
backend_apply_manifests() {
  local out line changed=()
  if [[ "${K3S_RUNNING_MODE}" != real ]]; then gl_check_skip "backend manifests" "${NEEDS_REAL}"; return 0; fi
  out=$(k3s_kubectl apply --request-timeout=60s -f "${MANIFEST}" 2>&1) \
    || k3s_abort "backend manifests" "kubectl apply failed: ${out//$'\n'/; }" \
         "check backend/backend.yaml (invoke deploy-gl-backend renders it again) and the API: k3s kubectl get --raw /readyz"
  while IFS= read -r line; do
    [[ -z "${line}" || "${line}" == *" unchanged" ]] || changed+=("${line}")
  done <<<"${out}"
  if (( ${#changed[@]} )); then GL_CHANGED=true; gl_check_pass "backend manifests" "applied: $(IFS=';'; echo "${changed[*]}")"
  else gl_check_pass "backend manifests" "all objects unchanged"; fi
}

backend_wait_rollout() {  # the list is captured first: a failed kubectl get must fail the phase, not list nothing
  local kind name ns list tmp waited=()
  if [[ "${K3S_RUNNING_MODE}" != real ]]; then gl_check_skip "backend rollout" "${NEEDS_REAL}"; return 0; fi
  gl_tmpdir tmp
  list=$(k3s_kubectl get --request-timeout=60s -f "${MANIFEST}" \
           -o jsonpath='{range .items[*]}{.kind} {.metadata.name} {.metadata.namespace}{"\n"}{end}' 2>"${tmp}/err") \
    || k3s_abort "backend rollout" "could not list the workloads in backend/backend.yaml: $(tr '\n' ' ' <"${tmp}/err")" \
         "check the API (k3s kubectl get --raw /readyz) and run this phase again"
  while read -r kind name ns; do
    case "${kind}" in Deployment|StatefulSet|DaemonSet) ;; *) continue ;; esac
    info "waiting up to ${ROLLOUT_TIMEOUT}s for ${kind}/${name} in ${ns:-${NAMESPACE}}"
    k3s_kubectl -n "${ns:-${NAMESPACE}}" rollout status "${kind,,}/${name}" --timeout="${ROLLOUT_TIMEOUT}s" >&2 </dev/null \
      || k3s_abort "backend rollout" "${kind}/${name} did not become ready within ${ROLLOUT_TIMEOUT}s" \
           "k3s kubectl -n ${ns:-${NAMESPACE}} describe ${kind,,}/${name}; k3s kubectl -n ${ns:-${NAMESPACE}} get events --sort-by=.lastTimestamp"
    waited+=("${kind,,}/${name}")
  done <<<"${list}"
  (( ${#waited[@]} )) || k3s_abort "backend rollout" "backend/backend.yaml has no Deployment, StatefulSet or DaemonSet to wait for" \
    "the backend manifest always has a Deployment: render the bundle again (invoke deploy-gl-backend)"
  gl_check_pass "backend rollout" "ready: ${waited[*]}"
}
