"""The cluster lab's drill helpers without VMs: the TLS /ping probe against a real local TLS server
(CA-verified, the address must be in the certificate), ARP parsing, the agent probe log, the
statistics and goals, and the cluster step list."""
from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy.lab import drill, nodes, rotation, runner, vip


def _ca_and_cert(tmp: Path, san: str) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, crt, ext = (tmp / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt", "ext"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
                    "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=k3s"], check=True, capture_output=True)
    ext.write_text(f"subjectAltName={san}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", crt, "-days", "1", "-extfile", ext], check=True, capture_output=True)
    return ca, crt, key


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"pong" if self.path == "/ping" else b"no"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    ca, crt, key = _ca_and_cert(tmp_path, "IP:127.0.0.1,DNS:server2")
    other_ca, _, _ = _ca_and_cert(tmp_path / "other" if (tmp_path / "other").mkdir() is None else tmp_path,
                                  "IP:127.0.0.1")
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ping)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], ca, other_ca
    server.shutdown()


def test_probe_answers_pong_and_names_the_server(tls_server: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_server
    answer = vip.ApiProbe("127.0.0.1", port, ca).ping(2.0)
    assert answer.ok and answer.names == ("server2",)


def test_probe_refuses_a_foreign_ca_and_a_closed_port(tls_server: tuple[int, Path, Path]) -> None:
    port, ca, other_ca = tls_server
    wrong = vip.ApiProbe("127.0.0.1", port, other_ca).ping(2.0)
    assert not wrong.ok and "SSL" in wrong.error
    closed = vip.ApiProbe("127.0.0.1", 1, ca).ping(0.5)
    assert not closed.ok and closed.error


def test_neighbour_mac_reads_the_arp_table(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text("IP address       HW type     Flags       HW address            Mask     Device\n"
                     "192.168.56.100   0x1         0x2         52:54:00:AA:bb:01     *        virbr-glpriv\n"
                     "192.168.56.12    0x1         0x0         00:00:00:00:00:00     *        virbr-glpriv\n")
    assert vip.neighbour_mac("192.168.56.100", table) == "52:54:00:aa:bb:01"
    assert vip.neighbour_mac("192.168.56.12", table) == ""  # incomplete entry
    assert vip.neighbour_mac("192.168.56.13", table) == ""


def test_agent_outages_longest_run_of_failures() -> None:
    log = "\n".join(["10.0 ok", "10.2 fail", "10.4 fail", "11.9 ok", "12.0 fail", "12.5 ok", "junk"])
    out = drill.agent_outages(log)
    assert out == {"probes": 6, "failed": 3, "longest_outage_s": 1.7, "answering_at_end": True}
    assert drill.agent_outages("1.0 ok\n2.0 fail\n")["answering_at_end"] is False
    assert drill.agent_outages("")["answering_at_end"] is False  # no probe ran: nothing proven


def test_summary_median_max_and_goal_per_fault_kind() -> None:
    result = drill.DrillResult([drill.Trial("keepalived-stopped", "a", "b", s, 0) for s in (0.5, 0.9, 4.0, 0.7, 0.8)]
                               + [drill.Trial("power-off", "a", "b", s, 3) for s in (3.5, 3.9, 3.2, 3.6, 4.1)])
    failover = result.summary()["failover"]
    assert failover["keepalived-stopped"] == {"n": 5, "median_s": 0.8, "max_s": 4.0, "min_s": 0.5,
                                              "goal_median_lt_s": 3.0, "goal_met": True}
    assert failover["power-off"]["median_s"] == 3.6 and failover["power-off"]["goal_met"] is False
    assert failover["haproxy-killed"] == {"n": 0, "goal_median_lt_s": 3.0, "goal_met": False}


def test_cluster_lab_runs_the_cluster_steps_and_single_keeps_its_own() -> None:
    assert runner.steps_for(nodes.load("single")) is runner.LAB_STEPS
    steps = runner.steps_for(nodes.load("cluster"))
    names = [n for n, _ in steps]
    assert len(names) == len(set(names))
    assert [n for n, _ in steps[:len(runner.BRING_UP) + 1]] == ["host set-up", "k3s artifacts",
                                                                *[n for n, _ in runner.BRING_UP[1:]]]
    order = ["deploy (1st)", "deploy (2nd, idempotency)", "join timing", "offline scripts (worker)", "testinfra",
             "failover drill", "health-check rotation", "lb node reset"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)


def test_remote_drill_scripts_take_values_as_arguments() -> None:
    for script in (drill.VRRP_STATE, drill.AGENT_PROBE, rotation.HAPROXY_LOG, drill.TRACK_TIMEOUTS):
        assert "{" not in script.replace("${", "").replace("{print", "")  # no Python formatting into code
    subprocess.run(["bash", "-n", "-c", drill.AGENT_PROBE], check=True)
    subprocess.run(["bash", "-n", "-c", drill.RESTORE], check=True)


def _bare_drill() -> drill.Drill:
    from types import SimpleNamespace
    d = drill.Drill.__new__(drill.Drill)
    d.lab = SimpleNamespace(agents=[], name="cluster")  # type: ignore[assignment]
    d.servers, d.down, d.result = [], None, drill.DrillResult()
    d.ssh_config, d.interface = Path("/dev/null"), "eth1"
    d.probe = SimpleNamespace(address="192.168.56.100")  # type: ignore[assignment]
    return d


def test_a_failed_trial_is_the_error_reported_not_the_clean_up_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab once reported 'ssh ... No route to host' from the clean-up instead of the trial's error."""
    d = _bare_drill()
    calls: list[str] = []

    def hold(servers: list[nodes.Node], script: str) -> None:
        calls.append(script)
        if script == drill.RELEASE_HAPROXY:
            raise drill.DeployError("ssh 192.168.56.12 sudo failed (exit 255): No route to host")

    def trial(kind: str) -> None:
        raise drill.DeployError("the trial's own failure")

    monkeypatch.setattr(d, "hold_haproxy", hold)
    monkeypatch.setattr(d, "trial", trial)
    monkeypatch.setattr(d, "track_timeouts", lambda: {})
    with pytest.raises(drill.DeployError, match="the trial's own failure"):
        d.run(1)
    assert calls == [drill.HOLD_HAPROXY, drill.RELEASE_HAPROXY]


def test_two_masters_right_after_a_failover_settle_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = (nodes.Node("server1", "server", 1, 1024, "192.168.56.11"),
            nodes.Node("server2", "server", 1, 1024, "192.168.56.12"))
    seen = iter([[a, b], [a, b], [b]])
    monkeypatch.setattr(drill, "holders", lambda *args: next(seen))
    monkeypatch.setattr(drill.time, "sleep", lambda s: None)
    assert _bare_drill().settled_holder([a, b]) == b
    monkeypatch.setattr(drill, "holders", lambda *args: [a, b])
    with pytest.raises(drill.DeployError, match="2 node\\(s\\) hold the API VIP"):
        _bare_drill().settled_holder([a, b], timeout=0.01)
