"""The invoke path end to end on this machine: `invoke deploy --hosts local` into a sandbox root.

Uses the k3s stand-in (this workplace cannot download k3s), so Kubernetes-level steps must come
back *skipped: needs real k3s*; everything else (verified install, service on TLS, image import,
health) is real. The second run must change nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, standin_pid, stop_standin

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    yield root
    stop_standin(root)


def deploy(tmp_path: Path, root: Path, port: int, report: str, *extra: str,
           sample_image: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GL_ROOT": str(root)}
    argv = ["invoke", "deploy", "--env", "env/single.env", "--hosts", "local",
            "--set", f"K3S_ARTIFACTS_DIR={tmp_path / 'release'}", "--set", f"API_PORT={port}",
            "--set", "MIN_CPU=1", "--set", "MIN_MEMORY_MB=256", "--set", "MIN_DISK_GB=1",
            "--set", f"WORK_DIR={tmp_path / 'work'}", *(["--sample-image"] if sample_image else []),
            "--json-report", str(tmp_path / report), *extra]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def by_phase(report: dict) -> dict[str, dict]:
    return {r["phase"]: r for r in report["results"]}


def expected_rc(report_path: Path) -> int:
    """What the run must exit with: 3 when a phase passed with warnings (this machine's 01 may warn,
    e.g. about swap), else 0: the task's exit code agrees with its report."""
    report = json.loads(report_path.read_text())
    return 3 if any(r["status"] == "warn" for r in report["results"]) else 0


def test_deploy_twice_locally_with_standin(tmp_path, sandbox):
    make_release(tmp_path / "release", "v1.28.3+k3s2")
    port = free_port()

    first = deploy(tmp_path, sandbox, port, "first.json")
    assert first.returncode == expected_rc(tmp_path / "first.json"), first.stderr[-3000:]
    results = by_phase(json.loads((tmp_path / "first.json").read_text()))
    assert list(results) == ["01_pre_install_check", "02_install_k3s", "03_deploy_gl_backend",
                             "04_health_check"]
    assert results["02_install_k3s"]["changed"] is True
    assert results["02_install_k3s"]["k3s_mode"] == "standin"
    health = {c["name"]: c for c in results["04_health_check"]["checks"]}
    assert health["api-ping"]["status"] == "pass"
    for name in ("node-ready", "system-pods", "backend-rollout", "backend-healthz"):
        assert health[name]["status"] == "skipped" and health[name]["message"] == "needs real k3s"
    backend = {c["name"]: c for c in results["03_deploy_gl_backend"]["checks"]}
    assert backend["backend image checksums"]["status"] == "pass"
    assert backend["backend rollout"]["status"] == "skipped"
    images = sandbox / "var/lib/rancher/k3s/agent/images/execution-backend-v1.1.oci.tar"
    assert images.is_file()
    assert (sandbox / "etc/rancher/k3s/config.yaml").stat().st_mode & 0o777 == 0o600
    pid = standin_pid(sandbox)
    assert pid

    second = deploy(tmp_path, sandbox, port, "second.json")
    assert second.returncode == expected_rc(tmp_path / "second.json"), second.stderr[-3000:]
    again = by_phase(json.loads((tmp_path / "second.json").read_text()))
    assert [r["changed"] for r in again.values()] == [False, False, False, False]
    assert standin_pid(sandbox) == pid, "a second run must not restart k3s"
    assert "no change" in second.stderr


def test_tampered_artifact_is_refused_before_the_host_is_touched(tmp_path, sandbox):
    release = tmp_path / "release"
    make_release(release, "v1.28.3+k3s2")
    with open(release / "k3s", "ab") as binary:
        binary.write(b"\n# tampered\n")
    run = deploy(tmp_path, sandbox, free_port(), "tampered.json")
    assert run.returncode != 0
    assert "sha256" in (run.stdout + run.stderr).lower()
    assert not any(sandbox.iterdir()), "nothing may be written to the host"
    assert not (tmp_path / "work").exists()


def test_first_deploy_without_an_image_stops_in_01_before_anything_is_installed(tmp_path, sandbox):
    """No --sample-image, no registry holding BACKEND_IMAGE, no archive: 01 finds out and explains,
    instead of 03 applying manifests for an image that cannot be pulled (failing after the rollout wait)."""
    make_release(tmp_path / "release", "v1.28.3+k3s2")
    run = deploy(tmp_path, sandbox, free_port(), "noimage.json", "--set", "REGISTRY=127.0.0.1:9",
                 sample_image=False)
    assert run.returncode == 1, run.stderr[-3000:]
    results = json.loads((tmp_path / "noimage.json").read_text())["results"]
    assert [(r["phase"], r["status"]) for r in results] == [
        ("01_pre_install_check", "fail"), ("02_install_k3s", "not run"),
        ("03_deploy_gl_backend", "not run"), ("04_health_check", "not run")], results
    check = {c["name"]: c for c in results[0]["checks"]}["backend-image"]
    assert check["status"] == "fail"
    assert "backend image 127.0.0.1:9/gl-native/execution-backend:v1.1 cannot be had" in check["message"]
    assert "registry https://127.0.0.1:9 is down or unreachable" in check["message"]
    assert "the bundle carries no image archive" in check["message"]
    assert "push the site's GL-Native Execution Backend image to the site registry" in check["fix"]
    assert "--sample-image" in check["fix"]
    assert "--sample-image" in run.stdout + run.stderr  # the table shows the fix
    assert not any(sandbox.iterdir()), "nothing may be written to the host"


def test_bad_env_value_exits_2_and_touches_nothing(tmp_path, sandbox):
    make_release(tmp_path / "release", "v1.28.3+k3s2")
    run = deploy(tmp_path, sandbox, free_port(), "bad.json", "--set", "SERVICE_CIDR=10.42.0.0/17")
    assert run.returncode == 2
    assert "overlaps CLUSTER_CIDR" in run.stderr
    assert not any(sandbox.iterdir()) and not (tmp_path / "work").exists()


def test_cluster_init_first_server_uses_the_same_install_path(tmp_path, sandbox, tls_registry):
    """The first server deploys the backend later, so its 01 checks the image can be had: here from
    the site registry (a real TLS + htpasswd docker-registry holding the image)."""
    from gldeploy import image, registry

    registry.push(image.build_sample_image("v1.1", tmp_path / "img"),
                  f"{tls_registry.host}/gl-native/execution-backend:v1.1", ca_file=tls_registry.ca_file,
                  user=tls_registry.user, password_file=tls_registry.password_file)
    make_release(tmp_path / "release", "v1.28.3+k3s2")
    token = tmp_path / "token"
    token.write_text("cluster-join-secret-4711\n")
    token.chmod(0o600)
    vrrp = tmp_path / "vrrp-password"
    vrrp.write_text("Xy7.pass\n")
    vrrp.chmod(0o600)
    env = {**os.environ, "GL_ROOT": str(sandbox)}
    argv = ["invoke", "cluster.init", "--role", "first-server", "--env", "env/cluster.env",
            "--hosts", "local", "--set", f"K3S_ARTIFACTS_DIR={tmp_path / 'release'}",
            "--set", f"LB_VRRP_PASSWORD_FILE={vrrp}",
            "--set", f"K3S_TOKEN_FILE={token}", "--set", f"API_PORT={free_port()}",
            "--set", "MIN_CPU=1", "--set", "MIN_MEMORY_MB=256", "--set", "MIN_DISK_GB=1",
            "--set", f"WORK_DIR={tmp_path / 'work'}", "--json-report", str(tmp_path / "r.json"),
            "--set", f"REGISTRY={tls_registry.host}", "--set", f"REGISTRY_USER={tls_registry.user}",
            "--set", f"REGISTRY_PASSWORD_FILE={tls_registry.password_file}",
            "--set", f"REGISTRY_CA_FILE={tls_registry.ca_file}"]
    run = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == expected_rc(tmp_path / "r.json"), run.stderr[-3000:]
    results = by_phase(json.loads((tmp_path / "r.json").read_text()))
    assert list(results) == ["01_pre_install_check", "02_init_control_plane"]
    image_check = {c["name"]: c for c in results["01_pre_install_check"]["checks"]}["backend-image"]
    assert image_check["status"] == "pass" and f"is in registry {tls_registry.host}" in image_check["message"]
    config = (sandbox / "etc/rancher/k3s/config.yaml").read_text()
    assert "cluster-init: true" in config and '"192.168.57.100"' in config  # VIP in tls-san
    server_token = (sandbox / "var/lib/rancher/k3s/server/token").read_text()
    assert server_token.startswith("K10") and "cluster-join-secret-4711" in server_token
    assert "cluster-join-secret-4711" not in run.stdout + run.stderr, "the token must never be logged"
    # this machine holds none of the servers' addresses: no load balancer here, and it says so
    lb = next(c for c in results["02_init_control_plane"]["checks"] if c["name"] == "load-balancer")
    assert lb["status"] == "warn" and "holds none of its addresses" in lb["message"]
    assert not (sandbox / "etc/haproxy/haproxy.cfg").exists()
