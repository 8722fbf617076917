"""Make the lab VMs look like hosts of a prepared air-gapped site: a default route, a DNS server and
an NTP server on the site network (all three are the lab host, 192.168.56.1). The product's
pre-install check requires exactly these of a real host; the lab provides them rather than skip them."""
from __future__ import annotations

import time
from pathlib import Path

from gldeploy.errors import DeployError
from gldeploy.lab.nodes import Lab
from gldeploy.lab.proc import say
from gldeploy.lab.vagrant import ssh

SYNC_TIMEOUT = 90


# $1 is the gateway (the lab host on the site network); values are arguments, never code
SITE_SCRIPT = r"""set -euo pipefail
gateway=$1
net=${gateway%.*}.
dev=$(ip -o -4 addr show | awk -v net="$net" 'index($4, net) == 1 {print $2; exit}')
[ -n "$dev" ] || { echo "no interface on the site network ${net}0/24" >&2; exit 1; }
mkdir -p "/etc/systemd/network/50-vagrant-$dev.network.d"
printf '[Route]\nGateway=%s\nMetric=1000\n' "$gateway" >"/etc/systemd/network/50-vagrant-$dev.network.d/gl-site.conf"
ip route replace default via "$gateway" dev "$dev" metric 1000
printf '# site DNS (GL-Native lab)\nnameserver %s\n' "$gateway" >/etc/resolv.conf
mkdir -p /etc/systemd/timesyncd.conf.d
printf '[Time]\nNTP=%s\nPollIntervalMinSec=32\n' "$gateway" >/etc/systemd/timesyncd.conf.d/gl-site.conf
timedatectl set-ntp true
systemctl restart systemd-timesyncd
"""


def site_argv(gateway: str) -> list[str]:
    """Root command run on each VM (settings only, no secrets): the gateway is its argument."""
    return ["sudo", "bash", "-c", SITE_SCRIPT, "gl-lab-site", gateway]


def prepare(ssh_config: Path, lab: Lab, gateway: str) -> float:
    """Configure route, DNS and NTP on every VM; wait (bounded) until each reports NTPSynchronized."""
    start = time.monotonic()
    for node in lab.nodes:
        ssh(ssh_config, node.ip, site_argv(gateway), timeout=120)
    pending = list(lab.nodes)
    while pending:
        node = pending[0]
        out = ssh(ssh_config, node.ip, ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                  timeout=30, check=False).stdout.strip()
        if out == "yes":
            pending.pop(0)
            continue
        if time.monotonic() - start > SYNC_TIMEOUT:
            raise DeployError(f"{node.name}: clock not synchronised against the lab NTP server {gateway} "
                              f"after {SYNC_TIMEOUT} s (timedatectl NTPSynchronized={out or '?'})")
        time.sleep(2)
    took = time.monotonic() - start
    say(f"site services ready on {len(lab.nodes)} VM(s): default route, DNS and NTP via {gateway} ({took:.0f} s)")
    return took
