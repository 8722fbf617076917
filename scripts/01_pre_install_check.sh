#!/usr/bin/env bash
# 01_pre_install_check.sh: read-only preflight of this host before k3s is installed.
#
# Usage: 01_pre_install_check.sh --role single|first-server|server|agent|lb [--json]
#   --role   what this host will be (required: the caller names it, nothing is guessed here).
#   --json   print one JSON result object on stdout (human table always goes to stderr).
# The settings come from gldeploy (settings.env or the baked block), decided and checked there;
# this phase checks the host only.
#
# Checks (severity in brackets; every finding carries its fix):
#   cpu, memory, disk [fail]   MIN_CPU / MIN_MEMORY_MB / MIN_DISK_GB when non-zero, else the role
#                              default: single 2C/4096M/50G, (first-)server 4C/8192M/100G,
#                              agent 8C/16384M/200G, lb 1C/512M/2G. Disk = free space under
#                              /var/lib/rancher (or its nearest existing parent). Memory allows 5% for
#                              kernel-reserved RAM.
#   port-<N> [fail]            API_PORT and 10250 free (agents: 10250), servers also 2379-2380; a
#                              load balancer node (lb): HAProxy's frontend port LB_FRONTEND_PORT only
#   lb-packages [warn]         (lb) haproxy and keepalived installed, else 02 installs them from the OS
#                              repositories; cgroups, the kernel modules and existing-k3s are k3s' own
#                              needs and are not checked on an lb node
#   clock-sync                 [fail] known unsynchronised, [warn] cannot be determined
#   swap [warn], cgroups [fail], kernel-module-overlay / -br_netfilter [fail],
#   commands [fail: a tool a later phase of this role runs is missing],
#   temp-dir [fail: TMPDIR not a writable directory], bundle-dir [fail: unreadable, or writable by others],
#   default-route [fail], dns [fail; loopback-only resolver: warn],
#   selinux [fail: enforcing on RHEL without k3s-selinux], firewall [warn: ports to open],
#   existing-k3s [warn: 02 keeps or upgrades it],
#   backend-image [fail; roles single and first-server, the hosts that deploy the backend]: the
#                              image BACKEND_IMAGE_REF can be had, from an archive the bundle carries
#                              (artifacts/images, listed in SHA256SUMS) or from its registry (HEAD of
#                              the manifest answers 200 with REGISTRY_USER / REGISTRY_CA_FILE);
#                              else the deploy would fail only after its rollout wait (lib/image_check.sh)
#   timezone, ntp, ca-distributed, certificates [fail]  with a bastion (BASTION_IP): this host is a
#                              member of the air-gapped site (lib/site_checks.sh site_check_preflight)
#
# Exit status (worst finding): 0 all passed, 3 warnings only, 1 any check failed,
# 2 bad arguments or settings. Nothing on the host is changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/host_checks.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/image_check.sh"  # gl:include
source "$(dirname "${BASH_SOURCE[0]}")/lib/site_checks.sh"  # gl:include

ROLE=""
PF_K3S_MODE=none

is_server() { [[ "${ROLE}" != agent && "${ROLE}" != lb ]]; }
is_lb() { [[ "${ROLE}" == lb ]]; }
is_etcd_server() { [[ "${ROLE}" == first-server || "${ROLE}" == server ]]; }

# --- resources ---
check_resources() {
  local def_cpu def_mem def_disk need have
  case "${ROLE}" in
    single) def_cpu=2 def_mem=4096 def_disk=50 ;;
    agent) def_cpu=8 def_mem=16384 def_disk=200 ;;
    lb) def_cpu=1 def_mem=512 def_disk=2 ;;  # HAProxy + Keepalived only
    *) def_cpu=4 def_mem=8192 def_disk=100 ;;
  esac

  need=$(( MIN_CPU > 0 ? MIN_CPU : def_cpu ))
  have=$(nproc)
  if ((have >= need)); then gl_check_pass cpu "${have} CPUs (need ${need} for role ${ROLE})"
  else gl_check_fail cpu "${have} CPUs, need at least ${need} for role ${ROLE}" \
    "give the host ${need} or more CPUs, or set MIN_CPU=${have} for a small lab"; fi

  need=$(( MIN_MEMORY_MB > 0 ? MIN_MEMORY_MB : def_mem ))
  have=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  if ((have * 100 >= need * 95)); then gl_check_pass memory "${have} MiB RAM (need ${need} MiB for role ${ROLE})"
  else gl_check_fail memory "${have} MiB RAM, need at least ${need} MiB for role ${ROLE}" \
    "give the host ${need} MiB or more RAM, or set MIN_MEMORY_MB=${have} for a small lab"; fi

  need=$(( MIN_DISK_GB > 0 ? MIN_DISK_GB : def_disk ))
  local dir
  dir="$(gl_path /var/lib/rancher)"
  while [[ ! -d "${dir}" && "${dir}" != / && -n "${dir}" ]]; do dir="$(dirname "${dir}")"; done
  have=$(df -Pk -- "${dir:-/}" | awk 'NR == 2 {print int($4 / 1048576)}')
  if ((have >= need)); then gl_check_pass disk "${have} GiB free under ${dir} (need ${need} GiB)"
  else gl_check_fail disk "${have} GiB free under ${dir}, need at least ${need} GiB for role ${ROLE}" \
    "free space or mount a larger volume at /var/lib/rancher, or set MIN_DISK_GB=${have} for a small lab"; fi
}

# --- ports: "port pid owner" lines of listening TCP sockets (pid 0 when unknown) ---
listening_ports() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH 2>/dev/null | awk '{
      n = split($4, a, ":"); owner = "unknown process"; pid = 0
      if (match($0, /users:\(\("[^"]+"/)) owner = substr($0, RSTART + 9, RLENGTH - 10)
      if (match($0, /pid=[0-9]+/)) pid = substr($0, RSTART + 4, RLENGTH - 4)
      print a[n], pid, owner }'
  else  # no iproute2: read the kernel tables (state 0A = LISTEN)
    local hex
    awk 'FNR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null |
      while read -r hex; do printf '%d 0 unknown process\n' "$((16#${hex}))"; done
  fi
}

# is process PID running the installed k3s binary? (the stand-in runs under python3)
held_by_k3s() {
  local pid="$1" bin="$2"
  [[ "${pid}" != 0 && -r "/proc/${pid}/cmdline" ]] || { echo no; return 0; }
  if tr '\0' '\n' <"/proc/${pid}/cmdline" | grep -qxF -- "${bin}"; then echo yes; else echo no; fi
}

check_ports() {
  local ports=(10250) listening port pid owner k3s_bin
  is_server && ports=("${API_PORT}" "${ports[@]}")
  is_etcd_server && ports+=(2379 2380)
  is_lb && ports=("${LB_FRONTEND_PORT}")  # HAProxy's frontend (derived by gldeploy from LB_PORT)
  listening=$(listening_ports)
  k3s_bin=$(existing_k3s_bin)
  for port in "${ports[@]}"; do
    read -r pid owner < <(awk -v p="${port}" '$1 == p { $1 = ""; sub(/^ /, ""); print; exit }' <<<"${listening}") || true
    if [[ -z "${owner:-}" ]]; then
      gl_check_pass "port-${port}" "TCP port ${port} is free"
    elif is_lb && [[ "${owner}" == haproxy* ]]; then
      gl_check_pass "port-${port}" "TCP port ${port} is held by haproxy (02 reconfigures it as the API VIP frontend)"
    elif [[ -n "${k3s_bin}" && ( "${owner}" == k3s* || "$(held_by_k3s "${pid}" "${k3s_bin}")" == yes ) ]]; then
      gl_check_pass "port-${port}" "TCP port ${port} is held by the installed k3s (${owner})"
    else
      gl_check_fail "port-${port}" "TCP port ${port} is already in use by ${owner}; k3s needs it" \
        "stop or move the service listening on port ${port} (find it with: ss -ltnp 'sport = :${port}')"
    fi
  done
}

# --- clock ---
check_clock() {
  local out fix="enable time sync against an NTP server this host can reach (chrony: server <ntp-host> iburst in /etc/chrony/chrony.conf; systemd: timedatectl set-ntp true); skewed clocks break TLS between nodes (x509: certificate has expired or is not yet valid)"
  if gl_has_systemd && command -v timedatectl >/dev/null 2>&1; then
    out=$(timeout 2 timedatectl show -p NTPSynchronized --value 2>/dev/null || true)
    case "${out}" in
      yes) gl_check_pass clock-sync "clock synchronised (timedatectl NTPSynchronized=yes)"; return ;;
      no) gl_check_fail clock-sync "clock is not synchronised (timedatectl NTPSynchronized=no)" "${fix}"; return ;;
    esac
  fi
  if command -v chronyc >/dev/null 2>&1; then
    if out=$(timeout 2 chronyc -n tracking 2>&1); then
      if grep -Eq '^Leap status *: *(Normal|Insert second|Delete second)' <<<"${out}"; then
        gl_check_pass clock-sync "clock synchronised (chronyc: $(awk -F': ' '/^System time/ {print $2}' <<<"${out}"))"
      else
        gl_check_fail clock-sync "clock is not synchronised (chronyc: $(awk -F': *' '/^Leap status/ {print $2}' <<<"${out}"))" "${fix}"
      fi
      return
    fi
    gl_check_warn clock-sync "cannot determine clock sync: chronyc tracking failed ($(head -n1 <<<"${out}"))" \
      "start chronyd (or systemd-timesyncd) so the sync state is known; ${fix}"
    return
  fi
  gl_check_warn clock-sync "cannot determine clock sync: neither timedatectl (systemd) nor chronyc available" \
    "install chrony; ${fix}"
}

check_firewall() {
  local active="" fw_ports="10250/tcp 8472/udp"
  is_server && fw_ports="${API_PORT}/tcp ${fw_ports}"
  is_etcd_server && fw_ports+=" 2379-2380/tcp"
  is_lb && fw_ports="${LB_FRONTEND_PORT}/tcp"  # and VRRP (IP protocol 112) between the load balancer nodes
  if command -v firewall-cmd >/dev/null 2>&1 && [[ "$(timeout 2 firewall-cmd --state 2>/dev/null || true)" == running ]]; then
    active=firewalld
    gl_check_warn firewall "firewalld is active; open ${fw_ports} between the nodes" \
      "for p in ${fw_ports}; do firewall-cmd --permanent --add-port=\"\$p\"; done; firewall-cmd --permanent --zone=trusted --add-source=${CLUSTER_CIDR} --add-source=${SERVICE_CIDR}; firewall-cmd --reload"
  elif command -v ufw >/dev/null 2>&1 && timeout 2 ufw status 2>/dev/null | grep -q '^Status: active'; then
    active=ufw
    gl_check_warn firewall "ufw is active; open ${fw_ports} between the nodes" \
      "for p in ${fw_ports}; do ufw allow \"\${p/-/:}\"; done; ufw allow from ${CLUSTER_CIDR}; ufw allow from ${SERVICE_CIDR}"
  fi
  [[ -n "${active}" ]] || gl_check_pass firewall "no active firewalld or ufw"
}

# --- load balancer node: what lib/loadbalancer.sh runs ---
check_lb_packages() {
  local missing=() cmd dir="" absent=()
  for cmd in haproxy keepalived; do command -v "${cmd}" >/dev/null 2>&1 || missing+=("${cmd}"); done
  if [[ -n "${LB_PACKAGES_DIR}" ]]; then
    dir=$(gl_bundle_path "${LB_PACKAGES_DIR}")
    for cmd in "${missing[@]}"; do compgen -G "${dir}/${cmd}[_-]*.[dr][ep][bm]" >/dev/null || absent+=("${cmd}"); done
  fi
  if ((${#missing[@]} == 0)); then
    gl_check_pass lb-packages "haproxy and keepalived are installed"
  elif [[ -n "${dir}" ]] && ((${#absent[@]} == 0)); then
    gl_check_pass lb-packages "${missing[*]} not installed yet: 02_init_control_plane installs them from ${LB_PACKAGES_DIR} (LB_PACKAGES_DIR, no network)"
  elif [[ -n "${dir}" ]]; then
    gl_check_fail lb-packages "not installed and not in ${LB_PACKAGES_DIR} (LB_PACKAGES_DIR): ${absent[*]}" \
      "on a machine like this one: apt-get download haproxy keepalived and their dependencies (RHEL: dnf download --resolve haproxy keepalived) into LB_PACKAGES_DIR, then deploy again"
  else
    gl_check_warn lb-packages "not installed: ${missing[*]}; 02_init_control_plane installs them from the OS package repositories" \
      "an air-gapped host needs them first: apt-get install haproxy keepalived (RHEL: dnf install haproxy keepalived) from a reachable mirror, or from .deb/.rpm files copied over; keepalived also needs VRRP (IP protocol 112) open between the load balancer nodes"
  fi
}

# --- existing install ---
existing_k3s_bin() {
  if [[ -x "${K3S_BIN}" ]]; then printf '%s\n' "${K3S_BIN}"; fi
}

# k3s' services as its install.sh names them, whatever role this host is checked for: k3s (a server)
# and k3s-agent (an agent), systemd or OpenRC; each with its uninstall script
check_existing() {
  local bin units=() uninstalls=() u version="" service
  k3s_use_role "${ROLE}"
  bin=$(existing_k3s_bin)
  for u in /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service /etc/init.d/k3s /etc/init.d/k3s-agent; do
    [[ -e "$(gl_path "${u}")" ]] || continue
    units+=("${u}")
    service="${u##*/}" service="${service%.service}"
    [[ " ${uninstalls[*]} " == *" ${service}-uninstall.sh "* ]] || uninstalls+=("${service}-uninstall.sh")
  done
  if [[ -n "${bin}" ]]; then
    PF_K3S_MODE=$(k3s_mode)
    version=$(timeout 2 "${bin}" --version 2>/dev/null | awk 'NR == 1 {print $3}' || true)
  fi
  (( ${#uninstalls[@]} )) || uninstalls=("${K3S_UNINSTALL##*/}")
  if [[ -z "${bin}" && ${#units[@]} == 0 ]]; then
    gl_check_pass existing-k3s "no k3s installed"
  else
    gl_check_warn existing-k3s "k3s already installed (version ${version:-unknown}${bin:+, ${bin}}${units[*]:+, ${units[*]}}); $([[ "${ROLE}" == agent ]] && echo 03 || echo 02) will keep/upgrade it (this ${ROLE}'s service: ${K3S_SERVICE})" \
      "nothing to do when this is the wanted K3S_VERSION (${K3S_VERSION}); otherwise the install upgrades it in place, or remove it first with ${uninstalls[*]}"
  fi
}

main() {
  gl_parse_args "01_pre_install_check.sh --role single|first-server|server|agent|lb [--json]" role-required "$@"
  ROLE="${GL_ROLE}"
  gl_load_settings
  gl_detect_os
  info "pre-install check for role ${ROLE} on ${OS_ID} ${OS_VERSION} (read-only)"
  check_resources
  check_ports
  check_clock
  check_swap
  if is_lb; then
    check_lb_packages                    # a load balancer node runs no k3s: no cgroups/modules checks
  else
    check_cgroups
    check_module overlay
    check_module br_netfilter
  fi
  check_commands "${ROLE}"
  check_temp_dir
  check_bundle_dir
  check_default_route
  check_dns
  check_selinux
  check_firewall
  is_lb || check_existing
  check_backend_image "${ROLE}"
  site_check_preflight                   # with a bastion: time zone, NTP, CA distributed, registry certificate
  gl_checks_finish "${PF_K3S_MODE}"
}

main "$@"
