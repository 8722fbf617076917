"""The rendered HAProxy + Keepalived configurations, run for real in network namespaces.

Topology (names unique per run: vip<pid>h, vip<pid>a, vip<pid>b):

    hub netns: bridge br0 + the client 192.0.2.2 (probes https://VIP:16443/ping)
      |-- node a: eth0 192.0.2.11, prio 150, TLS /ping server on :6443, HAProxy *:16443, keepalived
      `-- node b: eth0 192.0.2.12, prio 140, the same

This is the co-located placement (LB nodes = k3s servers, HAProxy on API_PORT + 10000). The
failover figures (fault -> first good /ping through the VIP) are printed; run with -s to see them.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from gldeploy import loadbalancer as lb

pytestmark = pytest.mark.integration

MISSING = [tool for tool in ("haproxy", "keepalived", "ip", "openssl") if shutil.which(tool) is None]
if os.geteuid() != 0:
    pytest.skip("VIP tests need root (network namespaces)", allow_module_level=True)
if MISSING:
    pytest.skip(f"VIP tests need {', '.join(MISSING)} (apt-get install -y haproxy keepalived)",
                allow_module_level=True)

PID = os.getpid()
HUB, NODES = f"vip{PID}h", {"a": f"vip{PID}a", "b": f"vip{PID}b"}
ADDR = {"a": "192.0.2.11", "b": "192.0.2.12"}
VIP, CLIENT, PORT = "192.0.2.100", "192.0.2.2", 16443

TLS_SERVER = r"""
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"pong" if self.path == "/ping" else b"404"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # HAProxy's health checks close TLS sessions early
srv = S(("0.0.0.0", 6443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""

# one line per probe: "<monotonic start> <monotonic end> ok|fail"
POLLER = r"""
import socket, ssl, sys, time
vip, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
while True:
    start = time.monotonic()
    try:
        with socket.create_connection((vip, port), timeout=0.3) as raw:
            with ctx.wrap_socket(raw) as s:
                s.settimeout(0.5)
                s.sendall(b"GET /ping HTTP/1.0\r\nHost: vip\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
        ok = data.startswith(b"HTTP/1.0 200") and data.endswith(b"pong")
    except OSError:
        ok = False
    print(f"{start:.3f} {time.monotonic():.3f} {'ok' if ok else 'fail'}", flush=True)
    time.sleep(0.05)
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def holds_vip(node: str) -> bool:
    out = subprocess.run(["ip", "-n", NODES[node], "-4", "-o", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True, timeout=10).stdout
    return f" {VIP}/" in out


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> float:
    """Seconds until cond() held (polled every 20 ms); fails the test after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The namespaces, the bridge and a TLS /ping server on :6443 in each node; all gone afterwards."""
    work = tmp_path_factory.mktemp("vip")
    made: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (HUB, *NODES.values()):
            ip("netns", "add", ns)
            made.append(ns)
        ip("-n", HUB, "link", "add", "br0", "type", "bridge")
        ip("-n", HUB, "addr", "add", f"{CLIENT}/24", "dev", "br0")
        ip("-n", HUB, "link", "set", "br0", "up")
        for name, ns in NODES.items():
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{name}", "netns", HUB)
            ip("-n", HUB, "link", "set", f"p{name}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{ADDR[name]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        key, cert = work / "tls.key", work / "tls.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=k3s", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                       timeout=60)
        for ns in NODES.values():
            procs.append(subprocess.Popen(in_ns(ns, sys.executable, "-c", TLS_SERVER, str(cert), str(key)),
                                          stdin=subprocess.DEVNULL))
        yield work
    finally:
        for proc in procs:
            stop(proc)
        for d in Path("/run").glob(f"vip{PID}-*"):
            shutil.rmtree(d, ignore_errors=True)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@dataclasses.dataclass
class Cluster:
    cfg: lb.LBConfig
    work: Path
    haproxy: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    keepalived: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    poller: subprocess.Popen[str] | None = None

    def files(self, node: str) -> Path:
        return self.work / node

    def start_haproxy(self, node: str) -> None:
        with open(self.files(node) / "haproxy.log", "ab") as log:  # the child keeps its own copy
            self.haproxy[node] = subprocess.Popen(
                in_ns(NODES[node], "haproxy", "-db", "-f", str(self.files(node) / lb.HAPROXY_CFG)),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def start_keepalived(self, node: str) -> None:
        d = self.files(node)
        with open(d / "keepalived.log", "ab") as log:
            self.keepalived[node] = subprocess.Popen(
                in_ns(NODES[node], "keepalived", "-n", "-l", "-D", "-P", "-f", str(d / lb.KEEPALIVED_CONF),
                      "-p", str(d / "keepalived.pid"), "-r", str(d / "vrrp.pid")),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def start_poller(self) -> None:
        self.poller = subprocess.Popen(in_ns(HUB, sys.executable, "-c", POLLER, VIP, str(PORT)),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    def first_ok(self, timeout: float = 5) -> None:
        assert self.poller is not None and self.poller.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poller.stdout.readline().split()[2] == "ok":
                return
        pytest.fail(f"no good /ping through the VIP within {timeout}s")

    def probes_until_ok(self, after: float, timeout: float = 10) -> list[tuple[float, float, bool]]:
        """Probe lines up to the first ok probe that started after `after` and after every failure."""
        assert self.poller is not None and self.poller.stdout is not None
        out: list[tuple[float, float, bool]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            start, end, status = self.poller.stdout.readline().split()
            out.append((float(start), float(end), status == "ok"))
            if float(start) > after and status == "ok" and any(not ok for _, _, ok in out if _ >= after):
                return out
            if float(start) > after + 1.0 and status == "ok" and not any(not ok for _, _, ok in out if _ >= after):
                return out  # no failed probe at all in a second: no visible outage
        pytest.fail(f"no good /ping through the VIP within {timeout}s of the fault")

    def failover(self, fault_at: float) -> float:
        """Seconds from the fault to the end of the first good /ping after the outage."""
        probes = self.probes_until_ok(fault_at)
        failed = [p for p in probes if p[0] >= fault_at and not p[2]]
        if not failed:
            return 0.0
        first_ok = next(p for p in probes if p[0] > failed[-1][0] and p[2])
        return first_ok[1] - fault_at

    def stop_all(self) -> None:
        procs = [p for p in (self.poller, *self.keepalived.values(), *self.haproxy.values()) if p]
        for proc in procs:  # signal all first: keepalived takes a moment to leave
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            stop(proc)


def make_cfg(check_script: str, **changes: object) -> lb.LBConfig:
    cfg = lb.LBConfig(vip=VIP, prefix=24, port=PORT, nodes=(lb.LBNode(ADDR["a"], 150), lb.LBNode(ADDR["b"], 140)),
                      servers=(ADDR["a"], ADDR["b"]), api_port=6443, router_id=51, auth_pass="Gl-vip.1",
                      interface="eth0", check_script=check_script)
    return lb.validate(dataclasses.replace(cfg, **changes))  # type: ignore[arg-type]


def root_only_dir(tmp_path: Path) -> Path:
    """A directory for the track script: keepalived's script security refuses scripts in (or
    under) directories others can write to, such as /tmp. Removed by the fixtures."""
    script_dir = Path(f"/run/vip{PID}-{tmp_path.name}")
    script_dir.mkdir(mode=0o755, exist_ok=True)
    return script_dir


@pytest.fixture
def cluster(net: Path, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """cluster(**LBConfig changes): HAProxy + keepalived on a and b, the VIP on a, the poller running."""
    made: list[Cluster] = []

    def start(**changes: object) -> Cluster:
        script_dir = root_only_dir(tmp_path)
        c = Cluster(make_cfg(str(script_dir / lb.CHECK_NAME), **changes), tmp_path)
        made.append(c)
        for node in NODES:
            lb.write_node_files(c.cfg, ADDR[node], c.files(node))
            shutil.copy2(c.files(node) / lb.CHECK_NAME, script_dir / lb.CHECK_NAME)
            c.start_haproxy(node)
        for node in NODES:
            wait_for(f"haproxy in {node}", lambda n=node: subprocess.run(
                in_ns(NODES[n], "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{PORT}"),
                capture_output=True).returncode == 0, 5)
            c.start_keepalived(node)
        wait_for("the VIP on node a (priority 150)", lambda: holds_vip("a"), 20)  # setup: an election takes ~3.5 s idle, longer on a loaded host
        assert not holds_vip("b")
        c.start_poller()
        c.first_ok()
        return c

    try:
        yield start
    finally:
        for c in made:
            c.stop_all()
        for d in Path("/run").glob(f"vip{PID}-*"):
            shutil.rmtree(d, ignore_errors=True)


def report(what: str, seconds: float) -> None:
    print(f"\nVIP failover, {what}: {seconds:.2f} s (fault -> first good /ping through the VIP)")


def test_rendered_configs_pass_haproxy_and_keepalived_checks(net: Path, tmp_path: Path) -> None:
    script_dir = root_only_dir(tmp_path)  # keepalived -t fails when the track script is missing
    cfg = make_cfg(str(script_dir / lb.CHECK_NAME))
    for node in NODES:
        lb.write_node_files(cfg, ADDR[node], tmp_path / node)
        shutil.copy2(tmp_path / node / lb.CHECK_NAME, script_dir / lb.CHECK_NAME)
        haproxy = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / node / lb.HAPROXY_CFG)],
                                 capture_output=True, text=True, timeout=30)
        assert haproxy.returncode == 0, haproxy.stdout + haproxy.stderr
        # keepalived -t must run where the interface exists: inside the node's namespace
        ka = subprocess.run(in_ns(NODES[node], "keepalived", "-t", "-l", "-f",
                                  str(tmp_path / node / lb.KEEPALIVED_CONF)),
                            capture_output=True, text=True, timeout=30)
        assert ka.returncode == 0, ka.stdout + ka.stderr
    # and the check catches a broken file: the same test in the node lacking the interface fails
    broken = tmp_path / "broken.conf"
    broken.write_text((tmp_path / "a" / lb.KEEPALIVED_CONF).read_text().replace("dev eth0", "dev nosuch0")
                      .replace("interface eth0", "interface nosuch0"))
    ka = subprocess.run(in_ns(NODES["a"], "keepalived", "-t", "-l", "-f", str(broken)),
                        capture_output=True, text=True, timeout=30)
    assert ka.returncode != 0


def test_holder_keepalived_stops_then_comes_back_without_preempt(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    fault = time.monotonic()
    stop(c.keepalived["a"])  # SIGTERM: a gives the VIP up (priority-0 advert)
    seconds = c.failover(fault)
    assert holds_vip("b") and not holds_vip("a")
    report("holder's keepalived stopped", seconds)
    assert seconds < 3
    # nopreempt (the default): a comes back with the higher priority but leaves the VIP on b
    c.start_keepalived("a")
    time.sleep(3 * c.cfg.advert_int + 1.5)  # longer than a's master-down timer
    assert holds_vip("b") and not holds_vip("a")


def test_holder_haproxy_dies_track_script_moves_vip(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    fault = time.monotonic()
    stop(c.haproxy["a"], signal.SIGKILL)
    seconds = c.failover(fault)
    assert holds_vip("b") and not holds_vip("a")
    report("holder's HAProxy killed (track script)", seconds)
    assert seconds < 4
    # a's keepalived is still running, in FAULT state: HAProxy back -> a healthy backup again
    c.start_haproxy("a")
    time.sleep(3)
    assert holds_vip("b") and not holds_vip("a")
    log = (c.files("a") / "keepalived.log").read_text()
    assert "Entering FAULT STATE" in log and "Entering BACKUP STATE" in log.split("Entering FAULT STATE")[-1]


def test_preempt_gives_the_vip_back_to_the_higher_priority(cluster: Callable[..., Cluster]) -> None:
    c = cluster(preempt=True)
    stop(c.keepalived["a"])
    wait_for("the VIP on b", lambda: holds_vip("b"), 3)
    c.start_keepalived("a")
    took = wait_for("the VIP back on a (preempt)", lambda: holds_vip("a"), 6)
    assert not holds_vip("b")
    print(f"\npreempt: a (150) took the VIP back from b (140) {took:.2f} s after its keepalived started")
    c.first_ok()


def test_holder_cut_off_like_a_power_failure(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    fault = time.monotonic()
    ip("-n", HUB, "link", "set", "pa", "down")  # a sends nothing any more: no priority-0 advert
    try:
        seconds = c.failover(fault)
        assert holds_vip("b")
        report("holder cut off (no goodbye advert; 3 x advert_int + skew)", seconds)
        assert seconds < 3 * c.cfg.advert_int + 2
    finally:
        ip("-n", HUB, "link", "set", "pa", "up")


def test_wrong_vrrp_password_is_not_a_peer(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    """Authentication is effective: b with another password ignores a's adverts and takes the VIP
    too (both MASTER), which is what an unauthenticated intruder on the segment cannot cause."""
    c = cluster()
    other = dataclasses.replace(c.cfg, auth_pass="other-pw")
    stop(c.keepalived["b"])
    (c.files("b") / lb.KEEPALIVED_CONF).write_text(lb.render_keepalived(other, ADDR["b"]))
    c.start_keepalived("b")
    wait_for("b to ignore a's adverts (wrong password) and claim the VIP", lambda: holds_vip("b"), 6)
    assert holds_vip("a")
