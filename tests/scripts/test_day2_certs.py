"""certs.sh (expiry report, rotation) and doctor's cert-expiry check: one scan, one threshold."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, standin_pid, stop_standin

VERSION = "v1.28.3+k3s2"
TLS = "var/lib/rancher/k3s/server/tls"


def make_cert(path: Path, days: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-days", str(days),
                    "-subj", f"/CN={path.stem}"], check=True, capture_output=True)


def serial(path: Path) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(path)],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def node(run_phase: Callable[..., Any], sandbox_root: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    release = tmp_path / "release"
    make_release(release, VERSION)
    values = {"K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(free_port()), "HEALTH_TIMEOUT": "30",
              "K3S_VERSION": VERSION}

    def run(script: str, *args: str) -> Any:
        return run_phase(script, *args, overrides=values)

    assert run("02_install_k3s", "--role", "single").returncode == 0
    yield run
    stop_standin(sandbox_root)


def test_report_lists_k3s_and_internal_ca_with_k3s_status_words(node: Callable[..., Any], sandbox_root: Path) -> None:
    make_cert(sandbox_root / "etc/rancher/k3s/registry-ca.crt", 3650)
    result = node("certs", "--json")
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in result.report["checks"]}
    assert f"/{TLS}/serving-kube-apiserver.crt" in checks and f"/{TLS}/server-ca.crt" in checks
    assert "internal-ca" in checks["/etc/rancher/k3s/registry-ca.crt"]["message"]
    assert all(c["status"] == "pass" and c["message"].startswith("OK: ") for c in checks.values())
    # a 365-day leaf certificate is inside a 400-day threshold: warning, exit 3
    result = node("certs", "--json", "--threshold", "400")
    assert result.returncode == 3
    serving = {c["name"]: c for c in result.report["checks"]}[f"/{TLS}/serving-kube-apiserver.crt"]
    assert serving["status"] == "warn" and serving["message"].startswith("WARNING: 36")


@pytest.mark.parametrize("days,status,code", [(100, "warn", 3), (3, "fail", 1), (200, "pass", 0)])
def test_doctor_and_certs_share_the_threshold(node: Callable[..., Any], sandbox_root: Path, days: int,
                                              status: str, code: int) -> None:
    """A certificate ending in 100 days is inside k3s' renewal window (120): both warn (doctor's old
    own rule looked only 30 days ahead and passed it)."""
    make_cert(sandbox_root / TLS / "client-admin.crt", days)
    certs = node("certs", "--json")
    assert certs.returncode == code, certs.stderr
    mine = {c["name"]: c for c in certs.report["checks"]}[f"/{TLS}/client-admin.crt"]
    assert mine["status"] == status
    doctor = node("doctor", "--json").check("cert-expiry")
    assert doctor["status"] == status
    if status != "pass":
        assert "client-admin.crt" in doctor["message"] and f"{days - 1} day(s) left" in doctor["message"]


def test_expired_and_unreadable_fail(node: Callable[..., Any], sandbox_root: Path) -> None:
    (sandbox_root / TLS / "broken.crt").write_text("not a certificate\n")
    result = node("certs", "--json")
    assert result.returncode == 1
    assert {c["name"]: c for c in result.report["checks"]}[f"/{TLS}/broken.crt"]["message"].startswith("UNREADABLE")


def test_rotate_follows_k3s_procedure(node: Callable[..., Any], sandbox_root: Path) -> None:
    serving = sandbox_root / TLS / "serving-kube-apiserver.crt"
    before, ca, pid = serial(serving), (sandbox_root / TLS / "server-ca.crt").read_bytes(), standin_pid(sandbox_root)
    result = node("certs", "--json", "--rotate")
    assert result.returncode == 0, result.stderr
    assert result.report["changed"] is True
    assert serial(serving) != before  # a new leaf certificate, issued at start
    assert (sandbox_root / TLS / "server-ca.crt").read_bytes() == ca  # the CA stays
    assert standin_pid(sandbox_root) not in (None, pid)  # stopped, rotated, started again
    assert list((sandbox_root / TLS).parent.glob("tls-*"))  # k3s' backup of the old certificates


def test_bad_threshold_is_bad_input(node: Callable[..., Any]) -> None:
    result = node("certs", "--threshold", "soon")
    assert result.returncode == 2 and "--threshold 'soon'" in result.stderr
