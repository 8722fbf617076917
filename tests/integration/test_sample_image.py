"""The sample backend image: accepted by skopeo and umoci, serves /healthz and /version, reproducible."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from gldeploy import image
from gldeploy.errors import ConfigError, DeployError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> image.SampleImage:
    return image.build_sample_image_info("v1.1", tmp_path_factory.mktemp("img"),
                                         image_name="gl-native/execution-backend:v1.1")


def test_skopeo_accepts_the_archive_and_reports_our_digest(built: image.SampleImage) -> None:
    assert built.path.name == "execution-backend-v1.1.oci.tar"
    out = subprocess.run(["skopeo", "inspect", f"oci-archive:{built.path}:v1.1"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    info = json.loads(out)
    assert info["Digest"] == built.digest == image.manifest_digest(built.path)
    assert info["Os"] == "linux" and info["Labels"]["org.opencontainers.image.version"] == "v1.1"
    raw = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{built.path}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    config = json.loads(raw)["config"]
    assert config["Entrypoint"] == ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    assert config["User"] == "65532:65532" and "8080/tcp" in config["ExposedPorts"]


def test_index_names_the_image_for_skopeo_and_containerd(built: image.SampleImage) -> None:
    with tarfile.open(built.path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[arg-type]
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid) == (0, 0, 0), member.name
    (entry,) = index["manifests"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v1.1",
                                    "io.containerd.image.name": "gl-native/execution-backend:v1.1"}


def _wait_get(url: str, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bytes(resp.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_unpacked_image_serves_healthz_and_version_as_its_user(built: image.SampleImage, tmp_path: Path,
                                                                loopback_port: int) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(built.path) as tar:
        tar.extractall(layout, filter="data")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:v1.1", str(tmp_path / "bundle")],
                   check=True, capture_output=True, timeout=60)
    rootfs = tmp_path / "bundle" / "rootfs"
    spec = json.loads((tmp_path / "bundle" / "config.json").read_text())
    args = spec["process"]["args"]
    assert args == image.ENTRYPOINT and spec["process"]["user"]["uid"] == 65532
    port = loopback_port
    args = [a if a != "8080" else f"127.0.0.1:{port}" for a in args]
    # run the image's own entrypoint inside its rootfs, as its own user, like a container would
    proc = subprocess.Popen(["chroot", "--userspec=65532:65532", str(rootfs), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert _wait_get(f"http://127.0.0.1:{port}/healthz", proc) == b"ok"
        assert _wait_get(f"http://127.0.0.1:{port}/version", proc) == b"v1.1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_building_twice_gives_identical_bytes_and_digest(built: image.SampleImage, tmp_path: Path) -> None:
    again = image.build_sample_image_info("v1.1", tmp_path, image_name="gl-native/execution-backend:v1.1")
    assert again.digest == built.digest
    assert again.path.read_bytes() == built.path.read_bytes()
    other = image.build_sample_image_info("v1.2", tmp_path)
    assert other.digest != built.digest and other.path.name == "execution-backend-v1.2.oci.tar"
    assert image.build_sample_image("v1.1", tmp_path / "p") == tmp_path / "p" / "execution-backend-v1.1.oci.tar"


def test_missing_busybox_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="not found.*busybox-static"):
        image.build_sample_image("v1.1", tmp_path, busybox=tmp_path / "no-busybox")
    assert list(tmp_path.iterdir()) == []


def test_dynamic_busybox_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="dynamically linked"):
        image.build_sample_image("v1.1", tmp_path, busybox=Path("/bin/bash"))


def test_bad_version_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a version such as v1.1") as info:
        image.build_sample_image("../v1", tmp_path)
    assert info.value.exit_code == 2 and list(tmp_path.iterdir()) == []


def test_tampered_archive_is_detected(built: image.SampleImage, tmp_path: Path) -> None:
    bad = tmp_path / "bad.oci.tar"
    with tarfile.open(built.path) as src, tarfile.open(bad, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == f"blobs/sha256/{built.digest.split(':')[1]}":
                body = data.read().replace(b'"schemaVersion":2', b'"schemaVersion":3')  # type: ignore[union-attr]
                member.size = len(body)
                data = io.BytesIO(body)  # type: ignore[assignment]
            dst.addfile(member, data)
    with pytest.raises(DeployError, match="does not match its digest"):
        image.manifest_digest(bad)
