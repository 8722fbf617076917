"""The air-gap VM lab (vagrant/labs/airgap.yml): a bastion and a k3s node on a network with no
forwarding, no NAT and no address of the lab host. The bundle is built on the host, copied in,
verified with its own verify.sh, the bastion is installed from it, then the node with the bundle's
standalone scripts. The steps that call these are AIRGAP_STEPS in gldeploy/lab/runner.py.

Vagrant reaches the VMs over the management network (lab.yml); that network is closed to anything a
VM starts itself (iptables: only replies and DHCP leave eth0), and its DHCP routes are ignored, so
the only default route of a VM is on the air-gap network."""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gldeploy.errors import ConfigError, DeployError
from gldeploy.lab import host, nodes, shared
from gldeploy.lab.proc import run, say, ssh_argv
from gldeploy.lab.vagrant import ssh
from gldeploy.paths import REPO

OTHER_LAB_WAIT = 40 * 60  # seconds to wait for another lab's VMs to go (2 shared cores)
OTHER_LAB_POLL = 30
REMOTE_BUNDLE = "/opt/gl-bundle"
REGISTRY_NAME = "registry.gov-native.local"  # env/airgap.env REGISTRY's host, served by the bastion's DNS
MGMT_CHAIN = "GL-AIRGAP-MGMT"


@dataclass(frozen=True)
class AirgapTable:
    """labs/airgap.yml beyond the node table: the air-gap network and the bastion."""

    network: shared.Network
    bastion: nodes.Node
    lab: nodes.Lab  # the k3s nodes (role single|server|agent)

    @property
    def vms(self) -> nodes.Lab:
        """Every VM Vagrant brings up (bastion first): what LabVMs waits for and names."""
        return nodes.Lab(self.lab.name, self.lab.env_file, (self.bastion, *self.lab.nodes))

    @property
    def gateway(self) -> str:
        return self.bastion.ip


def load(name: str = "airgap", labs_dir: Path = nodes.LABS_DIR) -> AirgapTable:
    """Read labs/<name>.yml: `network` (name, bridge, cidr) and `bastion` (name, cpus, memory, ip)."""
    path = labs_dir / f"{name}.yml"
    lab = nodes.load(name, labs_dir)
    data = yaml.safe_load(path.read_text()) or {}
    raw_net, raw_bastion = data.get("network"), data.get("bastion")
    if not isinstance(raw_net, dict) or not {"name", "bridge", "cidr"} <= raw_net.keys():
        raise ConfigError(f"{path}: `network:` needs name, bridge and cidr (the air-gap network)")
    try:
        cidr = ipaddress.IPv4Network(str(raw_net["cidr"]))
    except ValueError as exc:
        raise ConfigError(f"{path}: network.cidr {raw_net['cidr']!r}: {exc}") from None
    if not isinstance(raw_bastion, dict):
        raise ConfigError(f"{path}: `bastion:` needs name, cpus, memory and ip")
    bastion = nodes._node({**raw_bastion, "role": "single"}, f"{path} bastion")  # same checks as a node
    bastion = nodes.Node(bastion.name, "bastion", bastion.cpus, bastion.memory, bastion.ip)
    for node in (bastion, *lab.nodes):
        if ipaddress.IPv4Address(node.ip) not in cidr:
            raise ConfigError(f"{path}: {node.name} ip {node.ip} is outside network.cidr {cidr}")
    if bastion.name in lab.names or bastion.ip in lab.ips:
        raise ConfigError(f"{path}: the bastion's name and ip must differ from every node's")
    net = shared.Network(str(raw_net["name"]), str(raw_net["bridge"]), cidr)
    return AirgapTable(net, bastion, lab)


def network_xml(net: shared.Network) -> str:
    """libvirt XML: no <forward> (no NAT, no routing) and no <ip> (the host's bridge has no address,
    so no dnsmasq and no host service is on it)."""
    return f"""<network>
  <name>{net.name}</name>
  <bridge name='{net.bridge}' stp='on' delay='0'/>
</network>"""


def ensure_network(net: shared.Network) -> None:
    """Define/start the air-gap network and prove the host holds no address on its bridge."""
    host.ensure_network(net.name, network_xml(net))
    addrs = run(["ip", "-o", "addr", "show", "dev", net.bridge], timeout=30, what="ip addr").stdout
    if " inet" in addrs:
        raise DeployError(f"the host has an address on the air-gap bridge {net.bridge}: {addrs.strip()}")


def other_lab_domains(own_prefix: str) -> list[str]:
    """Running libvirt domains that belong to another lab (or anything else)."""
    out = run([*host.VIRSH, "list", "--name"], timeout=60, what="virsh list").stdout.split()
    return [d for d in out if not d.startswith(own_prefix)]


def wait_for_other_labs(own_prefix: str, timeout: float = OTHER_LAB_WAIT, poll: float = OTHER_LAB_POLL) -> float:
    """Bounded wait until no other lab's VM runs (2 shared cores: never two labs at once). Two empty
    looks `poll` seconds apart are needed: a lab that destroys and re-creates its VMs between its
    own rounds leaves a moment with none."""
    start = time.monotonic()
    quiet = 0
    while True:
        others = other_lab_domains(own_prefix)
        quiet = 0 if others else quiet + 1
        if quiet >= 2:
            return time.monotonic() - start
        if not others:
            time.sleep(poll)
            continue
        waited = time.monotonic() - start
        if waited > timeout:
            raise DeployError(f"other VMs still run after {timeout / 60:.0f} min ({', '.join(others)}); "
                              f"run the air-gap lab when they are gone")
        say(f"waiting for other lab VMs to go ({', '.join(others)}; {waited:.0f} s so far)")
        time.sleep(poll)


# $1 own address/prefix, $2 default gateway ('' = on-link default on the air-gap NIC), $3 DNS server
NET_SCRIPT = r"""set -euo pipefail
address=$1 gateway=$2 dns=$3 chain=GL-AIRGAP-MGMT
cat >/etc/systemd/network/20-eth1-airgap.network <<EOF
[Match]
Name=eth1
[Network]
Address=$address
EOF
if [ -n "$gateway" ]; then printf '[Route]\nGateway=%s\n' "$gateway" >>/etc/systemd/network/20-eth1-airgap.network
else printf '[Route]\nDestination=0.0.0.0/0\nScope=link\n' >>/etc/systemd/network/20-eth1-airgap.network; fi
mkdir -p /etc/systemd/network/10-eth0.network.d
printf '[DHCPv4]\nUseRoutes=false\nUseDNS=false\nUseNTP=false\nUseGateway=false\n' \
  >/etc/systemd/network/10-eth0.network.d/gl-airgap.conf
networkctl reload
ip route del default dev eth0 2>/dev/null || true
networkctl reconfigure eth1
for _ in $(seq 1 30); do ip -4 addr show dev eth1 | grep -q "inet ${address%/*}/" && break; sleep 1; done
ip route show default | grep -q 'dev eth1' || ip route replace default ${gateway:+via "$gateway"} dev eth1
printf '# site DNS: the bastion (GL-Native air-gap lab)\nnameserver %s\n' "$dns" >/etc/resolv.conf
# the management NIC carries Vagrant's SSH in, nothing a VM starts goes out of it (DHCP renewals aside)
iptables -N "$chain" 2>/dev/null || iptables -F "$chain"
iptables -C OUTPUT -o eth0 -j "$chain" 2>/dev/null || iptables -I OUTPUT 1 -o eth0 -j "$chain"
iptables -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
iptables -A "$chain" -p udp --sport 68 --dport 67 -j RETURN
iptables -A "$chain" -j REJECT
"""


def net_argv(address: str, gateway: str, dns: str) -> list[str]:
    return ["sudo", "bash", "-c", NET_SCRIPT, "gl-airgap-net", address, gateway, dns]


def configure_vms(ssh_config: Path, table: AirgapTable) -> None:
    """Air-gap addresses, routes, resolver and the closed management NIC on every VM."""
    prefix = table.network.cidr.prefixlen
    for node in table.vms.nodes:
        gateway = "" if node is table.bastion else table.gateway
        ssh(ssh_config, node.ip, net_argv(f"{node.ip}/{prefix}", gateway, table.gateway), timeout=120)
    say(f"air-gap network configured on {', '.join(table.vms.names)}; default route only via "
        f"{table.network.bridge}'s network {table.network.cidr}")


def box_dpkg_status(box_img: Path, dest: Path) -> Path:
    """The box's /var/lib/dpkg/status, read from its image (qemu-img to raw, debugfs at the root
    partition's offset): what the bundle's packages section is computed against."""
    raw = dest.with_suffix(".raw")
    try:
        run(["qemu-img", "convert", "-O", "raw", str(box_img), str(raw)], timeout=600, what="qemu-img convert")
        table = json.loads(run(["sfdisk", "-J", str(raw)], timeout=60, what="sfdisk -J").stdout)
        parts = table["partitiontable"]["partitions"]
        root = next(p for p in parts if p.get("type") == "83")
        offset = int(root["start"]) * int(table["partitiontable"].get("sectorsize", 512))
        text = run(["debugfs", "-R", "cat /var/lib/dpkg/status", f"{raw}?offset={offset}"], timeout=120,
                   what="debugfs cat /var/lib/dpkg/status").stdout
    finally:
        raw.unlink(missing_ok=True)
    if "Package: " not in text:
        raise DeployError(f"{box_img}: no dpkg status found in its root filesystem")
    dest.write_text(text)
    return dest


def box_image(box: str) -> Path:
    """The added box's disk image (~/.vagrant.d/boxes/<name>/<version>/libvirt/box.img)."""
    home = Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d"))
    root = home / "boxes" / box.replace("/", "-VAGRANTSLASH-")
    found = sorted(root.glob("*/libvirt/box.img"))
    if not found:
        raise DeployError(f"box {box} has no image under {root}; run `invoke box.build`")
    return found[-1]


def standin_with_images(src: Path, dest: Path, arch: str = "amd64") -> Path:
    """The k3s stand-in release plus an (empty, valid) air-gap image archive, which bundle.build
    requires of every release: under the stand-in there are no system images to carry."""
    import hashlib
    import shutil
    import tarfile
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(src / "k3s", dest / "k3s")
    with tarfile.open(dest / f"k3s-airgap-images-{arch}.tar", "w", format=tarfile.PAX_FORMAT):
        pass
    lines = [f"{hashlib.sha256((dest / n).read_bytes()).hexdigest()}  {n}"
             for n in ("k3s", f"k3s-airgap-images-{arch}.tar")]
    (dest / f"sha256sum-{arch}.txt").write_text("\n".join(lines) + "\n")
    return dest


def secret_file(path: Path, value: str) -> Path:
    """A 0600 file created with its mode (never world-readable, not even for a moment)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return path


def new_password(path: Path) -> Path:
    return secret_file(path, secrets.token_urlsafe(24))


def copy_in(ssh_config: Path, ip: str, files: list[Path], remote_dir: str) -> None:
    """scp files into remote_dir on a VM (as the SSH user; the dir is made 0700)."""
    ssh(ssh_config, ip, ["bash", "-c", 'umask 077; rm -rf "$1"; mkdir -p "$1"', "gl-copy", remote_dir])
    run(["scp", "-q", "-F", str(ssh_config), *map(str, files), f"{ip}:{remote_dir}/"], timeout=900,
        what=f"scp to {ip}")


def unpack_and_verify(ssh_config: Path, ip: str, incoming: str, parts_name: str, name: str) -> str:
    """On the VM: verify.sh --unpack the parts into REMOTE_BUNDLE, then the bundle's own verify.sh."""
    ssh(ssh_config, ip, ["sudo", "bash", "-c", 'rm -rf "$1" && mkdir -p "$1"', "gl-unpack", REMOTE_BUNDLE])
    ssh(ssh_config, ip, ["sudo", "bash", f"{incoming}/verify.sh", "--unpack", f"{incoming}/{parts_name}",
                         "--to", REMOTE_BUNDLE], timeout=900)
    out = ssh(ssh_config, ip, ["sudo", "bash", f"{REMOTE_BUNDLE}/{name}/verify.sh"], timeout=900)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def invoke_tasks() -> set[str]:
    """Task names `invoke --list` shows in this checkout."""
    out = run([*invoke_prefix(), "--list", "--list-format", "json"], cwd=REPO, timeout=120,
              what="invoke --list").stdout
    found: set[str] = set()

    def walk(coll: dict[str, Any], prefix: str) -> None:
        for task in coll.get("tasks", []):
            found.add(prefix + str(task["name"]))
        for sub in coll.get("collections", []):
            walk(sub, f"{prefix}{sub['name']}.")
    walk(json.loads(out), "")
    return found


def invoke_prefix() -> list[str]:
    return [sys.executable, "-m", "invoke"]


def run_script(ssh_config: Path, ip: str, argv: list[str], timeout: float) -> tuple[int, str, str]:
    """A phase script on a VM, not raising: (exit code, stdout, stderr)."""
    done = run(ssh_argv(ssh_config, ip, argv), timeout=timeout, check=False, what=f"{argv[-1]} on {ip}")
    return done.returncode, done.stdout, done.stderr
