"""The whole HA cluster sequence for real on this machine, without VMs.

Three k3s server stand-ins and one agent, each in its own network namespace (veth to a bridge in a
hub namespace, 10.77.0.0/24), run the phase scripts exactly as the plan runs them on hosts
(plan.build / plan.groups / plan.argv; the bundle from bundle.build_bundle, one copy per host, as
transport.put_dir ships it). The co-located load balancer is real: 02_init_control_plane installs
HAProxy and Keepalived on each server (started from pidfiles: there is no systemd here) and
Keepalived holds the VIP 10.77.0.100. Asserted: every join went through https://VIP:16443 (each
server stand-in's standin-joins.log), 06 passes on every server with equal config digests, and a
drifted config.yaml on one server is reported as a failed config-drift result naming it.

Keepalived's track script path (/etc/keepalived/gl-check-haproxy.sh) is per host: each namespace gets
/etc/netns/<ns>/keepalived -> <its sandbox root>/etc/keepalived, which `ip netns exec` bind-mounts
over /etc/keepalived for the commands it runs there (and the daemons they start).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy import bundle, plan, results, settings
from gldeploy.sequences import Role
from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import SMALL_HOST, stop_standin

pytestmark = pytest.mark.integration

MISSING = [t for t in ("haproxy", "keepalived", "ip", "openssl", "curl") if shutil.which(t) is None]
if os.geteuid() != 0:
    pytest.skip("the cluster test needs root (network namespaces)", allow_module_level=True)
if MISSING:
    pytest.skip(f"the cluster test needs {', '.join(MISSING)} (apt-get install -y haproxy keepalived)",
                allow_module_level=True)

PID = os.getpid()
HUB = f"cluster{PID}h"
NODES = {"10.77.0.11": f"cluster{PID}s1", "10.77.0.12": f"cluster{PID}s2", "10.77.0.13": f"cluster{PID}s3",
         "10.77.0.21": f"cluster{PID}a1"}
VIP, VERSION = "10.77.0.100", "v1.28.3+k3s2"
SERVERS = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
PHASES = ["02_init_control_plane", "03_join_worker_node", "06_health_check"]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Host:
    """One stand-in host: its namespace, sandbox root and bundle directory."""

    def __init__(self, work: Path, address: str) -> None:
        self.address, self.ns = address, NODES[address]
        self.root = work / self.ns / "root"
        self.bundle = work / self.ns / "bundle"
        (self.root / "etc/keepalived").mkdir(parents=True)
        self.root.chmod(0o755)

    def run(self, argv: list[str], bundle_dir: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """plan.argv(step) with the plan's bundle directory replaced by this host's copy."""
        argv = [a.replace(bundle_dir, str(self.bundle)) for a in argv]
        env = {"PATH": os.environ["PATH"], "HOME": "/root", "GL_BUNDLE_DIR": str(self.bundle),
               "GL_ROOT": str(self.root)}
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        for name in ("keepalived", "haproxy"):
            pidfile = self.root / f"run/gl-deploy/{name}.pid"
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        stop_standin(self.root)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Host]]:
    made: list[str] = []
    hosts = {a: Host(tmp_path, a) for a in NODES}
    try:
        for ns in (HUB, *NODES.values()):
            ip("netns", "add", ns)
            made.append(ns)
        ip("-n", HUB, "link", "add", "br0", "type", "bridge")
        ip("-n", HUB, "addr", "add", "10.77.0.2/24", "dev", "br0")
        ip("-n", HUB, "link", "set", "br0", "up")
        for i, (address, ns) in enumerate(NODES.items()):
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{i}", "netns", HUB)
            ip("-n", HUB, "link", "set", f"p{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "keepalived").symlink_to(hosts[address].root / "etc/keepalived")
        yield hosts
    finally:
        for host in hosts.values():
            host.stop()
        for ns in made:  # anything still running in our namespaces was started by this test
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def load(tmp_path: Path) -> settings.Settings:
    release = tmp_path / "release"
    make_release(release, VERSION)
    vrrp = tmp_path / "vrrp-password"
    vrrp.write_text("Cl7.pass\n")
    vrrp.chmod(0o600)
    overrides = {"TOPOLOGY": "ha", "CONTROL_PLANE_IPS": ",".join(SERVERS), "WORKER_IPS": "10.77.0.21",
                 "API_VIP": VIP, "LB_INTERFACE": "eth0", "LB_VRRP_PASSWORD_FILE": str(vrrp),
                 "K3S_ARTIFACTS_DIR": str(release), "K3S_VERSION": VERSION, "HEALTH_TIMEOUT": "20",
                 "WORK_DIR": "/var/lib/gl-deploy-cluster-test", **SMALL_HOST}
    return settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in overrides.items()])


def run_plan(s: settings.Settings, p: plan.Plan, hosts: dict[str, Host], staged: Path,
             phases: list[str]) -> list[results.PhaseResult]:
    """plan.execute's loop, with `ip netns exec` as the transport: steps group by group."""
    out: list[results.PhaseResult] = []
    for group in p.groups():
        for step in group:
            if step.phase not in phases and step.phase != plan.FETCH_TOKEN:
                continue
            host = hosts[step.host]
            if step.phase == plan.FETCH_TOKEN:  # the first server's token, staged 0600 for the joiners
                token = (host.root / plan.SERVER_TOKEN.lstrip("/")).read_text().strip()
                assert token.startswith("K10")
                for joiner in p.joiners():
                    dest = hosts[joiner].bundle / plan.TOKEN_IN_BUNDLE
                    dest.parent.mkdir(mode=0o700, exist_ok=True)
                    dest.write_text(token + "\n")
                    dest.chmod(0o600)
                continue
            started = time.monotonic()
            proc = host.run(p.argv(step), p.bundle_dir)
            res = results.from_script(step.phase, step.host, step.role, proc.returncode, proc.stdout, proc.stderr,
                                      time.monotonic() - started)
            assert res.ok, f"{step.phase} on {step.host} ({step.role}): rc {proc.returncode}\n{proc.stderr[-4000:]}"
            out.append(res)
    drift = plan.config_drift(out)
    return out + ([drift] if drift else [])


def check(res: results.PhaseResult, name: str) -> dict[str, str]:
    return next(c for c in res.checks if c["name"] == name)


def test_cluster_through_the_vip_health_on_every_server_and_drift(tmp_path: Path, cluster: dict[str, Host]) -> None:
    s = load(tmp_path)
    p = plan.build(s, PHASES)
    assert p.server_url == f"https://{VIP}:16443" and p.token_from == "10.77.0.11"
    staged = tmp_path / "staged"
    bundle.build_bundle(s, staged, p.phases, baked=False, staging=bundle.Staging(k3s_artifacts=True),
                        roles={st.role for st in p.steps})
    for host in cluster.values():  # transport.put_dir: one copy per host
        shutil.copytree(staged, host.bundle, symlinks=True)

    out = run_plan(s, p, cluster, staged, PHASES)
    by = {(r.phase, r.host): r for r in out}
    roles: dict[str, Role] = {"10.77.0.11": "first-server", "10.77.0.12": "server", "10.77.0.13": "server"}
    for server, role in roles.items():
        lb = check(by[("02_init_control_plane", server)], "load-balancer")
        assert lb["status"] == "pass" and f"node {server}" in lb["message"], lb
        assert by[("02_init_control_plane", server)].role == role
    # the VIP is held by exactly one server's keepalived
    holders = [a for a in SERVERS if f" {VIP}/" in subprocess.run(
        ["ip", "-n", NODES[a], "-4", "-o", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout]
    assert len(holders) == 1, holders

    # every join (servers 2 and 3, the agent) dialled the VIP and arrived on it
    joins = []
    for server in SERVERS:
        log = cluster[server].root / "var/lib/rancher/k3s/server/standin-joins.log"
        joins += [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    paths = {j["path"] for j in joins}
    assert {"/v1-k3s/server-bootstrap", "/v1-k3s/client-kubelet.crt"} <= paths, joins
    assert all(j["host"] == f"{VIP}:16443" for j in joins), joins
    assert sum(j["path"] == "/v1-k3s/server-bootstrap" and j["status"] == 200 for j in joins) >= 2
    for server in SERVERS[1:]:
        config = (cluster[server].root / "etc/rancher/k3s/config.yaml").read_text()
        assert f'server: "https://{VIP}:16443"' in config and "cluster-init" not in config
        assert f'node-ip: "{server}"' in config
    agent = (cluster["10.77.0.21"].root / "etc/rancher/k3s/config.yaml").read_text()
    assert f'server: "https://{VIP}:16443"' in agent

    # 06 on every server: own address, the VIP, equal digests; no drift result
    health = [r for r in out if r.phase == "06_health_check"]
    assert [r.host for r in health] == SERVERS
    for res in health:
        assert check(res, "api-own-address")["status"] == "pass"
        assert check(res, "api-vip")["message"] == f"https://{VIP}:16443/ping answered pong (through the load balancer)"
    digests = {check(r, "config-digest")["message"].split()[0] for r in health}
    assert len(digests) == 1 and out[-1].phase == "06_health_check" and out[-1].host != "cluster"

    # a drifted server: its config.yaml differs in a value every server must share
    config = cluster["10.77.0.13"].root / "etc/rancher/k3s/config.yaml"
    config.write_text(config.read_text().replace('service-cidr: "10.43.0.0/16"', 'service-cidr: "10.53.0.0/16"'))
    again = run_plan(s, p, cluster, staged, ["06_health_check"])
    drift = again[-1]
    assert (drift.host, drift.status, drift.checks[0]["name"]) == ("cluster", "fail", "config-drift")
    assert "servers 10.77.0.13 differ from 10.77.0.11, 10.77.0.12" in drift.message
    assert results.exit_code(again) == 1
