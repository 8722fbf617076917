#!/usr/bin/env bash
# lib/host_checks.sh: the kernel and OS checks of 01_pre_install_check.sh (swap, cgroups, kernel modules,
# commands, default route, DNS, SELinux). Read-only; each records one gl_check result with its fix.
# Needs common.sh (gl_path, OS_FAMILY/OS_ID) and checks.sh (gl_check_*).

# a host file, preferring the sandbox copy under GL_ROOT when tests provide one
host_file() {
  local p
  p="$(gl_path "$1")"
  if [[ -n "${GL_ROOT}" && -e "${p}" ]]; then printf '%s\n' "${p}"; else printf '%s\n' "$1"; fi
}

check_swap() {
  local kb
  kb=$(awk 'NR > 1 {s += $3} END {print s + 0}' /proc/swaps 2>/dev/null || echo 0)
  if ((kb == 0)); then gl_check_pass swap "swap is off"
  else gl_check_warn swap "swap is on ($((kb / 1024)) MiB); pod memory limits are less predictable" \
    "swapoff -a and comment out the swap lines in /etc/fstab"; fi
}

check_cgroups() {
  local fs controllers missing="" c
  fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo none)
  if [[ "${fs}" == cgroup2fs ]]; then
    controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || true)
    for c in memory cpu; do [[ " ${controllers} " == *" ${c} "* ]] || missing+=" ${c}"; done
    [[ -z "${missing}" ]] && { gl_check_pass cgroups "cgroup v2 with memory and cpu controllers"; return; }
    gl_check_fail cgroups "cgroup v2 without controller(s):${missing}" \
      "enable them: add cgroup_enable=memory cgroup_memory=1 to the kernel command line and reboot"
    return
  fi
  for c in memory cpu; do
    awk -v c="${c}" '$1 == c && $4 == 1 {found = 1} END {exit !found}' /proc/cgroups 2>/dev/null || missing+=" ${c}"
  done
  if [[ "${fs}" == none || ! -r /proc/cgroups ]]; then
    gl_check_fail cgroups "no cgroup filesystem at /sys/fs/cgroup" "mount cgroup2 at /sys/fs/cgroup (use a systemd-based OS or add it to /etc/fstab)"
  elif [[ -z "${missing}" ]]; then
    gl_check_pass cgroups "cgroup v1 with memory and cpu controllers"
  else
    gl_check_fail cgroups "cgroup v1 without controller(s):${missing}" \
      "add cgroup_enable=memory cgroup_memory=1 to the kernel command line (Raspberry Pi: /boot/cmdline.txt) and reboot"
  fi
}

check_module() {
  local m="$1" how="" kver
  kver=$(uname -r)
  if grep -q "^${m} " /proc/modules 2>/dev/null; then how="loaded"
  elif [[ -d "/sys/module/${m}" ]]; then how="built in or loaded"
  elif [[ "${m}" == br_netfilter && -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then how="active (bridge-nf-call-iptables present)"
  elif grep -qs "/${m}.ko" "/lib/modules/${kver}/modules.builtin"; then how="built in"
  elif command -v modinfo >/dev/null 2>&1 && modinfo "${m}" >/dev/null 2>&1; then how="loadable"
  elif [[ -d "/lib/modules/${kver}" ]] && find "/lib/modules/${kver}" -name "${m}.ko*" -print -quit 2>/dev/null | grep -q .; then how="loadable"
  fi
  if [[ -n "${how}" ]]; then gl_check_pass "kernel-module-${m}" "kernel module ${m}: ${how}"
  else gl_check_fail "kernel-module-${m}" "kernel module ${m} is not loaded, built in or installed for kernel ${kver}" \
    "install the kernel modules package for ${kver} (Debian: linux-image-${kver}; RHEL: kernel-modules), then: modprobe ${m}; echo ${m} > /etc/modules-load.d/k3s.conf"; fi
}

# The tools the later phases run, so a missing one fails here, read-only, and not halfway through an
# install. Every role: 02/03 (curl for the release download and the API /ping, sha256sum, cmp,
# install, mktemp, timeout, setsid without systemd) and k3s itself (ip, iptables or nft, mount).
# Where the health phase runs (single, first-server): openssl for the certificate check.
# Keep in step with the scripts: grep -w for a tool in scripts/ when adding one.
GL_TOOLS_ALL="ip iptables/nft mount curl sha256sum cmp install mktemp timeout awk"
GL_TOOLS_HEALTH="openssl"

check_commands() {  # ROLE
  local role="$1" missing=() group alt found groups="${GL_TOOLS_ALL}"
  case "${role}" in single|first-server) groups+=" ${GL_TOOLS_HEALTH}" ;; esac
  if ! gl_has_systemd; then groups+=" setsid"; fi
  for group in ${groups}; do
    found=""
    for alt in ${group//\// }; do command -v "${alt}" >/dev/null 2>&1 && { found=1; break; }; done
    [[ -n "${found}" ]] || missing+=("${group//\// or }")
  done
  if ((${#missing[@]} == 0)); then gl_check_pass commands "present: ${groups//\// or }"
  else
    local joined
    joined=$(printf '%s, ' "${missing[@]}")
    gl_check_fail commands "missing command(s) the phases of role ${role} run: ${joined%, }" \
      "install them (Debian: apt-get install iproute2 iptables mount curl coreutils diffutils gawk openssl util-linux; RHEL: dnf install iproute iptables-nft util-linux curl coreutils diffutils gawk openssl)"
  fi
}

# the temporary directory the phases make their work directories in (gl_tmpdir: ${TMPDIR:-/tmp})
check_temp_dir() {
  local dir="${TMPDIR:-/tmp}" probe
  if probe=$(mktemp -d "${dir}/gl-preflight.XXXXXX" 2>/dev/null) && rmdir -- "${probe}"; then
    gl_check_pass temp-dir "${dir} is a writable directory"
  else
    gl_check_fail temp-dir "cannot create a directory in ${dir} (TMPDIR); the install and deploy phases work there" \
      "point TMPDIR at a writable directory with free space, or fix ${dir} (mode 1777, not full, not read-only)"
  fi
}

# the bundle the phases run from (WORK_DIR on the host, or the standalone directory): readable, and
# writable by its owner only, since root runs what is in it
check_bundle_dir() {
  local dir="${GL_BUNDLE_DIR}" mode
  if [[ ! -d "${dir}" || ! -r "${dir}" || ! -x "${dir}" ]]; then
    gl_check_fail bundle-dir "${dir} (the bundle) is not a readable directory" "copy the bundle again (invoke ships it to WORK_DIR)"
    return
  fi
  mode=$(stat -c %a -- "${dir}")
  if (( (8#${mode} & 8#022) != 0 )); then
    gl_check_fail bundle-dir "${dir} (the bundle) is mode ${mode}: others can change the scripts root runs" \
      "chmod go-w '${dir}'"
  else
    gl_check_pass bundle-dir "${dir} is readable and writable by its owner only (mode ${mode})"
  fi
}

check_default_route() {
  local r
  r=$(ip route show default 2>/dev/null | head -n1 || true)
  [[ -n "${r}" ]] || r=$(ip -6 route show default 2>/dev/null | head -n1 || true)
  r="${r%"${r##*[![:space:]]}"}"
  if [[ -n "${r}" ]]; then gl_check_pass default-route "default route: ${r}"
  else gl_check_fail default-route "no default route; k3s needs one to pick its node address, even air-gapped" \
    "add a route, or a dummy one when air-gapped: ip link add dummy0 type dummy; ip link set dummy0 up; ip addr add 203.0.113.254/31 dev dummy0; ip route add default via 203.0.113.255 dev dummy0 metric 1000"; fi
}

check_dns() {
  local conf servers real="" host
  conf=$(host_file /etc/resolv.conf)
  servers=$(awk '$1 == "nameserver" {print $2}' "${conf}" 2>/dev/null | tr '\n' ' ')
  if [[ -z "${servers}" ]]; then
    gl_check_fail dns "${conf} lists no nameserver; CoreDNS has no upstream" \
      "add 'nameserver <your DNS server>' to /etc/resolv.conf (air-gapped: your internal DNS)"
    return
  fi
  for host in ${servers}; do [[ "${host}" == 127.* || "${host}" == ::1 ]] || real=1; done
  if [[ -z "${real}" ]] && ! awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 != "::1" {f = 1} END {exit !f}' \
      /run/systemd/resolve/resolv.conf 2>/dev/null; then
    gl_check_warn dns "only loopback nameserver(s) (${servers% }); CoreDNS would forward to itself" \
      "point k3s at a resolv.conf with a real upstream (k3s --resolv-conf /etc/k3s-resolv.conf)"
    return
  fi
  if [[ -n "${REGISTRY}" ]]; then
    host="${REGISTRY%:*}"; host="${host#[}"; host="${host%]}"
    if [[ ! "${host}" =~ ^[0-9.]+$ && "${host}" != *:* ]] && ! timeout 2 getent hosts "${host}" >/dev/null 2>&1; then
      gl_check_fail dns "registry host ${host} (REGISTRY) does not resolve" \
        "add ${host} to your DNS or to /etc/hosts on every node"
      return
    fi
    gl_check_pass dns "nameserver(s) ${servers% }; registry host ${host} resolves"
    return
  fi
  gl_check_pass dns "nameserver(s) ${servers% }"
}

check_selinux() {
  local enforce="" f
  f=$(host_file /sys/fs/selinux/enforce)
  [[ -r "${f}" ]] && enforce=$(cat "${f}")
  if [[ "${enforce}" != 1 ]]; then
    gl_check_pass selinux "SELinux not enforcing${enforce:+ (permissive)}"
  elif [[ "${OS_FAMILY}" == rhel ]]; then
    if command -v rpm >/dev/null 2>&1 && rpm -q k3s-selinux >/dev/null 2>&1; then
      gl_check_pass selinux "SELinux enforcing, k3s-selinux policy installed"
    else
      gl_check_fail selinux "SELinux enforcing on ${OS_ID} but the k3s-selinux policy is not installed" \
        "dnf install container-selinux k3s-selinux (air-gapped: copy both RPMs from rpm.rancher.io and install them with dnf)"
    fi
  else
    gl_check_warn selinux "SELinux enforcing on ${OS_ID}; k3s-selinux is only packaged for RHEL-family systems" \
      "set SELinux permissive, or install a container-selinux policy for ${OS_ID}"
  fi
}
