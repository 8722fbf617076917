#!/usr/bin/env bash
# host_snapshot.sh: what a host looks like, as one JSON object on stdout, so that a snapshot taken
# before the install and one taken after the uninstall can be compared (gldeploy/lab/snapshot.py).
# The day-2 lab ships it to the VM over ssh stdin (`sudo bash -s`); it runs on any Linux host as root.
# Read-only: nothing on the host is changed.
#
# Sections (each a list of text lines; the comparison is done by the caller):
#   entries   files under /etc /usr/local /var/lib /opt /run/systemd: "TYPE MODE PATH[ -> LINK TARGET]"
#   hashes    "SHA256  PATH" of every regular file among them
#   units     `systemctl list-unit-files` ("unit state") and "active UNIT" for every active unit
#   mounts    /proc/self/mountinfo without the volatile fields: "MOUNTPOINT FSTYPE SOURCE OPTIONS"
#   links     `ip -j link` as is (the caller keeps name, type, mtu, master)
#   addrs     `ip -j addr` as is (the caller keeps name, family, address/prefix)
#   netns     network namespaces (`ip netns list` names)
#   firewall  `iptables-save`, `ip6tables-save` and `nft list ruleset`, without counters and comments
#   sockets   listening TCP and UDP sockets: "PROTO ADDRESS:PORT" (ports of the ephemeral range left out)
#
# VOLATILE (left out, on purpose; each changes on an idle host by itself):
#   /var/lib/systemd/timers        timer stamps           /var/lib/systemd/timesync  clock file
#   /var/lib/systemd/random-seed   rewritten at boot      /var/lib/systemd/coredump  crash dumps
#   /var/lib/private/systemd       timesyncd's clock file /var/lib/logrotate         logrotate's status
#   /var/lib/dhcp /var/lib/dhclient  DHCP leases          /var/lib/apt/lists /var/cache  package caches
#   /var/lib/apt/periodic /var/lib/apt/daily_lock  apt-daily's stamps
#   /var/lib/sudo                  sudo's lecture stamps  /var/log  (not snapshotted at all: logs)
#   /etc/ld.so.cache /etc/adjtime  caches and the RTC drift file
#   /run/systemd/{journal,sessions,users,seats,inhibit,units,propagate,transient,timesync,netif,notify,
#                 ask-password,ask-password-block,userdb,io.system.ManagedOOM,private,shutdown,resolve,
#                 inaccessible,machines,incoming}  runtime state of the running session(s) and services
#   units:  session-*.scope user@*.service user-*.slice user-runtime-dir@*.service run-user-*.mount and
#           the services timers start by themselves (apt-daily*, man-db, logrotate, e2scrub*, fstrim,
#           systemd-tmpfiles-clean, dpkg-db-backup); mounts: /run/user/*, /run/credentials/*
# Extra paths to leave out can be given as arguments (a busy test host: e.g. /var/lib/libvirt, whose
# VM disks change while it runs); the lab gives none.
set -euo pipefail

ROOTS=(/etc /usr/local /var/lib /opt /run/systemd)
VOLATILE_PATHS=(
  /var/lib/systemd/timers /var/lib/systemd/timesync /var/lib/systemd/random-seed /var/lib/systemd/coredump
  /var/lib/private/systemd /var/lib/logrotate /var/lib/dhcp /var/lib/dhclient /var/lib/apt/lists /var/lib/sudo
  /var/lib/apt/periodic /var/lib/apt/daily_lock
  /var/cache /var/log /etc/ld.so.cache /etc/adjtime
  /run/systemd/journal /run/systemd/sessions /run/systemd/users /run/systemd/seats /run/systemd/inhibit
  /run/systemd/units /run/systemd/propagate /run/systemd/transient /run/systemd/timesync /run/systemd/netif
  /run/systemd/notify /run/systemd/ask-password /run/systemd/ask-password-block /run/systemd/userdb
  /run/systemd/io.system.ManagedOOM /run/systemd/private /run/systemd/shutdown /run/systemd/resolve
  /run/systemd/inaccessible /run/systemd/machines /run/systemd/incoming
  "$@"
)
# (hostnamed is D-Bus-activated and exits when idle; wait-online's state depends on boot timing)
VOLATILE_UNITS='^(session-.*\.scope|user@.*\.service|user-.*\.slice|user-runtime-dir@.*\.service|run-user-.*\.mount|apt-daily.*\.service|man-db\.service|logrotate\.service|e2scrub.*\.service|fstrim\.service|systemd-tmpfiles-clean\.service|dpkg-db-backup\.service|systemd-hostnamed\.service|systemd-networkd-wait-online\.service)$'

json_lines() {  # stdin lines -> a JSON array of strings (control characters as '?')
  local body
  body=$(LC_ALL=C sed -e 's/[[:cntrl:]]/?/g' -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/.*/"&"/' | paste -sd,)
  printf '[%s]' "${body}"
}

prune_args() {  # the find(1) expression that skips the volatile paths
  local p
  for p in "${VOLATILE_PATHS[@]}"; do printf '%s\0' -path "${p}" -prune -o; done
}

existing_roots() {
  local r
  for r in "${ROOTS[@]}"; do if [[ -e "${r}" ]]; then printf '%s\n' "${r}"; fi; done
}

snap_entries() {
  local roots=() prune=()
  mapfile -t roots < <(existing_roots)
  mapfile -d '' -t prune < <(prune_args)
  find "${roots[@]}" -xdev "${prune[@]}" \( -type l -printf '%y %m %p -> %l\n' -o -printf '%y %m %p\n' \) | LC_ALL=C sort
}

snap_hashes() {
  local roots=() prune=()
  mapfile -t roots < <(existing_roots)
  mapfile -d '' -t prune < <(prune_args)
  find "${roots[@]}" -xdev "${prune[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum -- 2>/dev/null || true
}

snap_units() {
  command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]] || return 0
  { systemctl list-unit-files --no-legend --no-pager 2>/dev/null || true; } \
    | awk -v re="${VOLATILE_UNITS}" '$1 !~ re {print $1, $2}' | LC_ALL=C sort
  { systemctl list-units --state=active --all --no-legend --no-pager --plain 2>/dev/null || true; } \
    | awk -v re="${VOLATILE_UNITS}" '$1 !~ re {print "active", $1}' | LC_ALL=C sort
}

snap_mounts() {  # mountinfo: 5 mount point, 6 options, after " - ": fstype source super-options
  awk '{ for (i = 7; $i != "-"; i++) ; print $5, $(i + 1), $(i + 2), $6 }' /proc/self/mountinfo \
    | grep -Ev '^/run/(user|credentials)/' | LC_ALL=C sort -u
}

ip_json() {  # `ip -j ARGS`: its JSON array as is (the caller keeps the stable fields), [] without ip
  local out
  out=$(ip -j "$@" 2>/dev/null) || out=""
  printf '%s' "${out:-[]}"
}

snap_netns() {
  ip netns list 2>/dev/null | awk '{print $1}' | LC_ALL=C sort || true
}

snap_firewall() {
  local tool
  for tool in iptables-save ip6tables-save; do
    if command -v "${tool}" >/dev/null 2>&1; then
      "${tool}" 2>/dev/null | grep -v '^#' | sed -e 's/ \[[0-9]*:[0-9]*\]$//' -e "s/^/${tool%-save} /" || true
    fi
  done
  if command -v nft >/dev/null 2>&1; then
    nft list ruleset 2>/dev/null | sed -e 's/counter packets [0-9]* bytes [0-9]*/counter/' -e 's/^[[:space:]]*//' \
      | grep -v '^$' | sed 's/^/nft /' || true
  fi
}

snap_sockets() {  # listening sockets, ephemeral client ports (ip_local_port_range) left out
  local low=32768 high=60999
  if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then read -r low high </proc/sys/net/ipv4/ip_local_port_range; fi
  ss -H -ltun 2>/dev/null | awk -v lo="${low}" -v hi="${high}" '{
    n = split($5, a, ":"); port = a[n] + 0
    if (port >= lo && port <= hi) next
    print $1, $5 }' | LC_ALL=C sort -u || true
}

main() {
  local section host
  host=$(hostname | json_lines)
  printf '{"format": 1, "host": %s' "${host:1:-1}"
  for section in entries hashes units mounts netns firewall sockets; do
    printf ', "%s": %s' "${section}" "$("snap_${section}" | json_lines)"
  done
  printf ', "links": %s, "addrs": %s}\n' "$(ip_json link show)" "$(ip_json addr show)"
}

main "$@"
