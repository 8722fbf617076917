"""Phase 03 (deploy backend) in a sandbox GL_ROOT with the k3s stand-in installed.

Under the stand-in, image import, apply and rollout must be reported skipped ("needs real k3s");
the file steps (checksum verification, copy to agent/images) run for real.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, stop_standin

VERSION = "v1.28.3+k3s2"
MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: execution-backend, namespace: gov-native}
spec:
  replicas: 1
  selector: {matchLabels: {app: execution-backend}}
  template:
    metadata: {labels: {app: execution-backend}}
    spec: {containers: [{name: backend, image: "gl-native/execution-backend:v1.1"}]}
"""
IMAGE = "execution-backend-v1.1.oci.tar"
K8S_STEPS = ("backend image import", "backend manifests", "backend rollout")


@pytest.fixture
def backend_bundle(bundle: Path) -> Path:
    """Bundle with backend/backend.yaml and one image archive plus SHA256SUMS."""
    (bundle / "backend").mkdir()
    (bundle / "backend/backend.yaml").write_text(MANIFEST)
    images = bundle / "artifacts/images"
    images.mkdir(parents=True)
    (images / IMAGE).write_bytes(b"oci layout bytes")
    digest = hashlib.sha256(b"oci layout bytes").hexdigest()
    (images / "SHA256SUMS").write_text(f"{digest}  {IMAGE}\n")
    return bundle


@pytest.fixture
def standin_installed(tmp_path: Path, sandbox_root: Path) -> Path:
    """Only the stand-in binary at k3s' path: phase 03 needs no running server in stand-in mode."""
    bin_dir = sandbox_root / "usr/local/bin"
    make_release(bin_dir, VERSION)
    (bin_dir / "sha256sum-amd64.txt").unlink()
    return bin_dir / "k3s"


def deploy(run_phase: Callable[..., Any], *args: str) -> Any:
    return run_phase("03_deploy_gl_backend", *args, overrides={"ROLLOUT_TIMEOUT": "30"})


def test_standin_copies_images_and_skips_kubernetes_steps(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: Path, sandbox_root: Path) -> None:
    result = deploy(run_phase, "--json")
    assert result.returncode == 0, result.stderr
    report = result.report
    assert (report["phase"], report["status"], report["changed"], report["k3s_mode"]) == \
        ("03_deploy_gl_backend", "pass", True, "standin")
    for name in K8S_STEPS:
        assert result.check(name)["status"] == "skipped"
        assert result.check(name)["message"] == "needs real k3s"
    assert result.check("backend image checksums")["status"] == "pass"
    copied = sandbox_root / "var/lib/rancher/k3s/agent/images" / IMAGE
    assert copied.read_bytes() == b"oci layout bytes"
    assert not any(c["status"] == "pass" and c["name"] in K8S_STEPS for c in report["checks"])


def test_second_run_changes_nothing(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: Path) -> None:
    assert deploy(run_phase).returncode == 0
    again = deploy(run_phase, "--json")
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False
    assert "no change" in again.stderr


def test_tampered_image_is_refused_before_copying(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: Path, sandbox_root: Path) -> None:
    (backend_bundle / "artifacts/images" / IMAGE).write_bytes(b"evil")
    result = deploy(run_phase, "--json")
    assert result.returncode == 1
    assert result.check("backend image checksums")["status"] == "fail"
    assert "SHA256SUMS" in result.stderr
    assert not (sandbox_root / "var/lib/rancher/k3s/agent").exists()


def test_missing_manifest_is_bad_input(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: Path, sandbox_root: Path) -> None:
    (backend_bundle / "backend/backend.yaml").unlink()
    result = deploy(run_phase)
    assert result.returncode == 2
    assert "backend/backend.yaml" in result.stderr
    assert not (sandbox_root / "var/lib/rancher").exists()


def test_without_k3s_the_phase_fails_and_says_run_02(
        run_phase: Callable[..., Any], backend_bundle: Path, sandbox_root: Path) -> None:
    result = deploy(run_phase, "--json")
    assert result.returncode == 1
    check = result.check("k3s installed")
    assert check["status"] == "fail" and "02_install_k3s" in check["fix"]
    assert result.report["k3s_mode"] == "none"


def test_images_without_sums_are_copied_with_a_warning(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: Path) -> None:
    (backend_bundle / "artifacts/images/SHA256SUMS").unlink()
    result = deploy(run_phase, "--json")
    assert result.returncode == 3, result.stderr  # warnings only: the documented exit code of every phase
    assert result.check("backend image checksums")["status"] == "warn"
    assert result.report["status"] == "warn"


@pytest.fixture
def installed_k3s(run_phase: Callable[..., Any], tmp_path: Path, sandbox_root: Path) -> Iterator[dict[str, str]]:
    release = tmp_path / "release"
    make_release(release, VERSION)
    values = {"K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(free_port()), "HEALTH_TIMEOUT": "30",
              "ROLLOUT_TIMEOUT": "30"}
    yield values
    stop_standin(sandbox_root)


def test_after_phase_02_with_the_standin(
        run_phase: Callable[..., Any], backend_bundle: Path, installed_k3s: dict[str, str], sandbox_root: Path) -> None:
    assert run_phase("02_install_k3s", overrides=installed_k3s).returncode == 0
    result = run_phase("03_deploy_gl_backend", "--json", overrides=installed_k3s)
    assert result.returncode == 0, result.stderr
    assert result.check("k3s installed")["status"] == "pass"
    assert result.check("backend manifests")["message"] == "needs real k3s"
