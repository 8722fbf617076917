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
