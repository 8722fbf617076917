"""The sample backend image is in the lab's TLS + htpasswd registry and the VM can pull its manifest."""
from __future__ import annotations

from typing import Any

import pytest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

pytestmark = pytest.mark.lab


def _curl(inventory: dict[str, Any], path: str, *, auth: bool = True) -> str:
    reg = inventory["registry"]
    creds = "-K ~/.gl-lab/registry.curlrc " if auth else ""
    return (f"curl -sS -o /dev/null -D - --max-time 15 --cacert ~/.gl-lab/ca.crt {creds}"
            f"-H 'Accept: {OCI_MANIFEST}' https://{reg['address']}{path}")


def test_credentials_file_is_private(host: Any) -> None:
    """The curl config holding the registry password is 0600 and owned by the SSH user."""
    f = host.file("/home/vagrant/.gl-lab/registry.curlrc")
    assert f.mode == 0o600 and f.user == "vagrant"


def test_manifest_pullable_with_ca_and_credentials(host: Any, inventory: dict[str, Any]) -> None:
    """GET /v2/<image>/manifests/<tag> from the VM: 200 and the digest that was pushed."""
    reg = inventory["registry"]
    name, tag = reg["image_ref"].split("/", 1)[1].rsplit(":", 1)
    headers = host.check_output(_curl(inventory, f"/v2/{name}/manifests/{tag}")).lower()
    assert headers.startswith("http/") and " 200" in headers.splitlines()[0], headers
    assert f"docker-content-digest: {reg['digest']}" in headers


@pytest.mark.parametrize("auth", [False], ids=["no-credentials"])
def test_registry_refuses_anonymous(host: Any, inventory: dict[str, Any], auth: bool) -> None:
    """Without credentials the registry answers 401 (auth really is enforced)."""
    reg = inventory["registry"]
    name, tag = reg["image_ref"].split("/", 1)[1].rsplit(":", 1)
    headers = host.check_output(_curl(inventory, f"/v2/{name}/manifests/{tag}", auth=auth))
    assert " 401" in headers.splitlines()[0], headers
