"""vagrant/lab.yml: the lab names and networks that the Python side and the Vagrantfile share."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from gldeploy.errors import ConfigError
from gldeploy.paths import VAGRANT_DIR

SHARED_FILE = VAGRANT_DIR / "lab.yml"


@dataclass(frozen=True)
class Network:
    """A libvirt network of the lab: name, bridge, IPv4 network (the host holds its first address)."""

    name: str
    bridge: str
    cidr: ipaddress.IPv4Network
    domain: str = ""

    @property
    def host_ip(self) -> str:
        return str(self.cidr.network_address + 1)


@dataclass(frozen=True)
class Shared:
    """The parsed vagrant/lab.yml."""

    box: str
    boot_timeout: int
    domain_prefix: str
    console_log: str
    mgmt: Network
    private: Network

    def prefix(self, lab: str) -> str:
        """libvirt name prefix of a lab's domains and volumes."""
        return self.domain_prefix.replace("%{lab}", lab)

    def console(self, lab: str, node: str) -> Path:
        """The file a node's serial console (kernel and systemd boot messages) is written to."""
        return Path(self.console_log.replace("%{domain}", self.prefix(lab) + node))


def _network(raw: object, key: str, path: Path) -> Network:
    if not isinstance(raw, dict) or not {"name", "bridge", "cidr"} <= raw.keys():
        raise ConfigError(f"{path}: {key} needs name, bridge and cidr")
    try:
        cidr = ipaddress.IPv4Network(str(raw["cidr"]))
    except ValueError as exc:
        raise ConfigError(f"{path}: {key}.cidr {raw['cidr']!r}: {exc}") from None
    return Network(str(raw["name"]), str(raw["bridge"]), cidr, str(raw.get("domain", "")))


@cache
def load(path: Path = SHARED_FILE) -> Shared:
    """Read and check vagrant/lab.yml (ConfigError naming the file and key when it is wrong)."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    missing = {"box", "boot_timeout", "domain_prefix", "console_log", "management_network",
               "private_network"} - raw.keys()
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(sorted(missing))}")
    if not isinstance(raw["boot_timeout"], int) or raw["boot_timeout"] < 1:
        raise ConfigError(f"{path}: boot_timeout {raw['boot_timeout']!r}: expected whole seconds")
    if "%{lab}" not in str(raw["domain_prefix"]):
        raise ConfigError(f"{path}: domain_prefix must contain %{{lab}} so labs do not share VMs")
    if "%{domain}" not in str(raw["console_log"]):
        raise ConfigError(f"{path}: console_log must contain %{{domain}} so every VM has its own file")
    return Shared(str(raw["box"]), raw["boot_timeout"], str(raw["domain_prefix"]), str(raw["console_log"]),
                  _network(raw["management_network"], "management_network", path),
                  _network(raw["private_network"], "private_network", path))
