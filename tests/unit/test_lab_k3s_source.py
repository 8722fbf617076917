"""The lab picks its k3s the way a deploy verifies it: given dir, pinned download, else the stand-in."""
from __future__ import annotations

from pathlib import Path

import pytest

from gldeploy import settings
from gldeploy.errors import DeployError
from gldeploy.lab import k3s_source
from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, serve_dir

VERSION = "v1.28.3+k3s2"


def load(**values: str) -> settings.Settings:
    overrides = {"CONTROL_PLANE_IPS": "192.168.56.10", "K3S_VERSION": VERSION, **values}
    return settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in overrides.items()])


def test_given_directory_is_verified_and_its_mode_reported(tmp_path: Path) -> None:
    make_release(tmp_path / "rel", VERSION)
    source = k3s_source.choose(str(tmp_path / "rel"), load(), allow_download=False)
    assert (source.mode, source.directory) == ("standin", tmp_path / "rel")


def test_tampered_given_directory_is_refused(tmp_path: Path) -> None:
    binary = make_release(tmp_path / "rel", VERSION)
    binary.write_bytes(binary.read_bytes() + b"\n# tampered\n")
    with pytest.raises(DeployError, match="sha256"):
        k3s_source.choose(str(tmp_path / "rel"), load(), allow_download=False)


def test_download_goes_through_the_product_verification_with_airgap_images(tmp_path: Path) -> None:
    make_release(tmp_path / "site" / VERSION, VERSION, images={"k3s-airgap-images-amd64.tar.zst": b"imgs"})
    with serve_dir(tmp_path / "site") as (url, requests):
        source = k3s_source.choose("", load(K3S_RELEASE_URL=url), cache_dir=tmp_path / "cache")
    assert source.mode == "standin"  # what was served is the stand-in, and it is labelled so
    assert (source.directory / "k3s-airgap-images-amd64.tar.zst").read_bytes() == b"imgs"
    assert any(r.endswith("k3s-airgap-images-amd64.tar.zst") for r in requests)


def test_unreachable_release_server_falls_back_to_the_labelled_standin(tmp_path: Path) -> None:
    source = k3s_source.choose("", load(K3S_RELEASE_URL=f"http://127.0.0.1:{free_port()}"),
                               cache_dir=tmp_path / "cache")
    assert source.mode == "standin" and "STAND-IN" in source.reason


def test_a_missing_release_is_an_error_not_a_silent_standin(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    with serve_dir(tmp_path / "site") as (url, _):
        with pytest.raises(DeployError, match="HTTP 404"):
            k3s_source.choose("", load(K3S_RELEASE_URL=url), cache_dir=tmp_path / "cache")
