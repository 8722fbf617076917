"""Phase 03 (join): a first server installed by 02 runs for real on loopback (the stand-in); agents and
servers join it from their own sandbox roots through a "VIP" (another loopback address in its tls-san).

Refusals (wrong CA hash, wrong secret, agent token for a server, bad URL, unreachable server) must
leave the joining root empty. Kubernetes-level results stay skipped: needs real k3s.
"""
from __future__ import annotations

import hashlib
import json
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import (
    free_port,
    https_get,
    standin_pid,
    stop_standin,
)

VERSION = "v1.28.3+k3s2"
VIP = "127.0.0.100"
SERVERS = "127.0.0.1,127.0.0.2,127.0.0.3"
# flags `k3s agent` takes (docs.k3s.io/cli/agent); an agent's config.yaml must use no others
AGENT_FLAGS = {"server", "token", "token-file", "data-dir", "node-name", "node-ip", "node-external-ip",
               "node-label", "node-taint", "with-node-id", "private-registry", "resolv-conf", "kubelet-arg",
               "kube-proxy-arg", "flannel-iface", "selinux", "lb-server-port", "prefer-bundled-bin"}
BOOTSTRAP = "abcdef.0123456789abcdef"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Cluster:
    """The first server (02_init_control_plane under server_root) and a runner for phase 03."""

    def __init__(self, run_phase: Callable[..., Any], tmp_path: Path, release: Path) -> None:
        self.run_phase, self.tmp = run_phase, tmp_path
        self.port = free_port()
        self.url = f"https://{VIP}:{self.port}"
        self.server_root = tmp_path / "first"
        self.server_root.mkdir()
        self.base = {"K3S_ARTIFACTS_DIR": str(release), "K3S_VERSION": VERSION, "HEALTH_TIMEOUT": "30",
                     "TOPOLOGY": "ha", "CONTROL_PLANE_IPS": SERVERS, "API_VIP": VIP}
        first = run_phase("02_init_control_plane", "--role", "first-server", overrides={**self.base, "API_PORT": str(self.port)},
                          env={"GL_ROOT": str(self.server_root)})
        assert first.returncode == 0, first.stderr
        self.token = (self.server_root / "var/lib/rancher/k3s/server/token").read_text().strip()
        self.roots: list[Path] = [self.server_root]

    def root(self, name: str) -> Path:
        root = self.tmp / name
        root.mkdir(exist_ok=True)
        self.roots.append(root)
        return root

    def token_file(self, text: str, name: str = "join-token", file_mode: int = 0o600) -> Path:
        path = self.tmp / name
        path.write_text(text + "\n")
        path.chmod(file_mode)
        return path

    def join(self, root: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None,
             script: str = "03_join_worker_node") -> Any:
        # no HAProxy here: the "VIP" frontend (LB_PORT, hence API_SERVER_URL) is the first server itself
        return self.run_phase(script, *args, overrides={**self.base, "API_PORT": str(port or self.port),
                                                        "LB_PORT": str(self.port)},
                              env={"GL_ROOT": str(root), **(env or {})}, timeout=120)

    def joins(self) -> list[dict[str, Any]]:
        log = self.server_root / "var/lib/rancher/k3s/server/standin-joins.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def cluster(run_phase: Callable[..., Any], tmp_path: Path) -> Iterator[Cluster]:
    release = tmp_path / "release"
    make_release(release, VERSION)
    made = Cluster(run_phase, tmp_path, release)
    try:
        yield made
    finally:
        for root in made.roots:
            stop_standin(root)


def test_agent_joins_through_the_vip_and_the_server_records_it(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    result = cluster.join(agent, "--json", "--server-url", cluster.url,
                          "--token-file", str(cluster.token_file(cluster.token)))
    assert result.returncode == 0, result.stderr
    report = result.report
    assert (report["phase"], report["status"], report["changed"], report["k3s_mode"]) == \
        ("03_join_worker_node", "pass", True, "standin")
    assert "CA hash matches the token" in result.check("k3s join")["message"]
    assert result.check("k3s joined")["status"] == "pass"
    assert result.check("node-ready") == {"name": "node-ready", "status": "skipped", "fix": "",
                                          "message": "skipped: needs real k3s (node registered and Ready)"}
    secret = cluster.token.split("::server:")[1]
    assert secret not in result.stdout + result.stderr
    etc, data = agent / "etc/rancher/k3s", agent / "var/lib/rancher/k3s"
    config = yaml.safe_load((etc / "config.yaml").read_text())
    assert set(config) <= AGENT_FLAGS, set(config) - AGENT_FLAGS
    assert config["server"] == cluster.url and config["token-file"] == str(etc / "cluster-token")
    assert (etc / "cluster-token").read_text().strip() == cluster.token and mode(etc / "cluster-token") == 0o600
    assert mode(etc / "config.yaml") == 0o600
    unit = (agent / "etc/systemd/system/k3s.service").read_text()
    assert "ExecStart=/usr/local/bin/k3s agent" in unit and "k3s server" not in unit
    # k3s' install.sh: Type=exec for an agent (it sends no READY=1; a notify unit would stay activating)
    assert "Type=exec" in unit.splitlines() and "Type=notify" not in unit
    # the agent holds the cluster CA and a kubelet certificate the first server issued to it
    assert (data / "agent/server-ca.crt").read_bytes() == \
        (cluster.server_root / "var/lib/rancher/k3s/server/tls/server-ca.crt").read_bytes()
    assert b"BEGIN CERTIFICATE" in (data / "agent/client-kubelet.crt").read_bytes()
    assert mode(data / "agent/client-kubelet.key") == 0o600
    assert standin_pid(agent) is not None
    joined = [j for j in cluster.joins() if j["path"] == "/v1-k3s/client-kubelet.crt"]
    assert [(j["status"], j["user"], j["host"], j["local"].split(":")[0]) for j in joined] == \
        [(200, "node", f"{VIP}:{cluster.port}", VIP)]
    assert all(j["host"] == f"{VIP}:{cluster.port}" for j in cluster.joins())


def test_second_join_changes_nothing_and_restarts_nothing(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    args = ("--server-url", cluster.url, "--token-file", str(cluster.token_file(cluster.token)))
    assert cluster.join(agent, *args).returncode == 0
    pid = standin_pid(agent)
    config = agent / "etc/rancher/k3s/config.yaml"
    before = config.stat().st_mtime_ns
    again = cluster.join(agent, "--json", *args)
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False
    assert "no change: nothing restarted" in again.stderr
    assert standin_pid(agent) == pid is not None and config.stat().st_mtime_ns == before


def test_wrong_ca_hash_is_refused_and_nothing_is_installed(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    other = "K10" + "0" * 64 + "::server:" + cluster.token.split("::server:")[1]
    result = cluster.join(agent, "--json", "--server-url", cluster.url, "--token-file", str(cluster.token_file(other)))
    assert result.returncode == 1
    assert "token CA hash does not match the Cluster CA certificate hash: 000" in result.stderr
    assert f"{VIP}:{cluster.port} is not the cluster this token" in result.stderr
    assert result.check("k3s join")["status"] == "fail"
    assert tree(agent) == []
    assert not [j for j in cluster.joins() if j["path"] != "/v1-k3s/server-bootstrap"]  # no credentials sent


def test_wrong_secret_is_refused_with_k3s_message(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    wrong = cluster.token.split("::")[0] + "::server:not-the-secret"
    result = cluster.join(agent, "--server-url", cluster.url, "--token-file", str(cluster.token_file(wrong)))
    assert result.returncode == 1
    assert f"{cluster.url}/v1-k3s/config: 401 Unauthorized" in result.stderr
    assert "not-the-secret" not in result.stderr
    assert tree(agent) == []
    assert [j["status"] for j in cluster.joins() if j["path"] == "/v1-k3s/config"] == [401]


@pytest.mark.parametrize("token, reason", [
    (BOOTSTRAP, "agent-only bootstrap token"),
    ("K10{hash}::" + BOOTSTRAP, "agent-only bootstrap token"),
    ("K10{hash}::node:{secret}", "a token for user 'node' is an agent token; it cannot join a server"),
])
def test_agent_token_cannot_join_a_server(cluster: Cluster, token: str, reason: str) -> None:
    server = cluster.root("server2")
    ca_hash, secret = cluster.token[3:].split("::server:")
    result = cluster.join(server, "--role", "server", "--server-url", cluster.url,
                          "--token-file", str(cluster.token_file(token.format(hash=ca_hash, secret=secret))))
    assert result.returncode == 2
    assert reason in result.stderr and "/var/lib/rancher/k3s/server/token" in result.stderr
    assert tree(server) == []


@pytest.mark.parametrize("url", ["http://127.0.0.100:6443", "https://127.0.0.100", "https://127.0.0.100:99999",
                                 "127.0.0.100:6443", "https://127.0.0.100:6443/api", "https://:6443"])
def test_server_url_that_is_not_https_host_port_is_bad_input(cluster: Cluster, url: str) -> None:
    agent = cluster.root("agent")
    result = cluster.join(agent, "--server-url", url, "--token-file", str(cluster.token_file(cluster.token)))
    assert result.returncode == 2
    assert f"--server-url '{url}': expected https://<host>:<port>" in result.stderr
    assert tree(agent) == []


def test_unreachable_server_is_retried_a_bounded_number_of_times(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    dead = free_port()
    started = time.monotonic()
    result = cluster.join(agent, "--json", "--server-url", f"https://127.0.0.1:{dead}",
                          "--token-file", str(cluster.token_file(cluster.token)))
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    message = result.check("k3s join")["message"]
    assert f"the server to join at 127.0.0.1:{dead} did not answer" in message and "after 5 attempts" in message
    assert result.stderr.count("retrying in 2s") == 4
    assert tree(agent) == []


def test_token_on_the_command_line_is_warned_about_and_works(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    result = cluster.join(agent, "--server-url", cluster.url, "--token", cluster.token)
    assert result.returncode == 0, result.stderr
    assert "--token puts the join token on the command line, where other local users can read it" in result.stderr
    assert (agent / "etc/rancher/k3s/cluster-token").read_text().strip() == cluster.token


@pytest.mark.parametrize("setup, message", [
    ("world-readable", "lets others read a secret; run: chmod 600"),
    ("both", "--token and --token-file both given"),
    ("bare", "carries no cluster CA hash"),
    ("none", "no join token"),
])
def test_bad_token_input_exits_2(cluster: Cluster, setup: str, message: str) -> None:
    agent = cluster.root("agent")
    args = ["--server-url", cluster.url]
    env: dict[str, str] = {}
    if setup == "world-readable":
        args += ["--token-file", str(cluster.token_file(cluster.token, file_mode=0o644))]
    elif setup == "both":
        args += ["--token-file", str(cluster.token_file(cluster.token)), "--token", cluster.token]
    elif setup == "bare":
        env["K3S_TOKEN"] = cluster.token.split("::server:")[1]
    result = cluster.join(agent, *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert tree(agent) == []


def test_server_joins_with_the_server_token_through_the_vip(cluster: Cluster) -> None:
    server = cluster.root("server2")
    own_port = free_port()  # one loopback host: the second server listens on its own port
    result = cluster.join(server, "--json", "--role", "server", "--server-url", cluster.url,
                          env={"K3S_TOKEN": cluster.token}, port=own_port)
    assert result.returncode == 0, result.stderr
    assert "--token puts" not in result.stderr
    assert result.check("etcd-member")["message"] == "skipped: needs real k3s (etcd membership)"
    config = yaml.safe_load((server / "etc/rancher/k3s/config.yaml").read_text())
    assert config["server"] == cluster.url and "cluster-init" not in config
    assert VIP in config["tls-san"]
    unit = (server / "etc/systemd/system/k3s.service").read_text()
    assert "ExecStart=/usr/local/bin/k3s server" in unit and "Type=notify" in unit.splitlines()
    # the joined server serves the cluster's CA, so the token's CA hash holds for it too
    served = https_get(own_port, "/cacerts", server / "var/lib/rancher/k3s/server/tls/server-ca.crt")
    assert cluster.token.startswith(f"K10{hashlib.sha256(served).hexdigest()}::")
    boot = [j for j in cluster.joins() if j["path"] == "/v1-k3s/server-bootstrap"]
    assert boot and all((j["status"], j["user"], j["host"]) == (200, "server", f"{VIP}:{cluster.port}") for j in boot)


def test_second_server_via_02_joins_the_api_vip(cluster: Cluster) -> None:
    """02_init_control_plane --role server joins API_SERVER_URL (https://API_VIP:LB_PORT) with K3S_TOKEN_FILE."""
    server = cluster.root("server3")
    token = cluster.token_file(cluster.token, name="server-token")
    result = cluster.run_phase("02_init_control_plane", "--json", "--role", "server",
                               overrides={**cluster.base, "API_PORT": str(cluster.port), "LB_PORT": str(cluster.port),
                                          "K3S_TOKEN_FILE": str(token)},
                               env={"GL_ROOT": str(server)}, timeout=120)
    assert result.check("k3s join")["status"] == "pass", result.stderr
    assert result.check("k3s files")["status"] == "pass"
    # on this one loopback host the second server cannot listen on the first one's port: the phase
    # must see its own k3s gone rather than take the first server's /ping answer for its own
    assert result.returncode == 1
    assert "k3s exited after starting" in result.check("k3s joined")["message"]
    assert "cannot listen on port" in result.check("k3s joined")["message"]
    config = yaml.safe_load((server / "etc/rancher/k3s/config.yaml").read_text())
    assert config["server"] == f"https://{VIP}:{cluster.port}" and "cluster-init" not in config
