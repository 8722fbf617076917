#!/usr/bin/env bash
# lib/loadbalancer.sh: the API VIP on a load balancer node: HAProxy + Keepalived from OS packages,
# configured from the files gldeploy rendered for this node (gldeploy/loadbalancer.py), run as
# systemd services. Sourced after lib/common.sh; entry points lb_install and lb_uninstall.
# Settings used (trusted, decided by gldeploy): API_VIP, API_VIP_PREFIX, LB_INTERFACE, LB_PACKAGES_DIR.
# shellcheck disable=SC2034  # LB_* variables are read by the phase scripts and the tests

LB_SRC_DIR="${LB_SRC_DIR:-${GL_BUNDLE_DIR}/lb}"   # haproxy.cfg, gl-check-haproxy.sh
LB_SECRET_DIR="${LB_SECRET_DIR:-${LB_SRC_DIR}}"   # keepalived.conf (0600: the VRRP password)
LB_NODE_ADDR=""                                   # the load balancer address this host holds
LB_RUN_DIR="$(gl_path /run/gl-deploy)"            # pidfiles of haproxy/keepalived without systemd
LB_MARK="Managed by GL-Native Deploy"
LB_HAPROXY_CFG="$(gl_path /etc/haproxy/haproxy.cfg)"
LB_KEEPALIVED_CONF="$(gl_path /etc/keepalived/keepalived.conf)"
LB_CHECK_SCRIPT="$(gl_path /etc/keepalived/gl-check-haproxy.sh)"
LB_SERVICES=(haproxy keepalived)
LB_UNINSTALL="$(gl_path /usr/local/bin/gl-lb-uninstall.sh)"   # written by lb_install; k3s-uninstall.sh runs it
LB_PACKAGES_MARK="$(gl_path /etc/gl-deploy/lb-packages)"     # the packages lb_install put on the host

# --- which node: the bundle carries lb/<address>/ (and secrets/lb/<address>/keepalived.conf) for
# every load balancer node; this host takes the one whose address is on one of its interfaces ---
_lb_address_is_local() {
  local addrs
  addrs=$(ip -o -4 addr show 2>/dev/null || true)
  [[ "${addrs}" == *" $1/"* ]]
}

# lb_select_node: 0 and LB_NODE_ADDR/LB_SRC_DIR/LB_SECRET_DIR set when this host is a node; 1 when
# it holds none of the addresses; 2 when the bundle carries no load balancer files at all
lb_select_node() {
  local dir addr
  [[ -d "${GL_BUNDLE_DIR}/lb" ]] || return 2
  for dir in "${GL_BUNDLE_DIR}"/lb/*/; do
    [[ -d "${dir}" ]] || continue
    addr=$(basename "${dir}")
    if _lb_address_is_local "${addr}"; then
      LB_NODE_ADDR="${addr}" LB_SRC_DIR="${dir%/}" LB_SECRET_DIR="${GL_BUNDLE_DIR}/secrets/lb/${addr}"
      return 0
    fi
  done
  return 1
}

# lb_phase_step ROLE: phase 02's load balancer step, reported as the check "load-balancer"
lb_phase_step() {
  local role="$1" found=0 nodes
  lb_select_node || found=$?
  nodes=$(ls "${GL_BUNDLE_DIR}/lb" 2>/dev/null | paste -sd, - || true)
  if (( found == 0 )); then
    info "this host is load balancer node ${LB_NODE_ADDR} of the API VIP ${API_VIP}"
    lb_install
    gl_check_pass load-balancer "node ${LB_NODE_ADDR}: HAProxy and Keepalived for the API VIP ${API_VIP} $([[ "${LB_CONFIG_CHANGED}" == true ]] && echo 'configured' || echo 'configuration unchanged')"
  elif [[ "${role}" == lb ]]; then
    k3s_abort load-balancer "this host holds none of the load balancer addresses (${nodes:-none in the bundle}); nothing was changed" \
      "run --role lb on the hosts listed in LB_IPS (their address must be on one of this host's interfaces)"
  elif (( found == 2 )); then
    gl_check_skip load-balancer "this bundle carries no load balancer files (lb/)"
  elif [[ -z "${LB_IPS}" ]]; then
    gl_check_warn load-balancer "co-located load balancer: this host holds none of its addresses (${nodes}), so it runs no HAProxy/Keepalived" \
      "run this phase on the hosts listed in CONTROL_PLANE_IPS, or list the load balancer nodes in LB_IPS"
  else
    gl_check_skip load-balancer "dedicated load balancer nodes (LB_IPS=${LB_IPS}): none on this server"
  fi
}

lb_packages_present() { command -v haproxy >/dev/null 2>&1 && command -v keepalived >/dev/null 2>&1; }

lb_install_packages() {
  if lb_packages_present; then info "haproxy and keepalived are installed"; return 0; fi
  local dir="${LB_PACKAGES_DIR}" pkgs=()
  gl_detect_os
  if [[ -n "${dir}" ]]; then
    dir="$(gl_bundle_path "${dir}")"
    case "${OS_FAMILY}" in
      debian) pkgs=("${dir}"/*.deb) ;;
      rhel) pkgs=("${dir}"/*.rpm) ;;
    esac
    [[ -e "${pkgs[0]:-}" ]] || fatal "LB_PACKAGES_DIR=${dir} holds no ${OS_FAMILY} packages for haproxy and keepalived"
    info "installing haproxy and keepalived from ${dir} (${#pkgs[@]} packages, no network)"
  else
    pkgs=(haproxy keepalived)
    info "installing haproxy and keepalived from the OS package repositories"
  fi
  case "${OS_FAMILY}" in
    debian) DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" \
              || fatal "apt-get could not install haproxy and keepalived; see its output above" ;;
    rhel) if [[ -n "${dir}" ]]; then dnf install -y --disablerepo='*' "${pkgs[@]}"; else dnf install -y "${pkgs[@]}"; fi \
              || fatal "dnf could not install haproxy and keepalived; see its output above" ;;
    *) fatal "unsupported OS ${OS_ID}: install haproxy and keepalived with its package manager, then re-run" ;;
  esac
  lb_packages_present || fatal "haproxy/keepalived still missing after the package install"
  mkdir -p -- "${LB_PACKAGES_MARK%/*}"
  printf '%s\n' "${LB_SERVICES[@]}" >"${LB_PACKAGES_MARK}"  # the uninstall removes what we installed
  GL_CHANGED=true
}

# Both configurations are checked before anything is replaced. keepalived -t needs the interface
# and the track script on this host, so it runs on real hosts only (the VIP integration test runs
# it in network namespaces); the sandbox (GL_ROOT) checks haproxy and the files.
lb_validate() {
  local f
  for f in "${LB_SRC_DIR}/haproxy.cfg" "${LB_SECRET_DIR}/keepalived.conf" "${LB_SRC_DIR}/gl-check-haproxy.sh"; do
    [[ -s "${f}" ]] || fatal "${f} is missing; the bundle for this node is incomplete (re-run the deploy)"
  done
  [[ "$(stat -c %a -- "${LB_SECRET_DIR}/keepalived.conf")" == 600 ]] \
    || fatal "${LB_SECRET_DIR}/keepalived.conf holds the VRRP password but is not mode 0600"
  haproxy -c -q -f "${LB_SRC_DIR}/haproxy.cfg" || fatal "haproxy -c rejects ${LB_SRC_DIR}/haproxy.cfg; nothing was changed"
}

lb_validate_keepalived() {  # after the track script is in place
  [[ -z "${GL_ROOT}" ]] || return 0
  keepalived -t -f "${LB_SECRET_DIR}/keepalived.conf" \
    || fatal "keepalived -t rejects ${LB_SECRET_DIR}/keepalived.conf (is LB_INTERFACE=${LB_INTERFACE} this host's interface?)"
}

lb_install_configs() {  # sets LB_CONFIG_CHANGED=true|false
  LB_CONFIG_CHANGED=false
  lb_validate
  if [[ -f "${LB_HAPROXY_CFG}" && ! -e "${LB_HAPROXY_CFG}.gl-orig" ]] && ! grep -qF "${LB_MARK}" "${LB_HAPROXY_CFG}"; then
    cp -p -- "${LB_HAPROXY_CFG}" "${LB_HAPROXY_CFG}.gl-orig"
    info "kept the packaged ${LB_HAPROXY_CFG} as ${LB_HAPROXY_CFG}.gl-orig (uninstall restores it)"
  fi
  # the track script first: keepalived -t and keepalived itself refuse a config whose script is missing
  gl_install_file "${LB_SRC_DIR}/gl-check-haproxy.sh" "${LB_CHECK_SCRIPT}" 0755
  [[ "${GL_INSTALLED}" == unchanged ]] || LB_CONFIG_CHANGED=true
  lb_validate_keepalived
  gl_install_file "${LB_SRC_DIR}/haproxy.cfg" "${LB_HAPROXY_CFG}" 0644
  [[ "${GL_INSTALLED}" == unchanged ]] || LB_CONFIG_CHANGED=true
  gl_install_file "${LB_SECRET_DIR}/keepalived.conf" "${LB_KEEPALIVED_CONF}" 0600
  [[ "${GL_INSTALLED}" == unchanged ]] || LB_CONFIG_CHANGED=true
  if [[ "${LB_CONFIG_CHANGED}" == true ]]; then GL_CHANGED=true; info "load balancer configuration written"
  else info "load balancer configuration unchanged"; fi
}

# --- without systemd: the daemons run from pidfiles under /run/gl-deploy, as lib/k3s.sh runs k3s.
# In a sandbox (GL_ROOT) only inside a named network namespace (a throwaway test network). ---
lb_network_allowed() {
  local self ns
  [[ -z "${GL_ROOT}" ]] && return 0
  self=$(stat -L -c %i /proc/self/ns/net 2>/dev/null) || return 1
  for ns in /run/netns/*; do
    [[ -e "${ns}" && "$(stat -L -c %i "${ns}" 2>/dev/null)" == "${self}" ]] && return 0
  done
  return 1
}

lb_pid() {  # NAME: the pid of our running daemon NAME (from its pidfile), else 1
  local file="${LB_RUN_DIR}/$1.pid" pid
  [[ -r "${file}" ]] || return 1
  pid=$(<"${file}")
  [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null || return 1
  printf '%s\n' "${pid}"
}

lb_daemons() {  # start, or reload on a configuration change, haproxy and keepalived from pidfiles
  local pid
  mkdir -p -- "${LB_RUN_DIR}"
  if pid=$(lb_pid haproxy); then
    if [[ "${LB_CONFIG_CHANGED}" == true ]]; then
      haproxy -D -p "${LB_RUN_DIR}/haproxy.pid" -f "${LB_HAPROXY_CFG}" -sf "${pid}" || fatal "haproxy did not take the new configuration"
      info "haproxy reloaded"
    else info "haproxy running (pid ${pid}), nothing to do"; fi
  else
    haproxy -D -p "${LB_RUN_DIR}/haproxy.pid" -f "${LB_HAPROXY_CFG}" || fatal "haproxy did not start (haproxy -c -f ${LB_HAPROXY_CFG})"
    GL_CHANGED=true; info "haproxy started (no systemd: pidfile ${LB_RUN_DIR}/haproxy.pid)"
  fi
  if pid=$(lb_pid keepalived); then
    if [[ "${LB_CONFIG_CHANGED}" == true ]]; then kill -HUP "${pid}"; info "keepalived reloaded"
    else info "keepalived running (pid ${pid}), nothing to do"; fi
  else
    keepalived -P -f "${LB_KEEPALIVED_CONF}" -p "${LB_RUN_DIR}/keepalived.pid" -r "${LB_RUN_DIR}/vrrp.pid" \
      || fatal "keepalived did not start; check ${LB_KEEPALIVED_CONF} (keepalived -t -f ...)"
    GL_CHANGED=true; info "keepalived started (no systemd: pidfile ${LB_RUN_DIR}/keepalived.pid)"
  fi
}

lb_stop_daemons() {
  local name pid
  for name in keepalived haproxy; do
    if pid=$(lb_pid "${name}"); then kill "${pid}"; GL_CHANGED=true; info "${name} (pid ${pid}) stopped"; fi
    rm -f -- "${LB_RUN_DIR}/${name}.pid"
  done
}

lb_services() {  # enable and (re)start; a reload only when the configuration changed
  local svc
  if ! gl_has_systemd; then
    if lb_network_allowed; then lb_daemons; return 0; fi
    warn "a sandbox outside a network namespace: haproxy and keepalived are configured but were not started"
    return 0
  fi
  for svc in "${LB_SERVICES[@]}"; do
    if ! systemctl is-enabled --quiet "${svc}"; then
      systemctl enable --quiet "${svc}" || fatal "systemctl enable ${svc} failed"
      GL_CHANGED=true
    fi
    if ! systemctl is-active --quiet "${svc}"; then
      systemctl start "${svc}" || fatal "${svc} did not start; see journalctl -u ${svc}"
      GL_CHANGED=true; info "${svc} started"
    elif [[ "${LB_CONFIG_CHANGED}" == true ]]; then
      systemctl reload-or-restart "${svc}" || fatal "${svc} did not take the new configuration; see journalctl -u ${svc}"
      info "${svc} reloaded"
    else
      info "${svc} running, nothing to do"
    fi
  done
}

lb_install() {
  lb_install_packages
  lb_install_configs
  lb_services
  lb_install_uninstall
  [[ "${GL_CHANGED}" == true ]] || info "load balancer: nothing changed"
}

# --- uninstall: services stopped and disabled, the VIP released, our files removed (the packaged
# haproxy.cfg restored); the packages stay installed ---
lb_uninstall() {
  local svc f addrs=""
  if gl_has_systemd; then
    for svc in "${LB_SERVICES[@]}"; do
      if systemctl is-active --quiet "${svc}" || systemctl is-enabled --quiet "${svc}" 2>/dev/null; then
        systemctl disable --now --quiet "${svc}" || fatal "could not stop ${svc}"
        GL_CHANGED=true; info "${svc} stopped and disabled"
      fi
    done
  elif lb_network_allowed; then
    lb_stop_daemons
  else
    warn "a sandbox outside a network namespace: no haproxy/keepalived of ours to stop"
  fi
  if [[ -z "${GL_ROOT}" ]]; then addrs=$(ip -o -4 addr show dev "${LB_INTERFACE}" 2>/dev/null || true); fi
  if [[ "${addrs}" == *" ${API_VIP}/"* ]]; then
    ip addr del "${API_VIP}/${API_VIP_PREFIX}" dev "${LB_INTERFACE}" || fatal "could not remove the VIP ${API_VIP} from ${LB_INTERFACE}"
    GL_CHANGED=true; info "VIP ${API_VIP} removed from ${LB_INTERFACE}"
  fi
  for f in "${LB_KEEPALIVED_CONF}" "${LB_CHECK_SCRIPT}"; do
    if [[ -e "${f}" ]]; then rm -f -- "${f}"; GL_CHANGED=true; info "removed ${f}"; fi
  done
  if [[ -f "${LB_HAPROXY_CFG}" ]] && grep -qF "${LB_MARK}" "${LB_HAPROXY_CFG}"; then
    if [[ -e "${LB_HAPROXY_CFG}.gl-orig" ]]; then
      mv -f -- "${LB_HAPROXY_CFG}.gl-orig" "${LB_HAPROXY_CFG}"; info "restored the packaged ${LB_HAPROXY_CFG}"
    else
      rm -f -- "${LB_HAPROXY_CFG}"; info "removed ${LB_HAPROXY_CFG}"
    fi
    GL_CHANGED=true
  fi
  if [[ -e "${LB_UNINSTALL}" ]]; then rm -f -- "${LB_UNINSTALL}"; GL_CHANGED=true; fi
  if [[ "${GL_CHANGED}" == true ]]; then info "load balancer removed"
  else info "load balancer: nothing to remove"; fi
}

# --- gl-lb-uninstall.sh: lb_uninstall as a standalone script (the bundle may be gone by the time it
# runs), with this node's values baked in; k3s-uninstall.sh runs it on a co-located load balancer,
# an operator runs it on a dedicated one. Packages lb_install installed (LB_PACKAGES_MARK) are purged. ---
lb_render_uninstall() {  # OUT
  {
    printf '#!/usr/bin/env bash\n'
    printf '# gl-lb-uninstall.sh (GL-Native Deploy): stop and disable HAProxy and Keepalived, release the\n'
    printf '# API VIP, remove their configuration (the packaged haproxy.cfg is restored) and remove the\n'
    printf '# packages only when GL-Native Deploy installed them. Idempotent.\n'
    printf 'set -uo pipefail\nGL_PHASE=gl-lb-uninstall\nGL_CHANGED=false\n'
    declare -p GL_ROOT API_VIP API_VIP_PREFIX LB_INTERFACE LB_MARK LB_SERVICES LB_RUN_DIR LB_HAPROXY_CFG \
      LB_KEEPALIVED_CONF LB_CHECK_SCRIPT LB_PACKAGES_MARK LB_UNINSTALL
    declare -f _gl_log info warn fatal gl_has_systemd lb_network_allowed lb_pid lb_stop_daemons lb_uninstall
    cat <<'BODY'
lb_remove_packages() {
  local pkgs=()
  [[ -f "${LB_PACKAGES_MARK}" ]] || return 0
  mapfile -t pkgs <"${LB_PACKAGES_MARK}"
  if [[ -z "${GL_ROOT}" && ${#pkgs[@]} -gt 0 ]]; then
    if command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get purge -y "${pkgs[@]}" || fatal "apt-get purge ${pkgs[*]} failed"
    elif command -v dnf >/dev/null 2>&1; then
      dnf remove -y "${pkgs[@]}" || fatal "dnf remove ${pkgs[*]} failed"
    fi
    info "removed the packages GL-Native Deploy installed: ${pkgs[*]}"
  fi
  rm -f -- "${LB_PACKAGES_MARK}"
}
main() {
  if [[ -z "${GL_ROOT}" && "$(id -u)" -ne 0 ]]; then fatal "run as root"; fi
  lb_uninstall
  lb_remove_packages
}
main "$@"
BODY
  } >"$1"
}

lb_install_uninstall() {
  local tmp
  gl_tmpdir tmp  # removed at exit whatever happens (common.sh)
  lb_render_uninstall "${tmp}/gl-lb-uninstall.sh"
  gl_install_file "${tmp}/gl-lb-uninstall.sh" "${LB_UNINSTALL}" 0755
  if [[ "${GL_INSTALLED}" != unchanged ]]; then
    GL_CHANGED=true; info "wrote ${LB_UNINSTALL} (removes this load balancer; k3s' uninstall runs it)"
  fi
}
