#!/usr/bin/env bash
# lib/k3s_install.sh: the k3s install function shared by 02_install_k3s.sh and
# 02_init_control_plane.sh. Sourced after lib/common.sh, lib/checks.sh, lib/k3s.sh, lib/k3s_files.sh.
#
# Like k3s' install.sh: verify the binary against the release's sha256sum-<arch>.txt (and
# K3S_SHA256) BEFORE touching the host; configure k3s through /etc/rancher/k3s/config.yaml;
# hash binary + config + unit + env before and after and restart only when something changed.
# shellcheck disable=SC2034  # K3S_* variables are shared with lib/k3s.sh and the phase scripts

# --- input validation: exit 2, nothing touched ---
_k3s_secret_file_ok() {  # KEY PATH: readable, non-empty, not readable by group/others
  local key="$1" file="$2" mode
  [[ -f "${file}" && -r "${file}" ]] || die_input "${key}=${file}: file not found or unreadable; create it (mode 0600) or clear ${key}"
  [[ -s "${file}" ]] || die_input "${key}=${file}: file is empty; put the secret in it"
  mode=$(stat -c %a "${file}")
  [[ "${mode}" =~ ^[0-7]?[0-7]00$ ]] || die_input "${key}=${file}: mode ${mode} lets others read a secret; run: chmod 600 '${file}'"
}

k3s_validate() {  # ROLE
  local role="$1" dir
  [[ " ${K3S_ROLES} " == *" ${role} "* ]] || die_input "--role ${role}: expected one of: ${K3S_ROLES// /, }"
  case "${role}" in server|agent)
    die_input "role ${role} is not available yet: HA join arrives with the cluster work (valid now: single, first-server)" ;;
  esac
  [[ -n "${K3S_VERSION:-}" ]] || die_input "K3S_VERSION is empty; set it, e.g. K3S_VERSION=v1.28.3+k3s2"
  [[ -n "${CONTROL_PLANE_IPS:-}" ]] || die_input "CONTROL_PLANE_IPS is empty; set the server address(es)"
  [[ "${API_PORT:-}" =~ ^[0-9]+$ ]] || die_input "API_PORT=${API_PORT:-}: expected a port number such as 6443"
  if [[ -n "${K3S_ARTIFACTS_DIR:-}" ]]; then
    dir=$(gl_bundle_path "${K3S_ARTIFACTS_DIR}")
    [[ -d "${dir}" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: ${dir} is not a directory; point it at a k3s release copy or clear it to download"
    [[ -f "${dir}/$(k3s_binary_name)" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: no $(k3s_binary_name) in ${dir}; copy the release asset there"
    [[ -f "${dir}/$(k3s_sums_name)" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: no $(k3s_sums_name) in ${dir}; copy it from the same release (it is how the binary is verified)"
  else
    [[ -n "${K3S_RELEASE_URL:-}" ]] || die_input "K3S_ARTIFACTS_DIR and K3S_RELEASE_URL are both empty; set one of them"
  fi
  if [[ -n "${K3S_TOKEN_FILE:-}" ]]; then _k3s_secret_file_ok K3S_TOKEN_FILE "$(gl_bundle_path "${K3S_TOKEN_FILE}")"; fi
  if [[ -n "${REGISTRY_PASSWORD_FILE:-}" ]]; then
    _k3s_secret_file_ok REGISTRY_PASSWORD_FILE "$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")"
  fi
  if [[ -n "${REGISTRY_CA_FILE:-}" ]]; then
    [[ -r "$(gl_bundle_path "${REGISTRY_CA_FILE}")" ]] || die_input "REGISTRY_CA_FILE=${REGISTRY_CA_FILE}: file not found; copy the registry's CA certificate (PEM) there"
  fi
  return 0
}

# --- artifacts: local directory or download, then verify (before anything is touched) ---
K3S_SRC_DIR=""
k3s_fetch() {  # sets K3S_SRC_DIR to the directory holding the release assets
  local dir url version asset
  if [[ -n "${K3S_ARTIFACTS_DIR:-}" ]]; then K3S_SRC_DIR=$(gl_bundle_path "${K3S_ARTIFACTS_DIR}"); return 0; fi
  gl_tmpdir dir
  version="${K3S_VERSION//+/%2B}"
  for asset in "$(k3s_binary_name)" "$(k3s_sums_name)"; do
    url="${K3S_RELEASE_URL%/}/${version}/${asset}"
    info "downloading ${url}"
    curl -fsSL --retry 3 --connect-timeout 10 --max-time 600 -o "${dir}/${asset}" "${url}" \
      || { K3S_VERIFY_ERROR="download of ${url} failed"; return 1; }
  done
  K3S_SRC_DIR="${dir}"
}

# k3s_expected_sum SUMS ASSET: the sha256 listed for ASSET ("<sha>  <asset>" lines)
k3s_expected_sum() {
  local sum name
  while read -r sum name; do
    if [[ "${name#\*}" == "$2" ]]; then printf '%s\n' "${sum}"; return 0; fi
  done <"$1"
  return 1
}

K3S_VERIFY_ERROR=""
k3s_verify() {  # DIR: 0 when the binary and listed image tarballs match; else K3S_VERIFY_ERROR
  local dir="$1" bin sums want got f
  bin="$(k3s_binary_name)" sums="${dir}/$(k3s_sums_name)"
  want=$(k3s_expected_sum "${sums}" "${bin}") \
    || { K3S_VERIFY_ERROR="$(k3s_sums_name) does not list ${bin}"; return 1; }
  got=$(sha256sum "${dir}/${bin}") && got="${got%% *}"
  if [[ "${got}" != "${want}" ]]; then
    K3S_VERIFY_ERROR="sha256 of ${dir}/${bin} is ${got}, but $(k3s_sums_name) lists ${want}"; return 1
  fi
  if [[ -n "${K3S_SHA256:-}" && "${got}" != "${K3S_SHA256,,}" ]]; then
    K3S_VERIFY_ERROR="sha256 of ${dir}/${bin} is ${got}, but K3S_SHA256 is ${K3S_SHA256}"; return 1
  fi
  for f in "${dir}"/k3s-airgap-images-"${K3S_ARCH:-amd64}".tar*; do
    [[ -f "${f}" ]] || continue
    if ! want=$(k3s_expected_sum "${sums}" "$(basename "${f}")"); then
      K3S_VERIFY_ERROR="$(basename "${f}") is not listed in $(k3s_sums_name); refusing an unverifiable image tarball"; return 1
    fi
    got=$(sha256sum "${f}") && got="${got%% *}"
    [[ "${got}" == "${want}" ]] || { K3S_VERIFY_ERROR="sha256 of ${f} is ${got}, but $(k3s_sums_name) lists ${want}"; return 1; }
  done
  return 0
}

# --- install ---
k3s_installed_hashes() {  # like install.sh get_installed_hashes, plus registries, token, images
  local f
  for f in "${K3S_BIN}" "${K3S_CONFIG}" "${K3S_REGISTRIES}" "${K3S_TOKEN_DEST}" "${K3S_REGISTRY_CA_DEST}" \
           "${K3S_UNIT}" "${K3S_UNIT_ENV}" "${K3S_IMAGES_DIR}"/*; do
    if [[ -f "${f}" ]]; then sha256sum "${f}"; fi
  done
}

K3S_CHANGED_FILES=()
_k3s_put() {  # SRC DEST MODE: install when different (a failed write is fatal), remember what changed
  gl_install_file "$1" "$2" "$3"
  if [[ "${GL_INSTALLED}" == changed ]]; then K3S_CHANGED_FILES+=("${2#"${GL_ROOT}"}"); fi
}

_k3s_remove_managed() {  # FILE: remove a file we wrote earlier and no longer want
  if [[ -f "$1" ]] && grep -q 'Managed by GL-Native Deploy' "$1"; then rm -f "$1"; K3S_CHANGED_FILES+=("${1#"${GL_ROOT}"} (removed)"); fi
}

k3s_install_files() {  # ROLE SRC_DIR
  local role="$1" src="$2" stage name link f
  gl_tmpdir stage
  mkdir -p "${K3S_ETC}" && chmod 0755 "${K3S_ETC}"
  _k3s_put "${src}/$(k3s_binary_name)" "${K3S_BIN}" 0755
  k3s_render_config "${role}" "${stage}/config.yaml" && _k3s_put "${stage}/config.yaml" "${K3S_CONFIG}" 0600
  if [[ -n "${K3S_TOKEN_FILE:-}" ]]; then _k3s_put "$(gl_bundle_path "${K3S_TOKEN_FILE}")" "${K3S_TOKEN_DEST}" 0600; fi
  if [[ -n "${REGISTRY:-}" ]]; then
    if [[ -n "${REGISTRY_CA_FILE:-}" ]]; then _k3s_put "$(gl_bundle_path "${REGISTRY_CA_FILE}")" "${K3S_REGISTRY_CA_DEST}" 0644; fi
    k3s_render_registries "${stage}/registries.yaml" && _k3s_put "${stage}/registries.yaml" "${K3S_REGISTRIES}" 0600
  else
    _k3s_remove_managed "${K3S_REGISTRIES}"
  fi
  k3s_render_unit "${role}" "${stage}/k3s.service" && _k3s_put "${stage}/k3s.service" "${K3S_UNIT}" 0644
  k3s_render_env "${stage}/k3s.service.env" && _k3s_put "${stage}/k3s.service.env" "${K3S_UNIT_ENV}" 0600
  k3s_render_killall "${stage}/killall" && _k3s_put "${stage}/killall" "${K3S_KILLALL}" 0755
  k3s_render_uninstall "${stage}/uninstall" && _k3s_put "${stage}/uninstall" "${K3S_UNINSTALL}" 0755
  for name in kubectl crictl ctr; do
    link="$(dirname "${K3S_BIN}")/${name}"
    if [[ -e "${link}" && ! -L "${link}" ]]; then info "skipping ${name} symlink: ${link} exists and is not ours"; continue; fi
    if [[ "$(readlink "${link}" 2>/dev/null)" != "${K3S_BIN}" ]]; then
      ln -sfn "${K3S_BIN}" "${link}"; K3S_CHANGED_FILES+=("${link#"${GL_ROOT}"}")
    fi
  done
  for f in "${src}"/k3s-airgap-images-"${K3S_ARCH:-amd64}".tar*; do
    if [[ -f "${f}" ]]; then _k3s_put "${f}" "${K3S_IMAGES_DIR}/$(basename "${f}")" 0644; fi
  done
}

k3s_install_main() {  # ROLE
  local role="$1" before after pid
  if [[ "${role}" == server || "${role}" == agent ]] && declare -F k3s_join_main >/dev/null; then k3s_join_main "${role}"; fi  # lib/k3s_join.sh
  k3s_validate "${role}"
  gl_require_root
  info "k3s ${K3S_VERSION} (${K3S_ARCH:-amd64}), role ${role}, API port ${API_PORT}"
  k3s_fetch || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; nothing was installed" \
    "check K3S_RELEASE_URL and K3S_VERSION, or set K3S_ARTIFACTS_DIR to a local copy of the release"
  k3s_verify "${K3S_SRC_DIR}" || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; refusing to install, nothing was changed" \
    "fetch $(k3s_binary_name) and $(k3s_sums_name) again from release ${K3S_VERSION}; check K3S_SHA256"
  gl_check_pass "k3s artifacts" "$(k3s_binary_name) ${K3S_VERSION} matches $(k3s_sums_name)$([[ -n "${K3S_SHA256:-}" ]] && echo ' and K3S_SHA256')"

  before=$(k3s_installed_hashes)
  k3s_install_files "${role}" "${K3S_SRC_DIR}"
  after=$(k3s_installed_hashes)
  if (( ${#K3S_CHANGED_FILES[@]} )); then
    GL_CHANGED=true
    gl_check_pass "k3s files" "updated: ${K3S_CHANGED_FILES[*]}"
  else
    gl_check_pass "k3s files" "binary, config.yaml, unit and env file already up to date"
  fi

  if [[ "${before}" == "${after}" ]] && k3s_service_active; then
    info "no change: nothing restarted"
    gl_check_pass "k3s service" "running, configuration unchanged: nothing restarted"
  else
    if k3s_service_active; then info "configuration changed: restarting k3s"; k3s_stop; else info "starting k3s"; fi
    GL_CHANGED=true
    k3s_start
    gl_check_pass "k3s service" "$([[ "${before}" == "${after}" ]] && echo "was not running: started" || echo "started with the new configuration")"
  fi
  k3s_wait_ready "${HEALTH_TIMEOUT:-180}" || k3s_abort "k3s api" "${K3S_VERIFY_ERROR}" \
    "read the k3s log ($(gl_has_systemd && echo 'journalctl -u k3s' || echo "${K3S_LOG#"${GL_ROOT}"}")); is port ${API_PORT} free?"
  gl_check_pass "k3s api" "https://127.0.0.1:${API_PORT}/ping answered pong (TLS verified against the server CA)"
  if k3s_token_matches_ca; then
    gl_check_pass "k3s token" "server token present (0600) and its CA hash matches the served CA"
  else
    k3s_abort "k3s token" "server token missing or its CA hash does not match server-ca.crt" \
      "inspect /var/lib/rancher/k3s/server/token; a token from another cluster cannot be reused"
  fi
  if pid=$(k3s_pid); then info "k3s running as pid ${pid} (log ${K3S_LOG})"; fi
  gl_checks_finish "$(k3s_mode)"
}

# --- phase entry shared by 02_install_k3s.sh and 02_init_control_plane.sh ---
# --role single: one server (default for TOPOLOGY=single); first-server: embedded etcd
# (cluster-init), the first server of an HA cluster; server/agent: HA join (not yet)
k3s_default_role() {
  case "${TOPOLOGY:-single}" in
    single) echo single ;;
    *) die_input "TOPOLOGY=${TOPOLOGY}: pass --role first-server|server|agent for this host (02_init_control_plane.sh runs first-server)" ;;
  esac
}

k3s_phase_main() {  # SCRIPT DEFAULT_ROLE ARGS...: parse [--json] [--role R], load settings, install
  local script="$1" role
  gl_parse_args "${script} [--json] [--role single|first-server|server|agent]" role "${@:3}"
  role="${GL_ROLE:-$2}"
  gl_load_settings
  [[ -n "${role}" ]] || role=$(k3s_default_role)
  k3s_install_main "${role}"
}

