"""The site's own backend image archive (BACKEND_IMAGE_ARCHIVE): which images an archive names, and
whether it carries the backend image, read from its index.json / manifest.json without extracting it.

An OCI archive names its image in the ``io.containerd.image.name`` annotation of index.json (what
containerd imports it as); a ``docker save`` archive in the ``RepoTags`` of manifest.json, usually in
the short form (``gl-native/execution-backend:v1.1``), which containerd's import expands with
``docker.io/`` and ``docker.io/library/``. lib/image_check.sh (phase 01) matches the same forms.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import IO, Any

from . import backend
from .errors import ConfigError
from .image import CONTAINERD_NAME
from .settings import Settings

# the archive suffixes the host phases look for in artifacts/images (lib/image_check.sh, lib/backend_deploy.sh)
SUFFIXES = (".tar", ".tar.gz")
_MEMBERS = ("index.json", "manifest.json")


def name_forms(ref: str) -> tuple[str, ...]:
    """The names an archive may carry `ref` under: itself and the short forms docker save writes."""
    if ref.startswith("docker.io/library/"):
        return ref, ref[len("docker.io/library/"):], ref[len("docker.io/"):]
    if ref.startswith("docker.io/"):
        return ref, ref[len("docker.io/"):]
    return (ref,)


def _names_in(member: str, doc: Any) -> list[str]:
    if member == "index.json" and isinstance(doc, dict):
        return [str(m.get("annotations", {}).get(CONTAINERD_NAME)) for m in doc.get("manifests", [])
                if isinstance(m, dict) and isinstance(m.get("annotations"), dict)
                and m["annotations"].get(CONTAINERD_NAME)]
    if member == "manifest.json" and isinstance(doc, list):
        return [str(tag) for entry in doc if isinstance(entry, dict) for tag in entry.get("RepoTags") or []]
    return []


def image_names(archive: Path) -> list[str]:
    """The image names an OCI or docker archive carries; ValueError when it is neither.

    Only the tar headers are walked and the two small JSON members read: nothing is extracted.
    """
    found: list[str] = []
    seen: set[str] = set()
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for info in tar:
                name = info.name[2:] if info.name.startswith("./") else info.name
                if name in _MEMBERS and info.isfile() and name not in seen:
                    handle: IO[bytes] | None = tar.extractfile(info)
                    if handle is not None:
                        seen.add(name)
                        found += _names_in(name, json.load(handle))
    except tarfile.ReadError:
        raise ValueError("not a tar archive (nor a gzip-compressed one)") from None
    except (tarfile.TarError, OSError, json.JSONDecodeError, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"not a readable image archive ({' '.join(str(exc).split())})") from None
    if not seen:
        raise ValueError("no index.json or manifest.json in it")
    return found


def check(settings: Settings) -> Path:
    """BACKEND_IMAGE_ARCHIVE as a path, after making sure it carries BACKEND_IMAGE_REF; else ConfigError
    naming the key, what the archive carries and how to export the right one."""
    value = settings.backend_image_archive
    path = Path(value).expanduser()
    where = f"{settings.origin('BACKEND_IMAGE_ARCHIVE')}: BACKEND_IMAGE_ARCHIVE={value}"
    ref = backend.containerd_name(settings)
    if not path.name.endswith(SUFFIXES):
        raise ConfigError(f"{where}: expected a .tar or .tar.gz image archive (docker save -o FILE.tar, or skopeo "
                          f"copy ... oci-archive:FILE.oci.tar:{ref}); decompress a .tar.zst with zstd -d first")
    try:
        names = image_names(path)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}; expected an OCI or docker image archive with index.json or "
                          f"manifest.json (docker save -o FILE.tar IMAGE:TAG)") from None
    if not set(name_forms(ref)) & set(names):
        carried = ", ".join(names) if names else "no image name"
        raise ConfigError(f"{where}: the archive does not carry {ref} (BACKEND_IMAGE:BACKEND_VERSION as "
                          f"containerd names it); it carries {carried}. Export that image: docker save -o "
                          f"{path.name} {ref}, or skopeo copy docker://{ref} oci-archive:{path.name}:{ref}")
    return path
