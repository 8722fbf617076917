"""testinfra verifiers of the VM lab. They run only inside `invoke lab.run` (which sets
GL_LAB_INVENTORY and passes --hosts/--ssh-config); anywhere else every test here is skipped."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gldeploy import settings as settings_lib

INVENTORY_ENV = "GL_LAB_INVENTORY"
NEEDS_REAL = "needs real k3s"


def _inventory_path() -> str:
    return os.environ.get(INVENTORY_ENV, "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/lab `lab`; skip it all when no lab inventory was given."""
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"VM lab tests: run by `invoke lab.run` (no {INVENTORY_ENV} given)")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)
            if not _inventory_path() or not config.getoption("hosts", None):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def inventory() -> dict[str, Any]:
    """The lab inventory written by lab.run: nodes, k3s mode, registry, report paths."""
    return json.loads(Path(_inventory_path()).read_text())


@pytest.fixture(scope="session")
def lab_settings(inventory: dict[str, Any]) -> settings_lib.Settings:
    """The env file's settings, as the deploy saw them (CIDRs, ports, namespace)."""
    return settings_lib.load(inventory["env_file"], environ={})


@pytest.fixture(scope="session")
def real_k3s(inventory: dict[str, Any]) -> bool:
    return inventory["k3s_mode"] == "real"


@pytest.fixture
def needs_real(real_k3s: bool) -> None:
    """Skip (never pass) Kubernetes-level checks under the k3s stand-in."""
    if not real_k3s:
        pytest.skip(NEEDS_REAL)


SERVER_ROLES = ("single", "first-server", "server")


@pytest.fixture
def node(host: Any, inventory: dict[str, Any]) -> dict[str, Any]:
    """This host's entry of the lab's node table (name, ip, role)."""
    address = host.backend.hostname
    for entry in inventory["nodes"]:
        if address in (entry["ip"], entry["name"]):
            return dict(entry)
    raise AssertionError(f"{address} is not a node of lab {inventory['lab']}")


@pytest.fixture
def server(node: dict[str, Any]) -> dict[str, Any]:
    """This host, when it runs a k3s server; agents skip (the check is about servers)."""
    if node["role"] not in SERVER_ROLES:
        pytest.skip(f"servers only ({node['name']} is an {node['role']})")
    return node


@pytest.fixture
def ha(inventory: dict[str, Any]) -> dict[str, Any]:
    """The HA facts of a cluster lab (VIP, LB port, interface); a single-node lab skips."""
    if not inventory.get("ha"):
        pytest.skip("HA labs only")
    return dict(inventory["ha"])
