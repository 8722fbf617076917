"""Build the sample GL-Native Execution Backend image: a reproducible OCI image archive.

The image holds the host's static busybox and two files, and serves them with busybox httpd:
``/healthz`` answers ``ok`` and ``/version`` the version. Everything is built with the standard
library (tarfile, gzip, hashlib) with fixed timestamps and owners, so the same version and busybox
always give the same bytes and the same manifest digest. The archive is a tar of an OCI image
layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``): ``skopeo copy oci-archive:...`` and
k3s (``ctr images import``) accept it.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import keytypes
from .errors import ConfigError, DeployError

BUSYBOX = Path("/bin/busybox")
USER = "65532:65532"
PORT = 8080
ENTRYPOINT = ["/bin/busybox", "httpd", "-f", "-p", str(PORT), "-h", "/www"]
EPOCH = 0  # mtime of every file; SOURCE_DATE_EPOCH-style fixed value
CREATED = "1970-01-01T00:00:00Z"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
# containerd (and so k3s's image import) names an imported image from this annotation; the OCI
# ref.name alone is only a tag and would leave the image without a usable name.
CONTAINERD_NAME = "io.containerd.image.name"
_ELF_ARCH = {0x3E: "amd64", 0xB7: "arm64"}


@dataclass(frozen=True)
class SampleImage:
    """A built archive and what identifies it."""

    path: Path
    digest: str  # sha256:<hex> of the image manifest (what a registry reports after a push)
    ref_name: str  # the tag inside the archive (org.opencontainers.image.ref.name)


def archive_name(version: str) -> str:
    """File name of the archive for a version, as the bundle's artifacts/images/ expects it."""
    return f"execution-backend-{version}.oci.tar"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def elf_arch(binary: bytes, where: Path) -> str:
    """OCI architecture of a static ELF64 executable; refuses dynamic or foreign binaries."""
    if binary[:4] != b"\x7fELF" or binary[4] != 2 or binary[5] != 1:
        raise DeployError(f"{where}: not a 64-bit little-endian ELF executable; install busybox-static "
                          f"(apt-get install busybox-static)")
    machine = struct.unpack_from("<H", binary, 18)[0]
    if machine not in _ELF_ARCH:
        raise DeployError(f"{where}: ELF machine 0x{machine:x} is not amd64 or arm64")
    phoff = struct.unpack_from("<Q", binary, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", binary, 0x36)
    for i in range(phnum):
        if struct.unpack_from("<I", binary, phoff + i * phentsize)[0] == 3:  # PT_INTERP
            raise DeployError(f"{where}: busybox is dynamically linked and would not run in an empty "
                              f"image; install busybox-static (apt-get install busybox-static)")
    return _ELF_ARCH[machine]


class _Tar:
    """A tar writer with fixed owners and mtimes (reproducible)."""

    def __init__(self, fileobj: io.BufferedIOBase | io.BytesIO) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, size, EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def dir(self, name: str, mode: int = 0o755) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.tar.addfile(self._info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


def _layer(busybox: bytes, version: str) -> bytes:
    buf = io.BytesIO()
    tar = _Tar(buf)
    tar.dir("bin/")
    tar.file("bin/busybox", busybox, 0o755)
    tar.dir("tmp/", 0o1777)
    tar.dir("www/")
    tar.file("www/healthz", b"ok")
    tar.file("www/version", version.encode())
    tar.close()
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def _blobs(version: str, busybox: bytes, arch: str) -> tuple[dict[str, bytes], str]:
    """All blobs of the image keyed by digest, and the manifest digest."""
    layer_tar = _layer(busybox, version)
    layer = _gzip(layer_tar)
    config = _canonical({
        "created": CREATED, "architecture": arch, "os": "linux",
        "config": {"User": USER, "Env": ["PATH=/bin"], "ExposedPorts": {f"{PORT}/tcp": {}}, "Entrypoint": ENTRYPOINT,
                   "WorkingDir": "/www", "Labels": {"org.opencontainers.image.title": "execution-backend",
                                                    "org.opencontainers.image.version": version}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
        "history": [{"created": CREATED, "created_by": "gldeploy.image.build_sample_image"}],
    })
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": MT_LAYER, "digest": _digest(layer), "size": len(layer)}],
        "annotations": {"org.opencontainers.image.version": version},
    })
    blobs = {_digest(b): b for b in (layer, config, manifest)}
    return blobs, _digest(manifest)


def build_sample_image_info(version: str, dest_dir: Path, *, busybox: Path = BUSYBOX,
                            image_name: str | None = None) -> SampleImage:
    """Write ``execution-backend-<version>.oci.tar`` into dest_dir; return its path and digest.

    ``image_name`` (e.g. ``gldeploy.backend.image_ref(settings)``) is recorded as
    ``io.containerd.image.name`` so that k3s imports the archive under the name the pods use.
    """
    if image_name is not None and not image_name.endswith(f":{version}"):
        raise ConfigError(f"sample image name {image_name!r} must end in the tag :{version}")
    try:
        keytypes.BACKEND_VERSION(version)
    except ValueError as exc:
        raise ConfigError(f"sample image version {version!r} is invalid: expected {exc}") from None
    try:
        binary = busybox.read_bytes()
    except FileNotFoundError:
        raise DeployError(f"{busybox}: not found; the sample image needs a static busybox. Install it "
                          f"with `apt-get install busybox-static`") from None
    except OSError as exc:
        raise DeployError(f"{busybox}: cannot read: {exc.strerror}") from None
    arch = elf_arch(binary, busybox)
    blobs, manifest_digest = _blobs(version, binary, arch)
    index = _canonical({
        "schemaVersion": 2, "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_MANIFEST, "digest": manifest_digest,
                       "size": len(blobs[manifest_digest]),
                       "annotations": {REF_NAME: version,
                                       **({CONTAINERD_NAME: image_name} if image_name else {})},
                       "platform": {"architecture": arch, "os": "linux"}}],
    })
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / archive_name(version)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            tar = _Tar(out)
            tar.file("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
            tar.file("index.json", index)
            tar.dir("blobs/")
            tar.dir("blobs/sha256/")
            for digest in sorted(blobs):
                tar.file(f"blobs/sha256/{digest.split(':', 1)[1]}", blobs[digest])
            tar.close()
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return SampleImage(dest, manifest_digest, version)


def build_sample_image(version: str, dest_dir: Path, *, busybox: Path = BUSYBOX,
                       image_name: str | None = None) -> Path:
    """Write ``execution-backend-<version>.oci.tar`` into dest_dir and return its path."""
    return build_sample_image_info(version, dest_dir, busybox=busybox, image_name=image_name).path


def manifest_digest(archive: Path, ref_name: str | None = None) -> str:
    """The manifest digest recorded in an OCI archive's index.json (for ``ref_name``, or the only one).

    The manifest blob is re-hashed, so a tampered archive is reported rather than trusted.
    """
    try:
        with tarfile.open(archive, mode="r:") as tar:
            index = json.load(_member(tar, "index.json", archive))
            entries = [m for m in index.get("manifests", [])
                       if ref_name is None or m.get("annotations", {}).get(REF_NAME) == ref_name]
            if len(entries) != 1:
                names = [m.get("annotations", {}).get(REF_NAME) for m in index.get("manifests", [])]
                raise DeployError(f"{archive}: expected one image{f' tagged {ref_name!r}' if ref_name else ''} "
                                  f"in index.json, found tags {names}")
            digest = entries[0]["digest"]
            blob = _member(tar, f"blobs/{digest.replace(':', '/', 1)}", archive).read()
    except (OSError, tarfile.TarError, ValueError, KeyError) as exc:
        raise DeployError(f"{archive}: not a readable OCI image archive: {exc}") from None
    if _digest(blob) != digest:
        raise DeployError(f"{archive}: manifest blob does not match its digest {digest}; the archive is corrupt")
    return str(digest)


def _member(tar: tarfile.TarFile, name: str, archive: Path) -> io.BufferedReader:
    try:
        handle = tar.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise DeployError(f"{archive}: {name} missing; not an OCI image archive (tar of an OCI layout)")
    return handle  # type: ignore[return-value]
