#!/usr/bin/env bash
# lib/k3s_install.sh: the k3s install function shared by 02_install_k3s.sh and
# 02_init_control_plane.sh. Sourced after lib/common.sh, lib/checks.sh, lib/k3s.sh, lib/k3s_files.sh.
#
# Like k3s' install.sh: verify the binary against the release's sha256sum-<arch>.txt (and
# K3S_SHA256) BEFORE touching the host; configure k3s through /etc/rancher/k3s/config.yaml;
# hash binary + config + unit + env before and after and restart only when something changed.
# shellcheck disable=SC2034  # K3S_* variables are shared with lib/k3s.sh and the phase scripts

# what gldeploy renders for these phases into the bundle (gldeploy/bundle.py REGISTRIES_YAML, VERSIONS_JSON)
K3S_BUNDLE_REGISTRIES="secrets/registries.yaml"  # the same file for every node (gldeploy/site/registries.py)
K3S_BUNDLE_VERSIONS="versions.json"              # the pinned versions (gldeploy/day2/versions.py)
GL_DEPLOY_ETC=$(gl_path /etc/gl-deploy)          # versions.json and the append-only CHANGELOG

# --- input validation: exit 2, nothing touched ---
# The settings come complete and validated from settings.env (or the baked block): nothing here
# re-checks or re-defaults them. What is checked is the argument (--role) and the HOST: the files
# the settings point at, as they are on this host.
_k3s_secret_file_ok() {  # KEY PATH: readable, non-empty, not readable by group/others
  local key="$1" file="$2" mode
  [[ -f "${file}" && -r "${file}" ]] || die_input "${key}=${file}: file not found or unreadable on this host; create it (mode 0600) or clear ${key}"
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
  if [[ -n "${K3S_ARTIFACTS_DIR}" ]]; then
    dir=$(gl_bundle_path "${K3S_ARTIFACTS_DIR}")
    [[ -d "${dir}" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: ${dir} is not a directory on this host; point it at a k3s release copy or clear it to download"
    [[ -f "${dir}/$(k3s_binary_name)" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: no $(k3s_binary_name) in ${dir}; copy the release asset there"
    [[ -f "${dir}/$(k3s_sums_name)" ]] || die_input "K3S_ARTIFACTS_DIR=${K3S_ARTIFACTS_DIR}: no $(k3s_sums_name) in ${dir}; copy it from the same release (it is how the binary is verified)"
  fi
  if [[ -n "${K3S_TOKEN_FILE}" ]]; then _k3s_secret_file_ok K3S_TOKEN_FILE "$(gl_bundle_path "${K3S_TOKEN_FILE}")"; fi
  if [[ -n "${REGISTRY_PASSWORD_FILE}" ]]; then
    _k3s_secret_file_ok REGISTRY_PASSWORD_FILE "$(gl_bundle_path "${REGISTRY_PASSWORD_FILE}")"
  fi
  if [[ -n "${REGISTRY_CA_FILE}" ]]; then
    [[ -r "$(gl_bundle_path "${REGISTRY_CA_FILE}")" ]] || die_input "REGISTRY_CA_FILE=${REGISTRY_CA_FILE}: file not found on this host; copy the registry's CA certificate (PEM) there"
  fi
  if [[ -n "${REGISTRY}" ]]; then
    [[ -s "$(gl_bundle_path "${K3S_BUNDLE_REGISTRIES}")" ]] || die_input "REGISTRY=${REGISTRY} but the bundle has no ${K3S_BUNDLE_REGISTRIES} (gldeploy renders it with the mirrors, auth and CA for every node); rebuild the bundle with gldeploy (invoke deploy or scripts.render), or clear REGISTRY"
    _k3s_secret_file_ok "REGISTRY (the bundle's registries.yaml)" "$(gl_bundle_path "${K3S_BUNDLE_REGISTRIES}")"
  fi
  return 0
}

# --- artifacts: local directory or download, then verify (before anything is touched) ---
K3S_SRC_DIR=""
k3s_fetch() {  # sets K3S_SRC_DIR to the directory holding the release assets
  local dir url version asset
  if [[ -n "${K3S_ARTIFACTS_DIR}" ]]; then K3S_SRC_DIR=$(gl_bundle_path "${K3S_ARTIFACTS_DIR}"); return 0; fi
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
  if [[ -n "${K3S_SHA256}" && "${got}" != "${K3S_SHA256,,}" ]]; then
    K3S_VERIFY_ERROR="sha256 of ${dir}/${bin} is ${got}, but K3S_SHA256 is ${K3S_SHA256}"; return 1
  fi
  for f in "${dir}"/k3s-airgap-images-"${K3S_ARCH}".tar*; do
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
K3S_CHANGED_FILES=()
_k3s_put() {  # SRC DEST MODE: install when different (a failed write is fatal), remember what changed
  gl_install_file "$1" "$2" "$3"
  if [[ "${GL_INSTALLED}" == changed ]]; then K3S_CHANGED_FILES+=("${2#"${GL_ROOT}"}"); fi
}

_k3s_remove_managed() {  # FILE: remove a file we wrote earlier and no longer want
  if [[ -f "$1" ]] && grep -qE 'Managed by GL-Native Deploy|generated by gldeploy' "$1"; then rm -f "$1"; K3S_CHANGED_FILES+=("${1#"${GL_ROOT}"} (removed)"); fi
}

# _k3s_dir DIR MODE [fix]: create DIR with k3s' own mode whatever the umask; "fix" also corrects the
# mode of an existing DIR (one an older install made with the wrong mode)
_k3s_dir() {
  if [[ ! -d "$1" ]]; then
    mkdir -p -- "$(dirname -- "$1")" && mkdir -m "$2" -- "$1" || fatal "could not create ${1} (disk full or read-only file system?)"
    K3S_CHANGED_FILES+=("${1#"${GL_ROOT}"}/")
  elif [[ "${3:-}" == fix && "$(stat -c %a -- "$1")" != "${2#0}" ]]; then
    chmod "$2" -- "$1" || fatal "could not set mode ${2} on ${1}"
    K3S_CHANGED_FILES+=("${1#"${GL_ROOT}"}/ (mode ${2})")
  fi
}

# The directories k3s itself creates, with k3s' modes (k3s-io/k3s): the data dir 0755
# (cmd/k3s/main.go: MkdirAll(<data-dir>/data, 0755)), <data-dir>/agent 0700 (pkg/agent/run.go:
# MkdirAll(agentDir, 0700)), /etc/rancher/k3s 0755 (the kubeconfig directory); agent/images as the
# k3s air-gap docs make it (mkdir -p, 0755).
k3s_make_dirs() {
  _k3s_dir "$(dirname "${K3S_ETC}")" 0755
  _k3s_dir "${K3S_ETC}" 0755 fix
  _k3s_dir "$(dirname "${K3S_DATA_DIR}")" 0755
  _k3s_dir "${K3S_DATA_DIR}" 0755
  _k3s_dir "${K3S_DATA_DIR}/agent" 0700 fix
}

# --- a unit under the other service name (k3s / k3s-agent): left by an earlier version of this tool,
# which installed every role as k3s.service, or by a role change. This tool's own unit is stopped,
# disabled and removed, and the run says so. Refused before anything is touched: another installer's
# unit (its own uninstall script must remove it) and this tool's server on a host that is to be an
# agent (a cluster server would leave etcd unannounced).
K3S_RETIRE_OTHER=0
k3s_other_service_check() {
  local unit="${K3S_OTHER_UNIT}" name="${K3S_OTHER_SERVICE}.service" uninstall="${K3S_OTHER_UNINSTALL##*/}"
  K3S_RETIRE_OTHER=0
  [[ -e "${unit}" ]] || return 0
  if ! grep -qF 'GL-Native Deploy' "${unit}"; then
    k3s_abort "k3s service name" "${name} was not installed by GL-Native Deploy (${unit#"${GL_ROOT}"}): this host runs k3s from another installer, and this ${K3S_EXEC}'s service is ${K3S_SERVICE}.service; nothing was changed" \
      "remove that install with its own ${uninstall} (k3s' install.sh puts it in /usr/local/bin), then run this phase again"
  fi
  if [[ "${K3S_EXEC}" == agent ]] && grep -qxF 'ExecStart=/usr/local/bin/k3s server' "${unit}"; then
    k3s_abort "k3s service name" "${name} runs a k3s server on this host; it is not turned into an agent here (a cluster server would leave etcd unannounced); nothing was changed" \
      "take the server out of the cluster first (on another server: k3s kubectl delete node $(gl_hostname)), run ${uninstall} here, then join this host again"
  fi
  K3S_RETIRE_OTHER=1
}

k3s_retire_other_service() {  # after k3s_other_service_check: stop, disable and remove this tool's other unit
  local f
  (( K3S_RETIRE_OTHER )) || return 0
  warn "${K3S_OTHER_SERVICE}.service of an earlier install by this tool found: this ${K3S_EXEC}'s service is ${K3S_SERVICE}.service, as k3s' install.sh names it; stopping, disabling and removing ${K3S_OTHER_SERVICE}.service"
  if gl_has_systemd; then
    systemctl disable --now "${K3S_OTHER_SERVICE}" >/dev/null 2>&1 \
      || warn "systemctl disable --now ${K3S_OTHER_SERVICE} failed; check it with: systemctl status ${K3S_OTHER_SERVICE}"
    systemctl reset-failed "${K3S_OTHER_SERVICE}" >/dev/null 2>&1 || true
  fi
  for f in "${K3S_OTHER_UNIT}" "${K3S_OTHER_UNIT}.env"; do
    if [[ -e "${f}" ]]; then rm -f -- "${f}"; K3S_CHANGED_FILES+=("${f#"${GL_ROOT}"} (removed)"); fi
  done
  if grep -qsF '(GL-Native Deploy)' "${K3S_OTHER_UNINSTALL}"; then
    rm -f -- "${K3S_OTHER_UNINSTALL}"; K3S_CHANGED_FILES+=("${K3S_OTHER_UNINSTALL#"${GL_ROOT}"} (removed)")
  fi
  if gl_has_systemd; then systemctl daemon-reload; fi
  K3S_RETIRE_OTHER=0
}

k3s_install_files() {  # ROLE SRC_DIR (the service named by k3s_use_role ROLE)
  local role="$1" src="$2" stage name link f
  gl_tmpdir stage
  k3s_retire_other_service
  k3s_make_dirs
  _k3s_put "${src}/$(k3s_binary_name)" "${K3S_BIN}" 0755
  k3s_render_config "${role}" "${stage}/config.yaml" && _k3s_put "${stage}/config.yaml" "${K3S_CONFIG}" 0600
  if [[ -n "${K3S_TOKEN_FILE}" ]]; then _k3s_put "$(gl_bundle_path "${K3S_TOKEN_FILE}")" "${K3S_TOKEN_DEST}" 0600; fi
  if [[ -n "${REGISTRY}" ]]; then
    if [[ -n "${REGISTRY_CA_FILE}" ]]; then _k3s_put "$(gl_bundle_path "${REGISTRY_CA_FILE}")" "${K3S_REGISTRY_CA_DEST}" 0644; fi
    _k3s_put "$(gl_bundle_path "${K3S_BUNDLE_REGISTRIES}")" "${K3S_REGISTRIES}" 0600
  else
    _k3s_remove_managed "${K3S_REGISTRIES}"
  fi
  k3s_render_unit "${stage}/unit" && _k3s_put "${stage}/unit" "${K3S_UNIT}" 0644
  k3s_render_env "${stage}/unit.env" && _k3s_put "${stage}/unit.env" "${K3S_UNIT_ENV}" 0600
  k3s_render_state_helper "${stage}/state" && _k3s_put "${stage}/state" "${K3S_STATE_HELPER}" 0755
  k3s_render_killall "${stage}/killall" && _k3s_put "${stage}/killall" "${K3S_KILLALL}" 0755
  k3s_render_uninstall "${stage}/uninstall" && _k3s_put "${stage}/uninstall" "${K3S_UNINSTALL}" 0755
  for name in kubectl crictl ctr; do
    link="$(dirname "${K3S_BIN}")/${name}"
    if [[ -e "${link}" && ! -L "${link}" ]]; then info "skipping ${name} symlink: ${link} exists and is not ours"; continue; fi
    if [[ "$(readlink "${link}" 2>/dev/null)" != "${K3S_BIN}" ]]; then
      ln -sfn "${K3S_BIN}" "${link}"; K3S_CHANGED_FILES+=("${link#"${GL_ROOT}"}")
    fi
  done
  for f in "${src}"/k3s-airgap-images-"${K3S_ARCH}".tar*; do
    if [[ -f "${f}" ]]; then
      _k3s_dir "${K3S_IMAGES_DIR}" 0755
      _k3s_put "${f}" "${K3S_IMAGES_DIR}/$(basename "${f}")" 0644
    fi
  done
}

# day2_changelog TEXT: append one line to the host's append-only change log (/etc/gl-deploy/CHANGELOG;
# upgrade.sh writes its upgrades and rollbacks there too)
day2_changelog() {
  mkdir -p -- "${GL_DEPLOY_ETC}"
  printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(gl_hostname)" "$1" >>"${GL_DEPLOY_ETC}/CHANGELOG"
}

# k3s_install_versions: the bundle's versions.json (what this configuration pins) as
# /etc/gl-deploy/versions.json (0644), with a CHANGELOG line when it changes; unchanged: nothing written
k3s_install_versions() {
  local src summary
  src=$(gl_bundle_path "${K3S_BUNDLE_VERSIONS}")
  if [[ ! -f "${src}" ]]; then
    gl_check_skip versions "the bundle has no versions.json (not built by gldeploy): /etc/gl-deploy/versions.json left as it is"
    return 0
  fi
  gl_install_file "${src}" "${GL_DEPLOY_ETC}/versions.json" 0644
  if [[ "${GL_INSTALLED}" == unchanged ]]; then
    gl_check_pass versions "/etc/gl-deploy/versions.json already up to date"
    return 0
  fi
  GL_CHANGED=true
  summary=$(tr -d ' \n' <"${src}" | sed -n 's/.*"backend_version":"\([^"]*\)".*"k3s":"\([^"]*\)".*/k3s \2, backend \1/p')
  day2_changelog "versions.json updated: ${summary:-see /etc/gl-deploy/versions.json}"
  gl_check_pass versions "/etc/gl-deploy/versions.json updated (${summary:-pinned versions}); CHANGELOG line added"
}

# k3s_restart_reason: why the running k3s must be restarted; empty when it runs with the installed
# files. Decided from what the running k3s recorded at its start (k3s-gl-state.sh --record from the
# unit's ExecStartPre or the pidfile start), not from what this run changed: a run interrupted after
# writing config.yaml and before the restart is finished by the next run.
k3s_restart_reason() {
  local current recorded=""
  current=$("${K3S_STATE_HELPER}") || fatal "${K3S_STATE_HELPER} failed; re-run this phase"
  [[ ! -r "${K3S_STARTED}" ]] || recorded=$(<"${K3S_STARTED}")
  if [[ "${current}" == "${recorded}" ]]; then return 0; fi
  if (( ${#K3S_CHANGED_FILES[@]} )); then echo "restarted with the new configuration"
  elif [[ -z "${recorded}" ]]; then echo "restarted: nothing records what the running k3s was started with"
  else echo "restarted: the running k3s was started with other files than those installed (an earlier run was interrupted?)"
  fi
}

k3s_install_main() {  # ROLE
  local role="$1" reason pid
  if [[ "${role}" == server || "${role}" == agent ]] && declare -F k3s_join_main >/dev/null; then k3s_join_main "${role}"; fi  # lib/k3s_join.sh
  k3s_validate "${role}"
  k3s_use_role "${role}"
  gl_require_root
  k3s_other_service_check
  if ! command -v curl >/dev/null 2>&1; then
    k3s_abort "k3s prerequisites" "curl is not installed: phase 02 needs it to download k3s and to wait for the k3s API (/ping); nothing was changed" \
      "install curl (apt-get install curl, or dnf install curl), then re-run"
  fi
  info "k3s ${K3S_VERSION} (${K3S_ARCH}), role ${role}, API port ${API_PORT}"
  k3s_fetch || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; nothing was installed" \
    "check K3S_RELEASE_URL and K3S_VERSION, or set K3S_ARTIFACTS_DIR to a local copy of the release"
  k3s_verify "${K3S_SRC_DIR}" || k3s_abort "k3s artifacts" "${K3S_VERIFY_ERROR}; refusing to install, nothing was changed" \
    "fetch $(k3s_binary_name) and $(k3s_sums_name) again from release ${K3S_VERSION}; check K3S_SHA256"
  gl_check_pass "k3s artifacts" "$(k3s_binary_name) ${K3S_VERSION} matches $(k3s_sums_name)$([[ -n "${K3S_SHA256}" ]] && echo ' and K3S_SHA256')"

  if k3s_selinux_enforcing; then K3S_SELINUX=true; info "SELinux is enforcing: config.yaml sets selinux: true"; fi
  k3s_install_files "${role}" "${K3S_SRC_DIR}"
  if (( ${#K3S_CHANGED_FILES[@]} )); then
    GL_CHANGED=true
    gl_check_pass "k3s files" "updated: ${K3S_CHANGED_FILES[*]}"
  else
    gl_check_pass "k3s files" "binary, config.yaml, unit and env file already up to date"
  fi

  if k3s_service_active; then
    reason=$(k3s_restart_reason)
    if [[ -z "${reason}" ]]; then
      info "no change: nothing restarted"
      gl_check_pass "k3s service" "running, configuration unchanged: nothing restarted"
    else
      info "k3s ${reason#restarted}: restarting ${K3S_SERVICE}"
      k3s_stop
      GL_CHANGED=true
      k3s_start
      gl_check_pass "k3s service" "${reason}"
    fi
  else
    info "starting ${K3S_SERVICE}"
    GL_CHANGED=true
    k3s_start
    gl_check_pass "k3s service" "was not running: started"
  fi
  k3s_wait_ready "${HEALTH_TIMEOUT}" || k3s_abort "k3s api" "${K3S_VERIFY_ERROR}" \
    "read the k3s log ($(k3s_log_hint)); is port ${API_PORT} free?"
  gl_check_pass "k3s api" "https://127.0.0.1:${API_PORT}/ping answered pong (TLS verified against the server CA)"
  if k3s_token_matches_ca; then
    gl_check_pass "k3s token" "server token present (0600) and its CA hash matches the served CA"
  else
    k3s_abort "k3s token" "server token missing or its CA hash does not match server-ca.crt" \
      "inspect /var/lib/rancher/k3s/server/token; a token from another cluster cannot be reused"
  fi
  if pid=$(k3s_pid); then info "k3s running as pid ${pid} (log ${K3S_LOG})"; fi
  k3s_install_versions
  gl_checks_finish "$(k3s_mode)"
}

# --- phase entry shared by 02_install_k3s.sh and 02_init_control_plane.sh ---
# The role always comes from the caller as --role (the plan passes it for every host): single (one
# server), first-server (embedded etcd, cluster-init), server/agent (HA join, not yet). No default.
k3s_phase_main() {  # SCRIPT ARGS...: parse [--json] --role R, load settings, install
  local script="$1" usage
  usage="${script} [--json] --role single|first-server|server|agent"
  gl_parse_args "${usage}" role "${@:2}"
  gl_load_settings
  [[ -n "${GL_ROLE}" ]] || die_input "--role is required (the plan passes it for each host); usage: ${usage}"
  k3s_install_main "${GL_ROLE}"
}
