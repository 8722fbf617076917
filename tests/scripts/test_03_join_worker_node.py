"""Phase 03 (join): a first server installed by 02 runs for real on loopback (the stand-in); agents and
servers join it from their own sandbox roots through a "VIP" (another loopback address in its tls-san).

Refusals (wrong CA hash, wrong secret, agent token for a server, bad URL, unreachable server) must
leave the joining root empty. Kubernetes-level results stay skipped: needs real k3s.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
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
from tests.scripts.conftest import SCRIPTS, phase_runner

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


@pytest.fixture(scope="module")
def first_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One first server for the module's tests that are refused before any request reaches it."""
    tmp = tmp_path_factory.mktemp("first-server")
    bundle, root, release = tmp / "bundle", tmp / "root", tmp / "release"
    shutil.copytree(SCRIPTS, bundle)
    root.mkdir()
    make_release(release, VERSION)
    made = Cluster(phase_runner(bundle, root), tmp, release)
    try:
        yield made
    finally:
        for each in made.roots:
            stop_standin(each)


@pytest.fixture
def refusing_cluster(first_server: Cluster, run_phase: Callable[..., Any], tmp_path: Path) -> Iterator[Cluster]:
    """The shared first server seen from this test: its own bundle, roots and token files; the server's
    join log must not grow (a refused join sends no request to it)."""
    view = copy.copy(first_server)
    view.run_phase, view.tmp, view.roots = run_phase, tmp_path, []
    before = first_server.joins()
    try:
        yield view
    finally:
        for each in view.roots:
            stop_standin(each)
    assert first_server.joins() == before, "a refused join reached the first server"


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
    # k3s' install.sh names an agent's service k3s-agent: unit, env file and uninstall script follow
    units, bin_dir = agent / "etc/systemd/system", agent / "usr/local/bin"
    unit = (units / "k3s-agent.service").read_text()
    assert "ExecStart=/usr/local/bin/k3s agent" in unit and "k3s server" not in unit
    # k3s' install.sh: Type=exec for an agent (it sends no READY=1; a notify unit would stay activating)
    assert "Type=exec" in unit.splitlines() and "Type=notify" not in unit
    assert "EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env" in unit.splitlines()
    assert "k3s.service.env" not in unit
    env_file = units / "k3s-agent.service.env"
    assert mode(env_file) == 0o600 and "environment of k3s-agent.service" in env_file.read_text()
    assert mode(bin_dir / "k3s-agent-uninstall.sh") == 0o755 and mode(bin_dir / "k3s-killall.sh") == 0o755
    assert "SELF=" + str(bin_dir / "k3s-agent-uninstall.sh") in (bin_dir / "k3s-agent-uninstall.sh").read_text()
    for server_name in ("etc/systemd/system/k3s.service", "etc/systemd/system/k3s.service.env",
                        "usr/local/bin/k3s-uninstall.sh"):
        assert not (agent / server_name).exists(), server_name
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


def test_agent_under_the_k3s_service_of_an_older_version_is_moved_to_k3s_agent(cluster: Cluster) -> None:
    """Earlier versions of this tool installed an agent as k3s.service + k3s-uninstall.sh: the join
    stops, disables and removes them (and says so), installs k3s-agent.service, and a rerun is quiet."""
    agent = cluster.root("agent")
    args = ("--server-url", cluster.url, "--token-file", str(cluster.token_file(cluster.token)))
    assert cluster.join(agent, *args).returncode == 0
    units, bin_dir = agent / "etc/systemd/system", agent / "usr/local/bin"
    # what the older version left: the same agent under k3s' server names
    old_unit = (units / "k3s-agent.service").read_text().replace("k3s-agent.service.env", "k3s.service.env")
    (units / "k3s-agent.service").unlink()
    (units / "k3s.service").write_text(old_unit)
    (units / "k3s-agent.service.env").rename(units / "k3s.service.env")
    (bin_dir / "k3s-agent-uninstall.sh").rename(bin_dir / "k3s-uninstall.sh")
    again = cluster.join(agent, "--json", *args)
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is True
    assert "k3s.service of an earlier install" in again.stderr and "k3s-agent.service" in again.stderr
    files = again.check("k3s files")["message"]
    for removed in ("/etc/systemd/system/k3s.service (removed)", "/etc/systemd/system/k3s.service.env (removed)",
                    "/usr/local/bin/k3s-uninstall.sh (removed)"):
        assert removed in files, files
    for gone in ("k3s.service", "k3s.service.env"):
        assert not (units / gone).exists(), gone
    assert not (bin_dir / "k3s-uninstall.sh").exists()
    assert (units / "k3s-agent.service").is_file() and mode(units / "k3s-agent.service.env") == 0o600
    assert mode(bin_dir / "k3s-agent-uninstall.sh") == 0o755
    third = cluster.join(agent, "--json", *args)
    assert third.returncode == 0 and third.report["changed"] is False, third.stderr
    assert "earlier install" not in third.stderr


@pytest.mark.parametrize("unit, reason", [
    ("[Unit]\nDescription=Lightweight Kubernetes\n[Service]\nType=notify\nExecStart=/usr/local/bin/k3s server\n",
     "k3s.service was not installed by GL-Native Deploy"),
    ("[Unit]\nDescription=Lightweight Kubernetes (managed by GL-Native Deploy)\n[Service]\nType=notify\n"
     "ExecStart=/usr/local/bin/k3s server\n", "k3s.service runs a k3s server"),
])
def test_agent_join_refuses_a_server_service_it_cannot_retire(cluster: Cluster, unit: str, reason: str) -> None:
    """A k3s.service of another installer, or a server of this tool (an etcd member), is not silently
    replaced by an agent: refused with the way out, nothing installed."""
    agent = cluster.root("agent")
    units = agent / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "k3s.service").write_text(unit)
    result = cluster.join(agent, "--json", "--server-url", cluster.url,
                          "--token-file", str(cluster.token_file(cluster.token)))
    assert result.returncode == 1, result.stderr
    check = result.check("k3s service name")
    assert check["status"] == "fail" and reason in check["message"]
    assert "k3s-uninstall.sh" in check["fix"]
    assert tree(agent) == ["etc", "etc/systemd", "etc/systemd/system", "etc/systemd/system/k3s.service"]


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
def test_agent_token_cannot_join_a_server(refusing_cluster: Cluster, token: str, reason: str) -> None:
    cluster = refusing_cluster
    server = cluster.root("server2")
    ca_hash, secret = cluster.token[3:].split("::server:")
    result = cluster.join(server, "--role", "server", "--server-url", cluster.url,
                          "--token-file", str(cluster.token_file(token.format(hash=ca_hash, secret=secret))))
    assert result.returncode == 2
    assert reason in result.stderr and "/var/lib/rancher/k3s/server/token" in result.stderr
    assert tree(server) == []


@pytest.mark.parametrize("url", ["http://127.0.0.100:6443", "https://127.0.0.100", "https://127.0.0.100:99999",
                                 "127.0.0.100:6443", "https://127.0.0.100:6443/api", "https://:6443"])
def test_server_url_that_is_not_https_host_port_is_bad_input(refusing_cluster: Cluster, url: str) -> None:
    cluster = refusing_cluster
    agent = cluster.root("agent")
    result = cluster.join(agent, "--server-url", url, "--token-file", str(cluster.token_file(cluster.token)))
    assert result.returncode == 2
    assert f"--server-url '{url}': expected https://<host>:<port>" in result.stderr
    assert tree(agent) == []


def test_unreachable_server_is_retried_a_bounded_number_of_times(refusing_cluster: Cluster) -> None:
    cluster = refusing_cluster
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


CURL_SHIM = """#!/bin/bash
# fails the verified /cacerts request (--cacert, no -K) with exit $CODE, $TIMES times; else the real curl
state={state}
if [[ " $* " == *" --cacert "* && " $* " != *" -K "* ]] && (( $(cat "$state" 2>/dev/null || echo 0) < {times} )); then
  echo $(( $(cat "$state" 2>/dev/null || echo 0) + 1 )) >"$state"
  echo "curl: ({code}) {message}" >&2
  exit {code}
fi
exec {curl} "$@"
"""


def curl_shim(tmp: Path, code: int, message: str, times: int) -> dict[str, str]:
    shim = tmp / "curl-shim"
    shim.mkdir()
    (shim / "curl").write_text(CURL_SHIM.format(state=tmp / "curl-state", times=times, code=code, message=message,
                                                curl=shutil.which("curl")))
    (shim / "curl").chmod(0o755)
    return {"PATH": f"{shim}:{os.environ['PATH']}"}


def test_a_connection_reset_mid_handshake_is_retried(cluster: Cluster) -> None:
    """A server restarting behind the VIP resets the TLS handshake (curl 35, seen in the cluster lab):
    a transient failure, retried within the bound, not a certificate verdict."""
    agent = cluster.root("agent")
    env = curl_shim(cluster.tmp, 35, "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection", times=2)
    result = cluster.join(agent, "--json", "--server-url", cluster.url, "--token-file",
                          str(cluster.token_file(cluster.token)), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("SSL_ERROR_SYSCALL") == 2 and "(attempt 2/5; retrying in 2s)" in result.stderr


def test_a_certificate_that_does_not_verify_is_not_retried(cluster: Cluster) -> None:
    agent = cluster.root("agent")
    env = curl_shim(cluster.tmp, 60, "SSL certificate problem: unable to get local issuer certificate", times=99)
    result = cluster.join(agent, "--json", "--server-url", cluster.url, "--token-file",
                          str(cluster.token_file(cluster.token)), env=env)
    assert result.returncode == 1
    assert "CA cert validation failed" in result.check("k3s join")["message"]
    assert "retrying" not in result.stderr and (cluster.tmp / "curl-state").read_text().strip() == "1"
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
def test_bad_token_input_exits_2(refusing_cluster: Cluster, setup: str, message: str) -> None:
    cluster = refusing_cluster
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
    assert "EnvironmentFile=-/etc/systemd/system/k3s.service.env" in unit.splitlines()
    assert mode(server / "etc/systemd/system/k3s.service.env") == 0o600
    assert mode(server / "usr/local/bin/k3s-uninstall.sh") == 0o755
    for agent_name in ("etc/systemd/system/k3s-agent.service", "etc/systemd/system/k3s-agent.service.env",
                       "usr/local/bin/k3s-agent-uninstall.sh"):
        assert not (server / agent_name).exists(), agent_name
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
