"""The images the bastion imports into the site registry: OCI archives (*.oci.tar) in SITE_IMAGES_DIR,
each naming its image in the io.containerd.image.name annotation (as k3s' air-gap tooling and
gldeploy.image write them). Each is pushed under its upstream path (docker.io/rancher/mirrored-pause:3.6
-> <REGISTRY>/<project/>rancher/mirrored-pause:3.6), which is what the registries.yaml mirrors ask for.
"""
from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..image import CONTAINERD_NAME, REF_NAME

LIST_NAME = "images.list"  # archive<TAB>path:tag, one a line, read by the bastion phase and checklist.sh
_NAME = re.compile(r"(?:(?P<host>[a-z0-9.-]+\.[a-z0-9.-]+(?::[0-9]+)?|localhost(?::[0-9]+)?)/)?"
                   r"(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
                   r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")


@dataclass(frozen=True)
class SiteImage:
    archive: Path
    source: str  # the full upstream name, e.g. docker.io/rancher/mirrored-pause:3.6
    target: str  # path:tag in the site registry, e.g. rancher/mirrored-pause:3.6
    size: int


def _annotations(archive: Path) -> dict[str, str]:
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            if member is None:
                raise KeyError("index.json")
            index = json.load(member)
    except (tarfile.TarError, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ConfigError(f"{archive}: not an OCI image archive (no readable index.json: {exc}); export it "
                          f"with skopeo copy ... oci-archive:{archive.name}") from None
    manifests = index.get("manifests") or [{}]
    found = manifests[0].get("annotations") or {}
    return {str(k): str(v) for k, v in found.items()}


def target_of(name: str, prefix: str, where: str) -> tuple[str, str]:
    """(normalised upstream name, path:tag in the site registry) of an image name."""
    match = _NAME.fullmatch(name)
    if not match:
        raise ConfigError(f"{where}: image name {name!r} is not host/path:tag (e.g. "
                          f"docker.io/rancher/mirrored-pause:3.6)")
    host, path = match["host"] or "docker.io", match["path"]
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return f"{host}/{path}:{match['tag']}", f"{prefix}{path}:{match['tag']}"


def scan(images_dir: Path, prefix: str = "") -> list[SiteImage]:
    """Every archive of the directory with its target; two images for one target are refused."""
    if not images_dir.is_dir():
        raise ConfigError(f"SITE_IMAGES_DIR={images_dir}: not a directory; point it at the OCI archives "
                          f"(*.oci.tar) to import")
    out: list[SiteImage] = []
    seen: dict[str, str] = {}
    for archive in sorted(images_dir.glob("*.oci.tar")):
        notes = _annotations(archive)
        name = notes.get(CONTAINERD_NAME, "")
        if not name:
            raise ConfigError(f"{archive}: the archive does not name its image ({CONTAINERD_NAME} annotation "
                              f"missing; {REF_NAME}={notes.get(REF_NAME, '')!r} is only a tag); export it with "
                              f"the full name, e.g. skopeo copy docker://docker.io/x/y:1 "
                              f"oci-archive:y.oci.tar:docker.io/x/y:1")
        source, target = target_of(name, prefix, str(archive))
        if target in seen:
            raise ConfigError(f"{archive}: {source} and {seen[target]} would both be {target} in the site "
                              f"registry; keep one of them")
        seen[target] = source
        out.append(SiteImage(archive, source, target, archive.stat().st_size))
    if not out:
        raise ConfigError(f"SITE_IMAGES_DIR={images_dir}: no *.oci.tar archives; add the images the site needs "
                          f"(k3s' system images and the backend)")
    return out


def list_text(images: list[SiteImage]) -> str:
    return "".join(f"{i.archive.name}\t{i.target}\t{i.size}\n" for i in images)
