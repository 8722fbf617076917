#!/usr/bin/env bash
# lib/loadbalancer.sh: the API VIP on a load balancer node: HAProxy + Keepalived from OS packages,
# configured from the files gldeploy rendered for this node (gldeploy/loadbalancer.py), run as
# systemd services. Sourced after lib/common.sh; entry points lb_install and lb_uninstall.
# Settings used (trusted, decided by gldeploy): API_VIP, API_VIP_PREFIX, LB_INTERFACE, LB_PACKAGES_DIR.
# shellcheck disable=SC2034  # LB_* variables are read by the phase scripts and the tests

LB_SRC_DIR="${LB_SRC_DIR:-${GL_BUNDLE_DIR}/lb}"   # haproxy.cfg, keepalived.conf (0600), gl-check-haproxy.sh
LB_MARK="Managed by GL-Native Deploy"
LB_HAPROXY_CFG="$(gl_path /etc/haproxy/haproxy.cfg)"
LB_KEEPALIVED_CONF="$(gl_path /etc/keepalived/keepalived.conf)"
LB_CHECK_SCRIPT="$(gl_path /etc/keepalived/gl-check-haproxy.sh)"
LB_SERVICES=(haproxy keepalived)

lb_packages_present() { command -v haproxy >/dev/null 2>&1 && command -v keepalived >/dev/null 2>&1; }

lb_install_packages() {
  if lb_packages_present; then info "haproxy and keepalived are installed"; return 0; fi
  local dir="${LB_PACKAGES_DIR:-}" pkgs=()
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
  GL_CHANGED=true
}

# Both configurations are checked before anything is replaced. keepalived -t needs the interface
# and the track script on this host, so it runs on real hosts only (the VIP integration test runs
# it in network namespaces); the sandbox (GL_ROOT) checks haproxy and the files.
lb_validate() {
  local f
  for f in haproxy.cfg keepalived.conf gl-check-haproxy.sh; do
    [[ -s "${LB_SRC_DIR}/${f}" ]] || fatal "${LB_SRC_DIR}/${f} is missing; the bundle for this node is incomplete (re-run the deploy)"
  done
  [[ "$(stat -c %a -- "${LB_SRC_DIR}/keepalived.conf")" == 600 ]] \
    || fatal "${LB_SRC_DIR}/keepalived.conf holds the VRRP password but is not mode 0600"
  haproxy -c -q -f "${LB_SRC_DIR}/haproxy.cfg" || fatal "haproxy -c rejects ${LB_SRC_DIR}/haproxy.cfg; nothing was changed"
}

lb_validate_keepalived() {  # after the track script is in place
  [[ -z "${GL_ROOT}" ]] || return 0
  keepalived -t -f "${LB_SRC_DIR}/keepalived.conf" \
    || fatal "keepalived -t rejects ${LB_SRC_DIR}/keepalived.conf (is LB_INTERFACE=${LB_INTERFACE} this host's interface?)"
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
  gl_install_file "${LB_SRC_DIR}/keepalived.conf" "${LB_KEEPALIVED_CONF}" 0600
  [[ "${GL_INSTALLED}" == unchanged ]] || LB_CONFIG_CHANGED=true
  if [[ "${LB_CONFIG_CHANGED}" == true ]]; then GL_CHANGED=true; info "load balancer configuration written"
  else info "load balancer configuration unchanged"; fi
}

lb_services() {  # enable and (re)start; a reload only when the configuration changed
  local svc
  if ! gl_has_systemd; then
    warn "no systemd here (or a sandbox): haproxy and keepalived are configured but were not started;" \
         "start them with this host's init system"
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
  else
    warn "no systemd here (or a sandbox): stop haproxy and keepalived with this host's init system"
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
  if [[ "${GL_CHANGED}" == true ]]; then info "load balancer removed (haproxy/keepalived packages left installed)"
  else info "load balancer: nothing to remove"; fi
}
