"""Phase 04: health of k3s and the backend, against the k3s stand-in running in a sandbox root.

Under the stand-in every Kubernetes-level check must be `skipped` ("needs real k3s"), never passed.
"""
from __future__ import annotations

import http.server
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import fake_real_k3s_running, free_port
from tests.scripts import k3s_doubles
from tests.scripts.k3s_doubles import install_standin

PHASE = "04_health_check"
PHASES = (PHASE, "06_health_check")  # one implementation (lib/health.sh), two entry points
K8S_CHECKS = ["node-ready", "system-pods", "backend-rollout", "backend-healthz"]
ALL_CHECKS = ["k3s-installed", "k3s-service", "api-ping", "api-cert-expiry", "token-mode",
              "kubeconfig-mode", *K8S_CHECKS]
Runner = Callable[..., Any]  # conftest.run_phase -> PhaseRun


@pytest.fixture
def running_standin(sandbox_root: Path, tmp_path: Path) -> Iterator[int]:
    """The stand-in k3s server running from the sandbox, tracked by lib/k3s.sh's pidfile; yields API port."""
    with k3s_doubles.running_standin(sandbox_root, tmp_path) as port:
        yield port


@pytest.fixture(params=PHASES)
def phase(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def assert_report_shape(run: Any, phase: str = PHASE) -> None:
    report = run.report
    assert report["phase"] == phase and report["changed"] is False
    assert [c["name"] for c in report["checks"]] == ALL_CHECKS
    assert run.returncode == {"pass": 0, "skipped": 0, "warn": 3, "fail": 1}[report["status"]]


def test_nothing_installed_fails_clearly(run_phase: Runner, sandbox_root: Path, phase: str) -> None:
    run = run_phase(phase, "--json")
    assert_report_shape(run, phase)
    assert run.returncode == 1
    assert run.report["k3s_mode"] == "none" and run.report["status"] == "fail"
    check = run.check("k3s-installed")
    assert check["status"] == "fail" and "k3s is not installed" in check["message"]
    assert "02_install_k3s" in check["fix"]
    for name in ALL_CHECKS[1:]:
        assert run.check(name)["status"] == "skipped"
    assert "k3s is not installed" in run.stderr
    assert list(sandbox_root.iterdir()) == []


def test_standin_running_passes_host_checks_and_skips_kubernetes(
        run_phase: Runner, running_standin: int, phase: str) -> None:
    start = time.monotonic()
    run = run_phase(phase, "--json", overrides={"API_PORT": str(running_standin)})
    assert time.monotonic() - start < 10
    assert_report_shape(run, phase)
    assert run.report["k3s_mode"] == "standin"
    for name in ("k3s-installed", "k3s-service", "api-ping", "api-cert-expiry", "token-mode", "kubeconfig-mode"):
        assert run.check(name)["status"] == "pass", run.check(name)
    assert "(stand-in)" in run.check("k3s-installed")["message"]
    assert "pong" in run.check("api-ping")["message"]
    assert re.search(r"valid for 36[45] more days", run.check("api-cert-expiry")["message"])
    for name in K8S_CHECKS:
        check = run.check(name)
        assert check["status"] == "skipped" and check["message"] == "needs real k3s", check
    assert run.report["status"] == "pass" and run.returncode == 0
    assert "needs real k3s" in run.stderr


def test_world_readable_kubeconfig_fails(run_phase: Runner, running_standin: int, sandbox_root: Path) -> None:
    kubeconfig = sandbox_root / "etc/rancher/k3s/k3s.yaml"
    kubeconfig.chmod(0o644)
    run = run_phase(PHASE, "--json", overrides={"API_PORT": str(running_standin)})
    check = run.check("kubeconfig-mode")
    assert check["status"] == "fail" and "644" in check["message"]
    assert f"chmod 600 '{kubeconfig}'" in check["fix"]
    assert run.check("token-mode")["status"] == "pass"
    assert run.returncode == 1


def test_installed_but_stopped_fails_fast(run_phase: Runner, sandbox_root: Path, tmp_path: Path) -> None:
    port = free_port()
    install_standin(sandbox_root, tmp_path, port)
    start = time.monotonic()
    run = run_phase(PHASE, "--json", overrides={"API_PORT": str(port), "HEALTH_TIMEOUT": "30"})
    assert time.monotonic() - start < 10, "no wait for an API whose service is not running"
    assert_report_shape(run)
    assert run.report["k3s_mode"] == "standin"
    assert run.check("k3s-service")["status"] == "fail"
    assert run.check("api-ping")["status"] == "fail" and str(port) in run.check("api-ping")["message"]
    assert run.check("token-mode")["status"] == "fail"  # never started: no token yet
    for name in K8S_CHECKS:
        assert run.check(name) == {"name": name, "status": "skipped", "message": "needs real k3s", "fix": ""}
    assert run.returncode == 1


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[Callable[[int], int]]:
    """Start a TLS /ping server whose certificate lasts `days`; returns its port."""
    with k3s_doubles.tls_ping_servers(tmp_path) as servers:
        yield lambda days: k3s_doubles.start_tls_ping(servers, tmp_path, days)


@pytest.mark.parametrize("days, status", [(3, "fail"), (20, "warn"), (400, "pass")],
                         ids=["expires in days: fail", "expires in weeks: warn", "a year left: pass"])
def test_certificate_expiry_thresholds(run_phase: Runner, tls_api: Callable[[int], int], sandbox_root: Path,
                                       tmp_path: Path, days: int, status: str) -> None:
    port = tls_api(days)
    install_standin(sandbox_root, tmp_path, port)
    run = run_phase(PHASE, "--json", overrides={"API_PORT": str(port), "HEALTH_TIMEOUT": "5"})
    assert run.check("api-ping")["status"] == "pass"
    check = run.check("api-cert-expiry")
    assert check["status"] == status, check
    assert re.search(rf"\b({days}|{days - 1}) (more )?days", check["message"]), check
    if status != "pass":
        assert "k3s certificate rotate" in check["fix"]


def test_human_output_only_without_json(run_phase: Runner) -> None:
    run = run_phase(PHASE)
    assert run.stdout == "" and run.returncode == 1
    assert "STATUS" in run.stderr and "result: fail" in run.stderr


def test_unknown_flag_exits_2(run_phase: Runner, sandbox_root: Path) -> None:
    run = run_phase(PHASE, "--verbose")
    assert run.returncode == 2 and "--verbose" in run.stderr and run.stdout == ""


def test_after_install_with_02_standin_reports_skipped_not_passed(
        run_phase: Runner, sandbox_root: Path, tmp_path: Path) -> None:
    """The product path: 02 installs the stand-in release into the sandbox and starts it, then 04."""
    release = tmp_path / "release"
    make_release(release, "v1.28.3+k3s2")
    settings = {"K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(free_port()), "HEALTH_TIMEOUT": "20"}
    try:
        install = run_phase("02_install_k3s", "--json", "--role", "single", overrides=settings)
        assert install.returncode == 0, install.stderr[-2000:]
        run = run_phase(PHASE, "--json", overrides=settings)
        assert_report_shape(run)
        assert run.report["k3s_mode"] == "standin"
        assert [c["name"] for c in run.report["checks"] if c["status"] == "pass"] == ALL_CHECKS[:6]
        assert all(run.check(n)["message"] == "needs real k3s" for n in K8S_CHECKS)
        assert run.returncode == 0
    finally:
        killall = sandbox_root / "usr/local/bin/k3s-killall.sh"
        if killall.exists():
            subprocess.run(["bash", str(killall)], env={"PATH": os.environ["PATH"]}, capture_output=True,
                           timeout=30)


# --- real mode, exercised with a test double of a *real* k3s (no stand-in marker) -----------------
# It answers `k3s kubectl` from a scenario file, so the real-mode code (bounded waits, parsing,
# ingress probe) runs here; a real cluster is exercised by the VM lab.
FAKE_REAL_K3S = r"""#!/bin/sh
scenario=$(cat "$FAKE_SCENARIO")
case "$1" in
  --version) echo "k3s version v1.28.3+k3s2 (6d7d4ef5)"; exit 0 ;;
  server) while :; do sleep 1; done ;;
  kubectl) shift ;;
  *) exit 1 ;;
esac
echo "$*" >>"$FAKE_CALLS"
case "$*" in
  "wait --for=condition=Ready node --all "*)
    if [ "$scenario" = healthy ]; then echo "node/vm condition met"; else echo "error: timed out waiting for the condition on nodes/vm" >&2; exit 1; fi ;;
  "get pods -n kube-system "*)
    echo "coredns-6799fbcd5-abcde   Running"; echo "helm-install-traefik-x1   Succeeded"
    if [ "$scenario" != healthy ]; then echo "metrics-server-54fd9-zz   Pending"; fi ;;
  "-n gov-native get deployments -o name") echo "deployment.apps/execution-backend" ;;
  "-n gov-native rollout status deployment.apps/execution-backend "*)
    echo 'deployment "execution-backend" successfully rolled out' ;;
  "get nodes -o jsonpath="*) printf '%s' "$FAKE_NODE_IP" ;;
  *) echo "unexpected kubectl call: $*" >&2; exit 1 ;;
esac
"""


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        ok = self.path == "/healthz" and self.headers.get("Host") == "backend.gov-native.local"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"no route")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_real_k3s(sandbox_root: Path, tmp_path: Path, tls_api: Callable[[int], int]) -> Iterator[dict[str, str]]:
    """A running 'real' k3s double in the sandbox, a TLS /ping API, and an ingress on <127.x.y.z>:80."""
    port = tls_api(365)
    for path in ("var/lib/rancher/k3s/server/token", "etc/rancher/k3s/k3s.yaml"):
        (sandbox_root / path).parent.mkdir(parents=True, exist_ok=True)
        (sandbox_root / path).write_text("x\n")
        (sandbox_root / path).chmod(0o600)
    node_ip = f"127.{os.getpid() % 250 + 1}.{port % 250 + 1}.{port // 250 % 250 + 1}"
    ingress = http.server.HTTPServer((node_ip, 80), _Healthz)
    threading.Thread(target=ingress.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    scenario = tmp_path / "scenario"
    scenario.write_text("healthy")
    try:
        with fake_real_k3s_running(sandbox_root, FAKE_REAL_K3S):
            yield {"API_PORT": str(port), "FAKE_SCENARIO": str(scenario), "FAKE_CALLS": str(tmp_path / "calls"),
                   "FAKE_NODE_IP": node_ip}
    finally:
        ingress.shutdown()
        ingress.server_close()


def test_real_mode_runs_kubernetes_checks(run_phase: Runner, fake_real_k3s: dict[str, str]) -> None:
    env = {k: v for k, v in fake_real_k3s.items() if k.startswith("FAKE_")}
    run = run_phase(PHASE, "--json", overrides={"API_PORT": fake_real_k3s["API_PORT"], "HEALTH_TIMEOUT": "10"},
                    env=env)
    assert_report_shape(run)
    assert run.report["k3s_mode"] == "real"
    assert [c["status"] for c in run.report["checks"]] == ["pass"] * len(ALL_CHECKS), run.report
    assert fake_real_k3s["FAKE_NODE_IP"] in run.check("backend-healthz")["message"]
    calls = Path(fake_real_k3s["FAKE_CALLS"]).read_text()
    assert "rollout status deployment.apps/execution-backend --timeout=" in calls
    assert run.returncode == 0


def test_real_mode_unhealthy_cluster_fails_within_budget(run_phase: Runner, fake_real_k3s: dict[str, str]) -> None:
    Path(fake_real_k3s["FAKE_SCENARIO"]).write_text("broken")
    env = {k: v for k, v in fake_real_k3s.items() if k.startswith("FAKE_")}
    start = time.monotonic()
    run = run_phase(PHASE, "--json", overrides={"API_PORT": fake_real_k3s["API_PORT"], "HEALTH_TIMEOUT": "2"},
                    env=env)
    assert time.monotonic() - start < 15, "waits are bounded by HEALTH_TIMEOUT"
    assert run.check("node-ready")["status"] == "fail"
    pods = run.check("system-pods")
    assert pods["status"] == "fail" and "metrics-server-54fd9-zz(Pending)" in pods["message"]
    assert run.check("backend-rollout")["status"] == "pass"
    assert run.report["status"] == "fail" and run.returncode == 1


def test_site_registry_checks_run_only_with_a_bastion(run_phase: Runner, sandbox_root: Path, phase: str) -> None:
    """With a bastion (BASTION_IP) and its REGISTRY: the registry certificate and the registry answering
    with auth are checked (lib/site_checks.sh site_check_health); without a bastion, nothing of the site."""
    plain = run_phase(phase, "--json")
    assert not {"certificates", "registry"} & {c["name"] for c in plain.report["checks"]}
    port = free_port()  # nothing listens there: refused at once
    run = run_phase(phase, "--json", overrides={"BASTION_IP": "192.0.2.1", "REGISTRY": f"127.0.0.1:{port}"})
    assert run.check("certificates")["status"] == "fail"  # no site CA to check it against
    registry = run.check("registry")
    assert registry["status"] == "fail" and f"127.0.0.1:{port}" in registry["message"]
    assert run.returncode == 1
