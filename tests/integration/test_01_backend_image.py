"""01's backend-image check against a REAL docker-registry (TLS with a throwaway CA, htpasswd bcrypt) on
127.0.0.1:<free port> (the session's `tls_registry`), and against an archive the bundle carries.

The bundle is staged exactly as the invoke path stages it (gldeploy.bundle.build_bundle: file keys
rewritten to secrets/ inside the bundle), then 01 runs from it with bash, in a sandbox root.
Needs root, docker-registry, openssl, htpasswd and skopeo (tools/bootstrap.sh test).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gldeploy import bundle, registry, sequences, settings
from gldeploy import image as image_lib
from tests.fixtures.k3s_standin.testing import SMALL_HOST, free_port

pytestmark = pytest.mark.integration
REPO_PATH = "gov-native/execution-backend"
SINGLE = sequences.sequence("single")


@pytest.fixture(scope="module")
def pushed(tls_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample backend image pushed to the registry as <registry>/gov-native/execution-backend:v1.1."""
    archive = image_lib.build_sample_image("v1.1", tmp_path_factory.mktemp("img"))
    ref = f"{tls_registry.host}/{REPO_PATH}:v1.1"
    registry.push(archive, ref, ca_file=tls_registry.ca_file, user=tls_registry.user,
                  password_file=tls_registry.password_file)
    return ref


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def preflight(tmp_path: Path, overrides: dict[str, str], *, sample_image: bool = False,
              phases: tuple[sequences.Phase, ...] = SINGLE[:1],
              add_archive: Path | None = None) -> dict[str, Any]:
    """Stage the bundle as invoke does, run 01 --role single --json from it; the backend-image check
    (and the whole report, to assert the sandbox stayed untouched)."""
    values = {"CONTROL_PLANE_IPS": "192.168.56.10", **SMALL_HOST, "BACKEND_IMAGE": REPO_PATH,
              "WORK_DIR": str(tmp_path / "work"), **overrides}
    loaded = settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in values.items()])
    staged = tmp_path / "bundle"
    bundle.build_bundle(loaded, staged, phases, baked=False,
                        staging=bundle.Staging(k3s_artifacts=False, sample_image=sample_image), roles={"single"})
    if add_archive is not None:  # a site archive put into the host bundle by hand, as the README says
        images = staged / "artifacts/images"
        images.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(add_archive, images / add_archive.name)
        with open(images / "SHA256SUMS", "a") as sums:
            sums.write(f"{hashlib.sha256(add_archive.read_bytes()).hexdigest()}  {add_archive.name}\n")
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "GL_ROOT": str(root)}
    proc = subprocess.run(["bash", str(staged / "01_pre_install_check.sh"), "--role", "single", "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    check = next(c for c in report["checks"] if c["name"] == "backend-image")
    assert list(root.iterdir()) == [], "01 must not change the host"
    assert report["changed"] is False
    return {"check": check, "rc": proc.returncode, "log": proc.stdout + proc.stderr}


def registry_keys(reg: Any, **changes: str) -> dict[str, str]:
    return {"REGISTRY": reg.host, "REGISTRY_USER": reg.user, "REGISTRY_PASSWORD_FILE": str(reg.password_file),
            "REGISTRY_CA_FILE": str(reg.ca_file), **changes}


def test_image_in_the_registry_passes(tls_registry: Any, pushed: str, tmp_path: Path) -> None:
    run = preflight(tmp_path, registry_keys(tls_registry))
    check = run["check"]
    assert check["status"] == "pass", check
    assert f"{pushed} is in registry {tls_registry.host}" in check["message"]
    assert f"for user {tls_registry.user}" in check["message"]
    assert tls_registry.password_file.read_text().strip() not in run["log"]


def test_image_pinned_by_digest_in_the_registry_passes(tls_registry: Any, pushed: str, tmp_path: Path) -> None:
    digest = registry.pull_digest(pushed, ca_file=tls_registry.ca_file, user=tls_registry.user,
                                  password_file=tls_registry.password_file)
    check = preflight(tmp_path, registry_keys(tls_registry, BACKEND_IMAGE=f"{REPO_PATH}@{digest}"))["check"]
    assert check["status"] == "pass" and f"manifests/{digest}: 200" in check["message"], check


def test_tag_not_pushed_fails_naming_the_reference(tls_registry: Any, pushed: str, tmp_path: Path) -> None:
    run = preflight(tmp_path, registry_keys(tls_registry, BACKEND_VERSION="v9.9"))
    check = run["check"]
    assert check["status"] == "fail" and run["rc"] == 1, check
    assert f"{tls_registry.host}/{REPO_PATH}:v9.9 is not in registry {tls_registry.host} (HTTP 404" in check["message"]
    assert f"push the site's GL-Native Execution Backend image to the site registry as " \
           f"{tls_registry.host}/{REPO_PATH}:v9.9" in check["fix"]
    assert "--sample-image" in check["fix"] and "artifacts/images" in check["fix"]


def test_wrong_password_fails_naming_the_credentials(tls_registry: Any, pushed: str, tmp_path: Path) -> None:
    wrong = private_file(tmp_path / "wrong-password", "Not-The-Password-42\n")
    run = preflight(tmp_path, registry_keys(tls_registry, REGISTRY_PASSWORD_FILE=str(wrong)))
    check = run["check"]
    assert check["status"] == "fail", check
    assert f"refused the credentials of user {tls_registry.user}" in check["message"]
    assert "REGISTRY_USER" in check["fix"] and "REGISTRY_PASSWORD_FILE" in check["fix"]
    assert "Not-The-Password-42" not in run["log"]


def test_missing_credentials_fail_asking_for_them(tls_registry: Any, pushed: str, tmp_path: Path) -> None:
    check = preflight(tmp_path, registry_keys(tls_registry, REGISTRY_USER="", REGISTRY_PASSWORD_FILE=""))["check"]
    assert check["status"] == "fail" and "REGISTRY_USER is not set" in check["message"], check


def test_wrong_ca_fails_naming_the_ca(tls_registry: Any, pushed: str, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-keyout", str(other / "ca.key"), "-out", str(other / "ca.crt"),
                    "-subj", "/CN=not the registry's CA"], check=True, capture_output=True)
    check = preflight(tmp_path, registry_keys(tls_registry, REGISTRY_CA_FILE=str(other / "ca.crt")))["check"]
    assert check["status"] == "fail", check
    assert f"the TLS certificate of registry https://{tls_registry.host} does not verify against the CA in " \
           f"REGISTRY_CA_FILE (secrets/registry-ca.crt)" in check["message"]
    assert "set REGISTRY_CA_FILE to the PEM file of the CA" in check["fix"]


def test_registry_down_fails_naming_the_address(tls_registry: Any, tmp_path: Path) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    check = preflight(tmp_path, registry_keys(tls_registry, REGISTRY=down))["check"]
    assert check["status"] == "fail", check
    assert f"registry https://{down} is down or unreachable" in check["message"]
    assert f"check the registry address {down} (REGISTRY, BACKEND_IMAGE)" in check["fix"]


def test_archive_in_the_bundle_passes_without_a_registry(tmp_path: Path) -> None:
    """--sample-image with the deploy phase planned (as `invoke deploy` stages it): no registry needed."""
    check = preflight(tmp_path, {"REGISTRY": "127.0.0.1:9"}, sample_image=True, phases=SINGLE)["check"]
    assert check["status"] == "pass", check
    assert "artifacts/images/execution-backend-v1.1.oci.tar (sha256 matches SHA256SUMS) carries " \
           f"127.0.0.1:9/{REPO_PATH}:v1.1" in check["message"]


def test_site_docker_archive_made_with_skopeo_passes_without_a_registry(tmp_path: Path) -> None:
    """The README's recipe: skopeo copy ... docker-archive:<file>:<BACKEND_IMAGE_REF>, into artifacts/images."""
    oci = image_lib.build_sample_image("v1.1", tmp_path / "src")
    site = tmp_path / "execution-backend-v1.1.tar"
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    ref = f"127.0.0.1:9/{REPO_PATH}:v1.1"
    subprocess.run(["skopeo", "--policy", str(policy), "copy", "-q", f"oci-archive:{oci}",
                    f"docker-archive:{site}:{ref}"], check=True, capture_output=True, timeout=120)
    check = preflight(tmp_path, {"REGISTRY": "127.0.0.1:9"}, add_archive=site)["check"]
    assert check["status"] == "pass", check
    assert f"artifacts/images/{site.name} (sha256 matches SHA256SUMS) carries {ref}" in check["message"]
