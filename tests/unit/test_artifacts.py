"""gldeploy.artifacts: stage a verified k3s release from a directory or a GitHub-like HTTP server."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy import artifacts, settings
from gldeploy.errors import ConfigError, DeployError
from tests.fixtures.k3s_standin.release import make_release, write_sums
from tests.fixtures.k3s_standin.testing import serve_dir

VERSION = "v1.28.3+k3s2"


def load(**values: str) -> settings.Settings:
    overrides = {"CONTROL_PLANE_IPS": "192.168.56.10", "K3S_VERSION": VERSION, **values}
    return settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory laid out like github.com/k3s-io/k3s/releases/download/<tag>/."""
    root = tmp_path / "site"
    make_release(root / VERSION, VERSION)  # the HTTP server decodes /v1.28.3%2Bk3s2/ to this name
    return root


@pytest.fixture
def server(site: Path) -> Iterator[tuple[str, list[str]]]:
    with serve_dir(site) as served:
        yield served


def test_download_verifies_stages_and_detects_standin(server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = server
    dest = tmp_path / "bundle/artifacts/k3s"
    mode = artifacts.stage_k3s(load(K3S_RELEASE_URL=url), dest, cache_dir=tmp_path / "cache")
    assert mode == "standin"
    assert requests == ["/v1.28.3%2Bk3s2/k3s", "/v1.28.3%2Bk3s2/sha256sum-amd64.txt"]
    assert sorted(p.name for p in dest.iterdir()) == ["k3s", "sha256sum-amd64.txt"]
    assert (dest / "k3s").stat().st_mode & 0o777 == 0o755
    sums = artifacts.parse_sums(dest / "sha256sum-amd64.txt")
    assert sums["k3s"] == hashlib.sha256((dest / "k3s").read_bytes()).hexdigest()
    assert (tmp_path / "cache" / VERSION / "amd64" / "k3s").is_file()


def test_cache_hit_makes_no_request(server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = server
    s = load(K3S_RELEASE_URL=url)
    artifacts.stage_k3s(s, tmp_path / "first", cache_dir=tmp_path / "cache")
    requests.clear()
    assert artifacts.stage_k3s(s, tmp_path / "second", cache_dir=tmp_path / "cache") == "standin"
    assert requests == []
    assert (tmp_path / "second/k3s").read_bytes() == (tmp_path / "first/k3s").read_bytes()


def test_corrupted_cache_is_refetched_not_trusted(server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = server
    s = load(K3S_RELEASE_URL=url)
    artifacts.stage_k3s(s, tmp_path / "first", cache_dir=tmp_path / "cache")
    (tmp_path / "cache" / VERSION / "amd64" / "k3s").write_bytes(b"rotten")
    requests.clear()
    artifacts.stage_k3s(s, tmp_path / "second", cache_dir=tmp_path / "cache")
    assert "/v1.28.3%2Bk3s2/k3s" in requests
    assert b"GLDEPLOY_K3S_STANDIN" in (tmp_path / "second/k3s").read_bytes()


def test_tampered_binary_is_refused_and_nothing_staged(server: tuple[str, list[str]], site: Path,
                                                        tmp_path: Path) -> None:
    url, _ = server
    with (site / VERSION / "k3s").open("ab") as fh:
        fh.write(b"# backdoor\n")
    dest = tmp_path / "dest"
    with pytest.raises(DeployError, match=r"sha256 is [0-9a-f]{64}, but sha256sum-amd64.txt lists"):
        artifacts.stage_k3s(load(K3S_RELEASE_URL=url), dest, cache_dir=tmp_path / "cache")
    assert not dest.exists()
    assert not (tmp_path / "cache" / VERSION / "amd64").exists()


def test_k3s_sha256_mismatch_is_refused(server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "dest"
    with pytest.raises(DeployError, match="K3S_SHA256"):
        artifacts.stage_k3s(load(K3S_RELEASE_URL=url, K3S_SHA256="a" * 64), dest, cache_dir=tmp_path / "c")
    assert not dest.exists()


def test_matching_k3s_sha256_is_accepted(server: tuple[str, list[str]], site: Path, tmp_path: Path) -> None:
    url, _ = server
    digest = hashlib.sha256((site / VERSION / "k3s").read_bytes()).hexdigest()
    mode = artifacts.stage_k3s(load(K3S_RELEASE_URL=url, K3S_SHA256=digest), tmp_path / "d",
                               cache_dir=tmp_path / "c")
    assert mode == "standin"


def test_missing_release_gives_a_clear_404_error(server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DeployError) as info:
        artifacts.stage_k3s(load(K3S_RELEASE_URL=url, K3S_VERSION="v1.29.0+k3s1"), tmp_path / "d",
                            cache_dir=tmp_path / "c")
    message = str(info.value)
    assert f"{url}/v1.29.0%2Bk3s1/k3s" in message and "HTTP 404" in message and "K3S_VERSION" in message
    assert not (tmp_path / "d").exists()


def test_file_url_release(site: Path, tmp_path: Path) -> None:
    mode = artifacts.stage_k3s(load(K3S_RELEASE_URL=site.as_uri()), tmp_path / "d", cache_dir=tmp_path / "c")
    assert mode == "standin"


def test_local_artifacts_dir_with_airgap_images(site: Path, tmp_path: Path) -> None:
    release = site / VERSION
    (release / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"images")
    write_sums(release)
    dest = tmp_path / "dest"
    (dest).mkdir()
    (dest / "k3s-airgap-images-amd64.tar").write_bytes(b"stale from an older bundle")
    assert artifacts.stage_k3s(load(K3S_ARTIFACTS_DIR=str(release)), dest) == "standin"
    assert sorted(p.name for p in dest.iterdir()) == ["k3s", "k3s-airgap-images-amd64.tar.zst",
                                                      "sha256sum-amd64.txt"]


def test_unlisted_airgap_tarball_is_refused(site: Path, tmp_path: Path) -> None:
    release = site / VERSION
    (release / "k3s-airgap-images-amd64.tar").write_bytes(b"unlisted")
    with pytest.raises(DeployError, match="not listed"):
        artifacts.stage_k3s(load(K3S_ARTIFACTS_DIR=str(release)), tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_artifacts_dir_without_sums_is_config_error(site: Path, tmp_path: Path) -> None:
    release = site / VERSION
    (release / "sha256sum-amd64.txt").unlink()
    with pytest.raises(ConfigError, match="sha256sum-amd64.txt missing"):
        artifacts.stage_k3s(load(K3S_ARTIFACTS_DIR=str(release)), tmp_path / "d")


def test_real_binary_is_reported_real(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    release.mkdir()
    (release / "k3s").write_bytes(b"\x7fELF pretend real k3s")
    write_sums(release)
    assert artifacts.stage_k3s(load(K3S_ARTIFACTS_DIR=str(release)), tmp_path / "d") == "real"


def test_damaged_sums_file_names_the_line(site: Path, tmp_path: Path) -> None:
    release = site / VERSION
    with (release / "sha256sum-amd64.txt").open("a") as fh:
        fh.write("<html>rate limited</html>\n")
    with pytest.raises(DeployError, match=r"sha256sum-amd64.txt:2: expected"):
        artifacts.stage_k3s(load(K3S_ARTIFACTS_DIR=str(release)), tmp_path / "d")


def test_release_url_quotes_plus() -> None:
    assert artifacts.release_url("https://github.com/k3s-io/k3s/releases/download/", VERSION, "k3s") == \
        "https://github.com/k3s-io/k3s/releases/download/v1.28.3%2Bk3s2/k3s"
