"""Verify a site bundle (offline side in Python; verify.sh does the same in bash): `invoke bundle.verify`.

Order, as in verify.sh: the signature (when required or present), manifest.json's form, the
architecture (--arch), SHA256SUMS against the manifest, the file set (no missing, no extra file;
declared secrets may be present or absent), sizes, then the sha256 of every file, hashed in
parallel (hashlib releases the GIL on big buffers); for an upgrade bundle given --base, the files
it relies on in the previous bundle (upgrade.check_base_files). Exit 1 (DeployError) for a damaged or tampered
bundle, exit 2 (ConfigError) for bad options or a bundle for another architecture.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DeployError
from . import manifest as mf
from . import sign

_CHUNK = 1 << 20
_SHOW = 5
FIX_REBUILD = "copy the bundle again from the media (or rebuild it with invoke bundle.build); install nothing from it"


@dataclass(frozen=True)
class VerifyReport:
    """A verified bundle: how many files and bytes, and what the signature check said."""

    files: int
    bytes: int
    signature: sign.SignatureCheck
    manifest: mf.Manifest
    base_files: int = 0  # an upgrade bundle verified with --base: the relied-on files checked there


def _names(paths: list[str]) -> str:
    return ", ".join(paths[:_SHOW]) + (f" and {len(paths) - _SHOW} more" if len(paths) > _SHOW else "")


def sha256_path(path: Path) -> str:
    """sha256 of one file in 1 MiB reads (large buffers: hashlib runs without the GIL)."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as fh:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def hash_all(root: Path, rels: list[str], jobs: int | None = None) -> dict[str, str]:
    """sha256 of many files across cores, biggest first so one large file does not finish last."""
    order = sorted(rels, key=lambda r: -(root / r).stat().st_size)
    workers = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(order, pool.map(lambda r: sha256_path(root / r), order)))


def _present(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def _check_sums(root: Path, manifest: mf.Manifest, manifest_sha: str) -> None:
    sums = root / mf.SUMS
    if not sums.is_file():
        raise DeployError(f"{sums}: missing; {FIX_REBUILD}")
    expected = mf.sums_text(manifest, manifest_sha)
    if sums.read_text(errors="replace") == expected:
        return
    have = set(sums.read_text(errors="replace").splitlines())
    bad = sorted({line.split("  ", 1)[-1] for line in set(expected.splitlines()) ^ have})
    raise DeployError(f"{sums}: disagrees with {mf.MANIFEST} about {_names(bad)}; the sums were edited or "
                      f"belong to another build: {FIX_REBUILD}")


def verify_bundle(root: Path, *, arch: str = "", require_signature: bool = False,
                  allowed_signers: Path | None = None, identity: str | None = None,
                  jobs: int | None = None, base: Path | None = None) -> VerifyReport:
    """Check everything the module docstring lists; raise on the first kind of fault, naming files.
    base: for an upgrade bundle, the previous bundle directory holding the files it relies on."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory; give the unpacked bundle directory")
    manifest_path = root / mf.MANIFEST
    if not manifest_path.is_file():
        raise DeployError(f"{manifest_path}: missing, so nothing in {root} can be trusted; {FIX_REBUILD}")
    signature = sign.verify(root, required=require_signature, allowed_signers=allowed_signers, identity=identity)
    text = manifest_path.read_bytes()
    try:
        manifest = mf.parse(text.decode("utf-8", errors="replace"), str(manifest_path))
    except mf.ManifestError as exc:
        raise DeployError(f"{exc}; {FIX_REBUILD}") from None
    if arch and manifest.arch != arch:
        raise ConfigError(f"{manifest_path}: bundle built for {manifest.arch}, this host needs {arch}; "
                          f"use the {arch} bundle (build it with K3S_ARCH={arch})")
    _check_sums(root, manifest, hashlib.sha256(text).hexdigest())
    listed = {e.path for e in manifest.files}
    present = _present(root)
    missing = sorted(listed - present)
    if missing:
        raise DeployError(f"{root}: file(s) missing: {_names(missing)}; {FIX_REBUILD}")
    extra = sorted(present - listed - set(mf.META) - {s.path for s in manifest.secrets})
    if extra:
        raise DeployError(f"{root}: file(s) not in {mf.MANIFEST}: {_names(extra)}; remove them (nothing "
                          f"unlisted may ride along) or {FIX_REBUILD}")
    not_files = sorted(e.path for e in manifest.files if (root / e.path).is_symlink()
                       or not (root / e.path).is_file())
    if not_files:
        raise DeployError(f"{root}: not regular files: {_names(not_files)}; {FIX_REBUILD}")
    wrong_size = sorted(e.path for e in manifest.files if (root / e.path).stat().st_size != e.size)
    if wrong_size:
        raise DeployError(f"{root}: size differs from {mf.MANIFEST} (truncated or grown): "
                          f"{_names(wrong_size)}; {FIX_REBUILD}")
    digests = hash_all(root, sorted(listed), jobs)
    wrong = sorted(e.path for e in manifest.files if digests[e.path] != e.sha256)
    if wrong:
        raise DeployError(f"{root}: sha256 differs from {mf.MANIFEST} (damaged or tampered): "
                          f"{_names(wrong)}; {FIX_REBUILD}")
    base_files = 0
    if base is not None:
        from .upgrade import check_base_files  # upgrade imports this module
        base_files = check_base_files(root, manifest, base)
    return VerifyReport(len(manifest.files), sum(e.size for e in manifest.files), signature, manifest, base_files)
