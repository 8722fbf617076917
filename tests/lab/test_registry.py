"""The sample backend image is in the lab's TLS + htpasswd registry; the VM pulls it, verifies it and runs it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.helpers import eventually

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

pytestmark = pytest.mark.lab


CA = "/home/vagrant/.gl-lab/ca.crt"
CURLRC = "/home/vagrant/.gl-lab/registry.curlrc"
K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
K3S_REGISTRY_CA = "/etc/rancher/k3s/registry-ca.crt"


def _headers(host: Any, inventory: dict[str, Any], path: str, *auth: str) -> str:
    """Response headers of GET https://<registry><path> on the VM (argv quoted by testinfra)."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "15", "--cacert", CA, *auth,
            "-H", f"Accept: {OCI_MANIFEST}", f"https://{inventory['registry']['address']}{path}"]
    return str(host.check_output(" ".join(["%s"] * len(argv)), *argv))


def _manifest_path(inventory: dict[str, Any]) -> str:
    name, tag = inventory["registry"]["image_ref"].split("/", 1)[1].rsplit(":", 1)
    return f"/v2/{name}/manifests/{tag}"


def test_k3s_gets_the_registry_credentials_and_ca_privately(host: Any, inventory: dict[str, Any]) -> None:
    """The deploy wrote k3s' registries.yaml (0600 root) with the lab registry's address, its CA and
    the credentials that registry really accepts (compared with the registry's own password file)."""
    reg = inventory["registry"]
    with host.sudo():
        f = host.file(K3S_REGISTRIES)
        assert f.exists and f.mode == 0o600 and f.user == "root", f"{K3S_REGISTRIES}: {oct(f.mode)} {f.user}"
        text = f.content_string
        ca = host.file(K3S_REGISTRY_CA).content_string
    password = Path(reg["password_file"]).read_text().strip()
    parsed = yaml.safe_load(text)  # rendered once in Python (gldeploy/site/registries.py) for every node
    assert f"https://{reg['address']}" in parsed["mirrors"][reg["address"]]["endpoint"]
    config = parsed["configs"][reg["address"]]
    assert config["auth"] == {"username": reg["user"], "password": password}
    assert config["tls"]["ca_file"] == K3S_REGISTRY_CA
    assert ca.strip() == Path(reg["ca_file"]).read_text().strip()


def test_manifest_pullable_with_ca_and_credentials(host: Any, inventory: dict[str, Any]) -> None:
    """GET /v2/<image>/manifests/<tag> from the VM: 200 and the digest that was pushed."""
    headers = _headers(host, inventory, _manifest_path(inventory), "-K", CURLRC).lower()
    assert headers.startswith("http/") and " 200" in headers.splitlines()[0], headers
    assert f"docker-content-digest: {inventory['registry']['digest']}" in headers


@pytest.mark.parametrize("auth", [(), ("-u", "gl-lab:not-the-password"), ("-u", "someone-else:x")],
                         ids=["no-credentials", "wrong-password", "unknown-user"])
def test_registry_refuses_without_the_right_credentials(host: Any, inventory: dict[str, Any],
                                                        auth: tuple[str, ...]) -> None:
    """Without the right credentials the registry answers 401 (auth really is enforced)."""
    headers = _headers(host, inventory, _manifest_path(inventory), *auth)
    assert " 401" in headers.splitlines()[0], headers


PULL_DIR = "/tmp/gl-lab-pull"


def _fetch(host: Any, inventory: dict[str, Any], path: str, dest: str, accept: str = "") -> None:
    """GET https://<registry><path> on the VM into dest, with the lab CA and the 0600 credentials."""
    reg = inventory["registry"]
    argv = ["curl", "-fsS", "--max-time", "60", "--cacert", CA, "-K", CURLRC, "-o", dest]
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    host.run_expect([0], " ".join(["%s"] * (len(argv) + 1)), *argv, f"https://{reg['address']}{path}")


def _sha256(host: Any, command: str, *args: str) -> str:
    return "sha256:" + host.check_output(command + " | sha256sum", *args).split()[0]


def test_pulled_image_is_verified_and_serves_health_and_version(
        host: Any, inventory: dict[str, Any], lab_settings: Any) -> None:
    """A real pull on the VM: manifest, config and layer blobs over TLS with credentials, each checked
    against its digest (and the layer against its diff_id); then the image's own entrypoint, run in a
    chroot as the image's user, answers /healthz and /version with BACKEND_VERSION."""
    import json
    reg = inventory["registry"]
    name, tag = reg["image_ref"].split("/", 1)[1].rsplit(":", 1)
    host.run_expect([0], "sudo rm -rf %s && mkdir -p %s/rootfs", PULL_DIR, PULL_DIR)
    _fetch(host, inventory, f"/v2/{name}/manifests/{tag}", f"{PULL_DIR}/manifest.json", OCI_MANIFEST)
    assert _sha256(host, "cat %s", f"{PULL_DIR}/manifest.json") == reg["digest"]
    manifest = json.loads(host.file(f"{PULL_DIR}/manifest.json").content_string)
    cfg_digest = manifest["config"]["digest"]
    _fetch(host, inventory, f"/v2/{name}/blobs/{cfg_digest}", f"{PULL_DIR}/config.json")
    assert _sha256(host, "cat %s", f"{PULL_DIR}/config.json") == cfg_digest
    config = json.loads(host.file(f"{PULL_DIR}/config.json").content_string)
    for i, layer in enumerate(manifest["layers"]):
        blob = f"{PULL_DIR}/layer{i}.tar.gz"
        _fetch(host, inventory, f"/v2/{name}/blobs/{layer['digest']}", blob)
        assert _sha256(host, "cat %s", blob) == layer["digest"]
        assert _sha256(host, "gzip -dc %s", blob) == config["rootfs"]["diff_ids"][i]
        host.run_expect([0], "sudo tar -xzf %s -C %s", blob, f"{PULL_DIR}/rootfs")
    unit = "gl-lab-pulled-image"
    entry = config["config"]["Entrypoint"] + (config["config"].get("Cmd") or [])
    host.run("sudo systemctl stop %s", unit)
    argv = ["sudo", "systemd-run", f"--unit={unit}", "--property=RuntimeMaxSec=120",
            f"--working-directory={PULL_DIR}/rootfs", "chroot", f"--userspec={config['config']['User']}",
            f"{PULL_DIR}/rootfs", *entry]
    host.run_expect([0], " ".join(["%s"] * len(argv)), *argv)
    try:
        port = next(iter(config["config"]["ExposedPorts"])).split("/")[0]
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: host.run("curl -fsS --max-time 5 %s/healthz", url).stdout == "ok", 60,
                   f"the pulled image's /healthz on {url}")
        assert host.check_output("curl -fsS --max-time 5 %s/version", url) == lab_settings.backend_version
    finally:
        host.run("sudo systemctl stop %s", unit)
        host.run("sudo rm -rf %s", PULL_DIR)
