"""Phase 01 for a dedicated load balancer node (--role lb), the air-gapped site preflight (with a
bastion), and a bundle carrying the site's own backend image archive."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

PHASE = "01_pre_install_check"
Runner = Callable[..., Any]
LB = {"TOPOLOGY": "ha", "CONTROL_PLANE_IPS": "10.0.0.11,10.0.0.12,10.0.0.13", "API_VIP": "10.0.0.100",
      "LB_IPS": "10.0.0.5,10.0.0.6"}
SMALL_ZERO = {"MIN_CPU": "0", "MIN_MEMORY_MB": "0", "MIN_DISK_GB": "0"}


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def names(run: Any) -> list[str]:
    return [c["name"] for c in run.report["checks"]]


def shims(tmp_path: Path, *commands: str) -> dict[str, str]:
    bindir = tmp_path / "shims"
    bindir.mkdir(exist_ok=True)
    for name in commands:
        (bindir / name).write_text("#!/bin/sh\nexit 0\n")
        (bindir / name).chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_lb_role_has_small_minimums_and_checks_only_the_frontend_port(run_phase: Runner) -> None:
    run = run_phase(PHASE, "--json", "--role", "lb", overrides={**LB, **SMALL_ZERO})
    assert run.returncode in (0, 1, 3), run.stderr
    assert "need 1 for role lb" in run.check("cpu")["message"]
    assert "need 512 MiB for role lb" in run.check("memory")["message"]
    assert "need 2 GiB" in run.check("disk")["message"]
    checks = names(run)
    # dedicated nodes: HAProxy's frontend is API_PORT (LB_PORT=0), and no kubelet or etcd port
    assert "port-6443" in checks and "port-10250" not in checks and "port-2379" not in checks
    assert "lb-packages" in checks
    assert run.check("backend-image")["status"] == "skipped"
    for k3s_only in ("kernel-module-br_netfilter", "cgroups", "existing-k3s"):
        assert k3s_only not in checks


def test_lb_frontend_port_in_use_fails(run_phase: Runner, busy_port: int) -> None:
    run = run_phase(PHASE, "--json", "--role", "lb", overrides={**LB, "LB_PORT": str(busy_port)})
    check = run.check(f"port-{busy_port}")
    assert check["status"] == "fail" and str(busy_port) in check["message"]
    assert run.returncode == 1


def test_lb_packages_present_pass_and_missing_warn(run_phase: Runner, tmp_path: Path) -> None:
    env = shims(tmp_path, "haproxy", "keepalived")
    run = run_phase(PHASE, "--json", "--role", "lb", overrides=LB, env=env)
    assert run.check("lb-packages")["status"] == "pass"
    path = ":".join(p for p in os.environ["PATH"].split(":")
                    if not (Path(p) / "haproxy").exists() and not (Path(p) / "keepalived").exists())
    run = run_phase(PHASE, "--json", "--role", "lb", overrides=LB, env={"PATH": path})
    check = run.check("lb-packages")
    assert check["status"] == "warn" and "haproxy" in check["message"] and "apt-get" in check["fix"]


def test_site_preflight_runs_only_with_a_bastion(run_phase: Runner) -> None:
    without = run_phase(PHASE, "--json", "--role", "single")
    assert "timezone" not in names(without) and "ntp" not in names(without)
    # an address nothing answers on quickly: the NTP query is bounded (chronyd -t 8)
    run = run_phase(PHASE, "--json", "--role", "single", overrides={"BASTION_IP": "192.0.2.1",
                                                                     "SITE_TIMEZONE": "Asia/Taipei"},
                    timeout=90)
    checks = names(run)
    assert {"timezone", "ntp", "ca-distributed", "certificates"} <= set(checks)
    assert run.check("timezone")["status"] == "fail" and "Asia/Taipei" in run.check("timezone")["message"]
    assert run.returncode == 1


def test_bundle_with_the_site_archive_passes_the_backend_image_check(run_phase: Runner, bundle: Path,
                                                                      tmp_path: Path) -> None:
    from gldeploy import bundle as gl_bundle
    from gldeploy import sequences, settings
    from tests.unit.test_render import _docker_archive
    archive = _docker_archive(tmp_path / "site-backend.tar", ["gl-native/execution-backend:v1.1"])
    loaded = settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=192.168.56.10",
                                                        f"BACKEND_IMAGE_ARCHIVE={archive}"])
    staged = tmp_path / "staged"
    gl_bundle.build_bundle(loaded, staged, sequences.sequence("single")[:1], baked=False,
                           staging=gl_bundle.Staging(k3s_artifacts=False))
    (bundle / "artifacts").mkdir()
    os.rename(staged / "artifacts" / "images", bundle / "artifacts" / "images")
    run = run_phase(PHASE, "--json", "--role", "single", overrides={"BACKEND_IMAGE_ARCHIVE": str(archive)})
    check = run.check("backend-image")
    assert check["status"] == "pass", check
    assert "site-backend.tar" in check["message"]


def test_lb_packages_from_the_bundle_pass_and_an_incomplete_directory_fails(run_phase: Runner, bundle: Path) -> None:
    path = ":".join(p for p in os.environ["PATH"].split(":")
                    if not (Path(p) / "haproxy").exists() and not (Path(p) / "keepalived").exists())
    packages = bundle / "artifacts" / "lb-packages"  # what bundle._stage_lb ships from LB_PACKAGES_DIR
    packages.mkdir(parents=True)
    (packages / "haproxy_2.6.12-1_amd64.deb").write_bytes(b"x")
    keys = {**LB, "LB_PACKAGES_DIR": str(packages)}
    run = run_phase(PHASE, "--json", "--role", "lb", overrides=keys, env={"PATH": path})
    check = run.check("lb-packages")
    assert check["status"] == "fail" and "keepalived" in check["message"] and "haproxy" not in check["message"].split(":")[-1]
    (packages / "keepalived_2.2.7-1_amd64.deb").write_bytes(b"x")
    run = run_phase(PHASE, "--json", "--role", "lb", overrides=keys, env={"PATH": path})
    check = run.check("lb-packages")
    assert check["status"] == "pass" and "LB_PACKAGES_DIR" in check["message"]
