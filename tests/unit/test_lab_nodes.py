"""Lab node tables: the shipped ones load and match their env files; bad tables fail clearly."""
from __future__ import annotations

from pathlib import Path

import pytest

from gldeploy import settings
from gldeploy.errors import ConfigError
from gldeploy.lab import nodes


def test_single_lab_matches_env_file() -> None:
    lab = nodes.load("single")
    assert lab.names == ["single"]
    node = lab.node("single")
    assert (node.role, node.ip, node.cpus) == ("single", "192.168.56.10", 1)
    assert 512 <= node.memory <= 2048
    env = settings.load(lab.env_file, environ={})
    assert list(env.control_plane_ips) == lab.ips


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "x.yml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("body, message", [
    ("nodes: []\n", "non-empty"),
    ("nodes:\n  - {name: a, role: boss, ip: 10.0.0.1}\n", "role 'boss'"),
    ("nodes:\n  - {name: A_1, role: single, ip: 10.0.0.1}\n", "lowercase host name"),
    ("nodes:\n  - {name: a, role: single, ip: 10.0.0.300}\n", "10.0.0.300"),
    ("nodes:\n  - {name: a, role: single}\n", "missing ip"),
    ("nodes:\n  - {name: a, role: server, ip: 10.0.0.1}\n  - {name: b, role: server, ip: 10.0.0.1}\n",
     "duplicate node ip 10.0.0.1"),
    ("nodes:\n  - {name: a, role: single, ip: 10.0.0.1, memory: 64}\n", "memory >= 256"),
])
def test_bad_tables_are_config_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        nodes.load("x", _write(tmp_path, body))


def test_unknown_lab_lists_the_known_ones(tmp_path: Path) -> None:
    _write(tmp_path, "nodes:\n  - {name: a, role: single, ip: 10.0.0.1}\n")
    with pytest.raises(ConfigError, match="no lab 'nope'.*labs: x"):
        nodes.load("nope", tmp_path)


def test_unknown_node_name() -> None:
    with pytest.raises(ConfigError, match="no node 'other'"):
        nodes.load("single").node("other")


def test_cluster_lab_matches_env_file() -> None:
    """3 servers + 2 workers; the table's roles are the ones the deploy plan gives each address, and
    the table's VIP is the env file's API_VIP (the drill probes what the deploy configured)."""
    from gldeploy import plan
    lab = nodes.load("cluster")
    env = settings.load(lab.env_file, environ={})
    assert env.topology == "ha"
    assert [n.ip for n in lab.servers] == list(env.control_plane_ips)
    assert [n.ip for n in lab.agents] == list(env.worker_ips)
    assert len(lab.servers) == 3 and len(lab.agents) == 2
    assert [(n.ip, n.role) for n in lab.nodes] == [(n.ip, plan.role_of(env, n.ip)) for n in lab.nodes]
    assert lab.vip == env.api_vip
    assert env.lb_interface == "eth1"  # the Vagrant private network is the VMs' second NIC


def test_vip_must_be_unused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vip 10.0.0.1 is also a node's ip"):
        nodes.load("x", _write(tmp_path, "vip: 10.0.0.1\nnodes:\n  - {name: a, role: server, ip: 10.0.0.1}\n"))


def test_a_table_may_raise_the_boot_bound(tmp_path: Path) -> None:
    assert nodes.load("single").boot_timeout == 0  # lab.yml's bound applies
    assert nodes.load("cluster").boot_timeout >= 900  # five VMs under TCG
    with pytest.raises(ConfigError, match="boot_timeout 'soon'"):
        nodes.load("x", _write(tmp_path, "boot_timeout: soon\nnodes:\n  - {name: a, role: single, ip: 10.0.0.1}\n"))
