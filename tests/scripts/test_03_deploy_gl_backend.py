"""Phase 03 (deploy backend) in a sandbox GL_ROOT with the k3s stand-in installed.

Under the stand-in, image import and rollout must be reported skipped ("needs real k3s"); the file
steps (checksum verification, copy to agent/images, the HelmChart manifest into server/manifests)
run for real.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from gldeploy import backend, settings
from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import fake_real_k3s_running, free_port, stop_standin
from tests.fixtures.shims import failing_install_path
from tests.scripts.k3s_doubles import install_standin, running_standin, start_tls_ping, tls_ping_servers

PHASES = ("03_deploy_gl_backend", "05_deploy_gl_backend")  # one implementation, two entry points

VERSION = "v1.28.3+k3s2"
IMAGE = "execution-backend-v1.1.oci.tar"
K8S_STEPS = ("backend image import", "backend rollout")
HELMCHART = "backend/" + backend.HELMCHART_FILE
INSTALLED = "var/lib/rancher/k3s/server/manifests/" + backend.HELMCHART_FILE


def bundle_settings(*overrides: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=192.168.56.10", *overrides])


def release_digest(bundle: Path) -> str:
    doc = yaml.safe_load((bundle / HELMCHART).read_text())
    return str(doc["metadata"]["annotations"][backend.DIGEST_ANNOTATION])


@pytest.fixture
def backend_bundle(bundle: Path) -> Path:
    """Bundle with the backend files gldeploy renders and one image archive plus SHA256SUMS."""
    backend.write_bundle_files(bundle_settings(), bundle / "backend")
    images = bundle / "artifacts/images"
    images.mkdir(parents=True)
    (images / IMAGE).write_bytes(b"oci layout bytes")
    digest = hashlib.sha256(b"oci layout bytes").hexdigest()
    (images / "SHA256SUMS").write_text(f"{digest}  {IMAGE}\n")
    return bundle


@pytest.fixture(params=PHASES)
def phase(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def standin_installed(tmp_path: Path, sandbox_root: Path) -> Iterator[dict[str, str]]:
    """The stand-in k3s server running from the sandbox, as phase 02 leaves it; yields the settings."""
    with running_standin(sandbox_root, tmp_path) as port:
        yield {"API_PORT": str(port), "ROLLOUT_TIMEOUT": "30"}


def deploy(run_phase: Callable[..., Any], values: dict[str, str], *args: str, phase: str = PHASES[0],
           env: dict[str, str] | None = None) -> Any:
    return run_phase(phase, *args, overrides=values, env=env)


def test_standin_copies_images_and_skips_kubernetes_steps(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path,
        phase: str) -> None:
    result = deploy(run_phase, standin_installed, "--json", phase=phase)
    assert result.returncode == 0, result.stderr
    report = result.report
    assert (report["phase"], report["status"], report["changed"], report["k3s_mode"]) == \
        (phase, "pass", True, "standin")
    assert result.check("k3s running")["status"] == "pass"
    for name in K8S_STEPS:
        assert result.check(name)["status"] == "skipped"
        assert result.check(name)["message"] == "needs real k3s"
    assert result.check("backend image checksums")["status"] == "pass"
    copied = sandbox_root / "var/lib/rancher/k3s/agent/images" / IMAGE
    assert copied.read_bytes() == b"oci layout bytes"
    assert not any(c["status"] == "pass" and c["name"] in K8S_STEPS for c in report["checks"])
    installed = sandbox_root / INSTALLED  # the file step runs: k3s would apply it
    assert installed.read_bytes() == (backend_bundle / HELMCHART).read_bytes()
    assert installed.stat().st_mode & 0o777 == 0o600
    assert result.check("backend chart")["status"] == "pass"
    assert release_digest(backend_bundle)[:12] in result.check("backend chart")["message"]


def test_a_new_release_replaces_the_installed_helmchart(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str],
        sandbox_root: Path) -> None:
    assert deploy(run_phase, standin_installed).returncode == 0
    old = release_digest(backend_bundle)
    backend.write_bundle_files(bundle_settings("BACKEND_REPLICAS=3"), backend_bundle / "backend")
    assert release_digest(backend_bundle) != old
    again = deploy(run_phase, standin_installed, "--json")
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is True
    assert "installed" in again.check("backend chart")["message"]
    assert (sandbox_root / INSTALLED).read_bytes() == (backend_bundle / HELMCHART).read_bytes()
    assert "replicas: 3" in (sandbox_root / INSTALLED).read_text()


def test_second_run_changes_nothing(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], phase: str) -> None:
    assert deploy(run_phase, standin_installed, phase=phase).returncode == 0
    again = deploy(run_phase, standin_installed, "--json", phase=phase)
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False
    assert "no change" in again.stderr
    assert "unchanged" in again.check("backend chart")["message"]


def test_tampered_image_is_refused_before_copying(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path) -> None:
    (backend_bundle / "artifacts/images" / IMAGE).write_bytes(b"evil")
    result = deploy(run_phase, standin_installed, "--json")
    assert result.returncode == 1
    assert result.check("backend image checksums")["status"] == "fail"
    assert "SHA256SUMS" in result.stderr
    assert not (sandbox_root / "var/lib/rancher/k3s/agent").exists()


def test_missing_manifest_is_bad_input(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path) -> None:
    (backend_bundle / HELMCHART).unlink()
    result = deploy(run_phase, standin_installed)
    assert result.returncode == 2
    assert HELMCHART in result.stderr
    assert not (sandbox_root / "var/lib/rancher/k3s/agent").exists()
    assert not (sandbox_root / INSTALLED).exists()


def test_manifest_without_release_digest_is_bad_input(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path) -> None:
    text = (backend_bundle / HELMCHART).read_text()
    (backend_bundle / HELMCHART).write_text(text.replace(backend.DIGEST_ANNOTATION, "gl-native.io/other"))
    result = deploy(run_phase, standin_installed)
    assert result.returncode == 2
    assert "no gl-native.io/release-digest annotation" in result.stderr and HELMCHART in result.stderr
    assert not (sandbox_root / "var/lib/rancher/k3s/agent").exists()
    assert not (sandbox_root / INSTALLED).exists()


def test_without_k3s_the_phase_fails_and_says_run_02(
        run_phase: Callable[..., Any], backend_bundle: Path, sandbox_root: Path, phase: str) -> None:
    result = deploy(run_phase, {"ROLLOUT_TIMEOUT": "30"}, "--json", phase=phase)
    assert result.returncode == 1
    check = result.check("k3s running")
    assert check["status"] == "fail" and "02_install_k3s" in check["fix"]
    assert result.report["k3s_mode"] == "none"


def assert_nothing_done(result: Any, sandbox_root: Path) -> None:
    assert result.returncode == 1, result.stderr
    assert result.report["status"] == "fail" and result.report["changed"] is False
    assert [c["name"] for c in result.report["checks"]] == ["k3s running"]  # before any other step
    assert not (sandbox_root / "var/lib/rancher/k3s/agent").exists()


def test_installed_but_not_running_fails_before_anything_in_standin_mode(
        run_phase: Callable[..., Any], backend_bundle: Path, sandbox_root: Path, tmp_path: Path, phase: str) -> None:
    """As after a phase 02 that could not start the stand-in: binary there, no k3s process."""
    port = free_port()
    install_standin(sandbox_root, tmp_path, port)
    result = deploy(run_phase, {"API_PORT": str(port), "ROLLOUT_TIMEOUT": "30"}, "--json", phase=phase)
    assert_nothing_done(result, sandbox_root)
    assert result.report["k3s_mode"] == "standin"
    check = result.check("k3s running")
    assert "service is not running" in check["message"] and "02_install_k3s.sh" in check["fix"]


def test_running_but_api_not_answering_fails_before_anything(
        run_phase: Callable[..., Any], backend_bundle: Path, sandbox_root: Path) -> None:
    with fake_real_k3s_running(sandbox_root, FAKE_REAL_K3S):
        port = free_port()  # nothing listens there
        result = deploy(run_phase, {"API_PORT": str(port), "ROLLOUT_TIMEOUT": "30"}, "--json")
    assert_nothing_done(result, sandbox_root)
    assert f"https://127.0.0.1:{port}/ping does not answer" in result.check("k3s running")["message"]


def test_images_without_sums_are_copied_with_a_warning(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str]) -> None:
    (backend_bundle / "artifacts/images/SHA256SUMS").unlink()
    result = deploy(run_phase, standin_installed, "--json")
    assert result.returncode == 3, result.stderr  # warnings only: the documented exit code of every phase
    assert result.check("backend image checksums")["status"] == "warn"
    assert result.report["status"] == "warn"


def test_archive_not_listed_in_sums_is_refused_before_copying(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path) -> None:
    (backend_bundle / "artifacts/images/extra-v9.tar.zst").write_bytes(b"never verified")
    result = deploy(run_phase, standin_installed, "--json")
    assert result.returncode == 1, result.stderr
    check = result.check("backend image checksums")
    assert check["status"] == "fail"
    assert "extra-v9.tar.zst" in check["message"] and "not listed in" in check["message"]
    assert IMAGE not in check["message"]  # the listed archive is not blamed
    assert "SHA256SUMS" in check["fix"] and "remove" in check["fix"]
    assert not (sandbox_root / "var/lib/rancher/k3s/agent").exists()


def test_sums_in_binary_mode_format_are_accepted(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path) -> None:
    sums = backend_bundle / "artifacts/images/SHA256SUMS"
    sums.write_text(sums.read_text().replace(f"  {IMAGE}", f" *{IMAGE}"))
    result = deploy(run_phase, standin_installed, "--json")
    assert result.returncode == 0, result.stderr
    assert result.check("backend image checksums")["status"] == "pass"
    assert (sandbox_root / "var/lib/rancher/k3s/agent/images" / IMAGE).read_bytes() == b"oci layout bytes"


def test_failed_copy_is_fatal_and_leaves_no_truncated_archive(
        run_phase: Callable[..., Any], backend_bundle: Path, standin_installed: dict[str, str], sandbox_root: Path,
        tmp_path: Path) -> None:
    result = deploy(run_phase, standin_installed, "--json", env={"PATH": failing_install_path(tmp_path)})
    dest = sandbox_root / "var/lib/rancher/k3s/agent/images" / IMAGE
    assert result.returncode == 1, result.stderr
    assert f"could not install {dest}" in result.stderr and "disk full" in result.stderr
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no truncated archive, no temp copy for k3s to import


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
    assert run_phase("02_install_k3s", "--role", "single", overrides=installed_k3s).returncode == 0
    result = run_phase("03_deploy_gl_backend", "--json", overrides=installed_k3s)
    assert result.returncode == 0, result.stderr
    assert result.check("k3s running")["status"] == "pass"
    assert result.check("backend chart")["status"] == "pass"
    assert result.check("backend rollout")["message"] == "needs real k3s"


# --- real mode, with a test double of a *real* k3s (no stand-in marker), as in test_04 -------------
# It answers `k3s ctr` and `k3s kubectl` from a scenario file and logs every call, so the real-mode
# code (import decision, apply, workload listing, bounded rollout waits) runs here; a real cluster
# is exercised by the VM lab.
FAKE_REAL_K3S = r"""#!/bin/sh
case "$1" in
  --version) echo "k3s version v1.28.3+k3s2 (6d7d4ef5)"; exit 0 ;;
  server) while :; do sleep 1; done ;;
  ctr|kubectl) ;;
  *) exit 1 ;;
esac
printf '%s\n' "$*" >>"$FAKE_CALLS"
scenario=$(cat "$FAKE_SCENARIO")
case "$*" in
  "ctr images ls -q") cat "$FAKE_IMAGES" ;;
  "ctr images import "*) echo "unpacking $FAKE_IMPORT_NAME...done"; echo "$FAKE_IMPORT_NAME" >>"$FAKE_IMAGES" ;;
  "kubectl -n gov-native get deployment gl-backend --request-timeout=30s --ignore-not-found -o jsonpath="*)
    case "$scenario" in
      list-fails) echo "error: the server has asked for the client to provide credentials" >&2; exit 1 ;;
      not-yet) ;;
      *) cat "$FAKE_DEPLOYED" ;;
    esac ;;
  "kubectl -n gov-native rollout status deployment/gl-backend --timeout="*)
    [ "$scenario" = rollout-stuck ] && { echo "error: timed out waiting for the condition" >&2; exit 1; }
    echo 'deployment "gl-backend" successfully rolled out' ;;
  *) echo "unexpected call: $*" >&2; exit 1 ;;
esac
"""
REGISTRY_NAME = "192.168.56.1:5000/gl-native/execution-backend:v1.1"


@pytest.fixture
def fake_real_k3s(sandbox_root: Path, tmp_path: Path, bundle: Path) -> Iterator[dict[str, str]]:
    """A running 'real' k3s double in the sandbox (pidfile-managed, as without systemd); yields FAKE_* env."""
    (tmp_path / "scenario").write_text("healthy")
    (tmp_path / "images").write_text("")
    with tls_ping_servers(tmp_path) as servers, fake_real_k3s_running(sandbox_root, FAKE_REAL_K3S):
        yield {"FAKE_SCENARIO": str(tmp_path / "scenario"), "FAKE_CALLS": str(tmp_path / "calls"),
               "FAKE_IMAGES": str(tmp_path / "images"), "FAKE_IMPORT_NAME": REGISTRY_NAME,
               "FAKE_DEPLOYED": str(tmp_path / "deployed"), "FAKE_BUNDLE": str(bundle),
               "API_PORT": str(start_tls_ping(servers, tmp_path, 365))}


def deploy_real(run_phase: Callable[..., Any], fake: dict[str, str], scenario: str = "healthy", *,
                deployed: str = "", timeout: str = "30") -> Any:
    """deployed: the release digest the fake Deployment carries (the bundle's own when empty)."""
    Path(fake["FAKE_SCENARIO"]).write_text(scenario)
    Path(fake["FAKE_DEPLOYED"]).write_text(deployed or release_digest(Path(fake["FAKE_BUNDLE"])))
    return run_phase("03_deploy_gl_backend", "--json", env=fake, overrides={
        "ROLLOUT_TIMEOUT": timeout, "REGISTRY": "192.168.56.1:5000", "API_PORT": fake["API_PORT"]})


def calls(fake: dict[str, str]) -> list[str]:
    path = Path(fake["FAKE_CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def test_real_mode_imports_installs_the_chart_and_waits_for_the_release(
        run_phase: Callable[..., Any], backend_bundle: Path, fake_real_k3s: dict[str, str],
        sandbox_root: Path) -> None:
    result = deploy_real(run_phase, fake_real_k3s)
    assert result.returncode == 0, result.stderr
    assert result.report["k3s_mode"] == "real" and result.report["changed"] is True
    assert result.check("backend image import")["message"] == f"imported {IMAGE} into containerd"
    digest = release_digest(backend_bundle)
    assert (sandbox_root / INSTALLED).read_bytes() == (backend_bundle / HELMCHART).read_bytes()
    assert result.check("backend rollout")["message"] == f"ready: deployment/gl-backend (release {digest[:12]})"
    made = calls(fake_real_k3s)
    assert not any(c.startswith("kubectl apply") for c in made)  # k3s applies server/manifests itself
    assert any(c.startswith("kubectl -n gov-native get deployment gl-backend --request-timeout=30s") for c in made)
    (rollout,) = [c for c in made if "rollout status" in c]
    assert rollout.startswith("kubectl -n gov-native rollout status deployment/gl-backend --timeout=")
    assert 1 <= int(rollout.rsplit("=", 1)[1].rstrip("s")) <= 30  # what is left of ROLLOUT_TIMEOUT


def test_real_mode_does_not_trust_a_deployment_of_the_previous_release(
        run_phase: Callable[..., Any], backend_bundle: Path, fake_real_k3s: dict[str, str]) -> None:
    old = "0" * 64
    result = deploy_real(run_phase, fake_real_k3s, deployed=old, timeout="3")
    assert result.returncode == 1, result.stderr
    check = result.check("backend rollout")
    assert check["status"] == "fail"
    assert f"release {release_digest(backend_bundle)[:12]} was not installed within 3s" in check["message"]
    assert "carries release 000000000000" in check["message"]
    assert "helm-install-gl-backend" in check["fix"]
    assert not any("rollout status" in c for c in calls(fake_real_k3s))  # the old rollout says nothing


def test_real_mode_fails_when_the_deployment_never_appears(
        run_phase: Callable[..., Any], backend_bundle: Path, fake_real_k3s: dict[str, str]) -> None:
    result = deploy_real(run_phase, fake_real_k3s, "not-yet", timeout="1")
    assert result.returncode == 1, result.stderr
    assert "carries no release digest" in result.check("backend rollout")["message"]


def test_real_mode_fails_when_the_deployment_cannot_be_read(
        run_phase: Callable[..., Any], backend_bundle: Path, fake_real_k3s: dict[str, str]) -> None:
    result = deploy_real(run_phase, fake_real_k3s, "list-fails", timeout="1")
    assert result.returncode == 1, result.stderr
    check = result.check("backend rollout")
    assert check["status"] == "fail" and "provide credentials" in check["message"]
    assert not any("rollout status" in c for c in calls(fake_real_k3s))


def test_real_mode_fails_when_the_rollout_does_not_finish(
        run_phase: Callable[..., Any], backend_bundle: Path, fake_real_k3s: dict[str, str]) -> None:
    result = deploy_real(run_phase, fake_real_k3s, "rollout-stuck")
    assert result.returncode == 1, result.stderr
    check = result.check("backend rollout")
    assert "deployment/gl-backend did not become ready within 30s" in check["message"]
    assert "describe deployment/gl-backend" in check["fix"]


def test_real_mode_image_already_in_containerd_under_its_registry_name_is_not_reimported(
        run_phase: Callable[..., Any], backend_bundle: Path, fake_real_k3s: dict[str, str]) -> None:
    assert deploy_real(run_phase, fake_real_k3s).returncode == 0
    assert Path(fake_real_k3s["FAKE_IMAGES"]).read_text() == f"{REGISTRY_NAME}\n"
    again = deploy_real(run_phase, fake_real_k3s)
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False
    assert again.check("backend image import")["message"] == f"{REGISTRY_NAME} already in containerd"
    assert sum(c.startswith("ctr images import") for c in calls(fake_real_k3s)) == 1
