"""Lab node tables (vagrant/labs/<lab>.yml): the one inventory for Vagrant, the tasks and testinfra."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gldeploy.errors import ConfigError
from gldeploy.paths import REPO, VAGRANT_DIR

LABS_DIR = VAGRANT_DIR / "labs"
ROLES = ("single", "first-server", "server", "agent")  # sequences.ROLES
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class Node:
    """One VM: name (also its host name), role, size and private-network address."""

    name: str
    role: str
    cpus: int
    memory: int
    ip: str


@dataclass(frozen=True)
class Lab:
    """A named lab: its env file and nodes, in table order."""

    name: str
    env_file: Path
    nodes: tuple[Node, ...]
    vip: str = ""  # the API VIP (HA labs): the failover drill probes it
    boot_timeout: int = 0  # the table's own default boot bound (many VMs boot slower); 0 = lab.yml's

    def of_role(self, *roles: str) -> list[Node]:
        """The nodes with one of these roles, in table order."""
        return [n for n in self.nodes if n.role in roles]

    @property
    def servers(self) -> list[Node]:
        return self.of_role("single", "first-server", "server")

    @property
    def agents(self) -> list[Node]:
        return self.of_role("agent")

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"lab {self.name} has no node {name!r}; nodes: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def ips(self) -> list[str]:
        return [n.ip for n in self.nodes]


def available(labs_dir: Path = LABS_DIR) -> list[str]:
    """Names of the labs that have a table."""
    return sorted(p.stem for p in labs_dir.glob("*.yml"))


def _node(raw: Any, where: str) -> Node:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name, role, cpus, memory, ip")
    missing = [k for k in ("name", "role", "ip") if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    name, role = str(raw["name"]), str(raw["role"])
    if not NAME_RE.match(name):
        raise ConfigError(f"{where}: name {name!r} must be a lowercase host name (letters, digits, -)")
    if role not in ROLES:
        raise ConfigError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    try:
        ip = str(ipaddress.IPv4Address(str(raw["ip"])))
        cpus, memory = int(raw.get("cpus", 1)), int(raw.get("memory", 1024))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if cpus < 1 or memory < 256:
        raise ConfigError(f"{where}: cpus must be >= 1 and memory >= 256 MiB")
    return Node(name, role, cpus, memory, ip)


def load(name: str, labs_dir: Path = LABS_DIR) -> Lab:
    """Read and validate vagrant/labs/<name>.yml."""
    path = labs_dir / f"{name}.yml"
    if not path.exists():
        raise ConfigError(f"no lab {name!r}: {path} does not exist; labs: {', '.join(available(labs_dir))}")
    data = yaml.safe_load(path.read_text()) or {}
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ConfigError(f"{path}: needs a non-empty `nodes:` list")
    nodes = tuple(_node(raw, f"{path} node {i + 1}") for i, raw in enumerate(raw_nodes))
    for attr in ("name", "ip"):
        values = [getattr(n, attr) for n in nodes]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"{path}: duplicate node {attr} {', '.join(dupes)}")
    env_file = REPO / str(data.get("env_file", f"env/{name}.env"))
    vip = ""
    if data.get("vip"):
        try:
            vip = str(ipaddress.IPv4Address(str(data["vip"])))
        except ValueError as exc:
            raise ConfigError(f"{path}: vip: {exc}") from None
        if vip in [n.ip for n in nodes]:
            raise ConfigError(f"{path}: vip {vip} is also a node's ip; the VIP must be an unused address")
    boot_timeout = data.get("boot_timeout", 0)
    if not isinstance(boot_timeout, int) or boot_timeout < 0:
        raise ConfigError(f"{path}: boot_timeout {boot_timeout!r}: expected whole seconds, e.g. 900")
    return Lab(name, env_file, nodes, vip, boot_timeout)
