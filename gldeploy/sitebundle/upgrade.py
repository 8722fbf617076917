"""Upgrade bundles: `invoke bundle.build --upgrade-from OLD` (online side), checked by bundle.verify --base.

OLD is what the operator already carried to the site: the previous bundle's directory or its
manifest.json (a bare version string cannot say what the old bundle held). Its manifest is read and
checked first (canonical form, its signature when one lies beside it, its line in SHA256SUMS when
that lies beside it); then the new bundle is compared with it: same architecture, topology and OS
release, newer versions (a downgrade only with --allow-downgrade), something changed. Every refusal
is a ConfigError (exit 2) raised before anything is written.

The upgrade bundle holds only the files whose content (sha256) changed or is new, plus verify.sh
(the verifier travels with what it verifies); manifest.json says what it relies on: every other
file of the new bundle with the size and sha256 the base must hold (relies_on), the base manifest's
sha256, and the versions before and after (k3s, chart, backend, image, tool). It is signed and
verified exactly like a full bundle; with the base directory, verify also checks relies_on.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import backend
from ..day2 import versions as day2_versions
from ..errors import ConfigError, DeployError
from ..settings import Settings
from . import manifest as mf
from . import sign
from .tarwrite import Source
from .verify import FIX_REBUILD, sha256_path

SUFFIX = "-upgrade"  # gl-bundle-<topology>-<arch>-upgrade
OS_RELEASE = "debian-12"  # the supported target release (packages.SUITE bookworm); pinned as OS_RELEASE
FIX_BASE = ("give the previous bundle's directory (or its manifest.json) exactly as it was delivered to the "
            "site; rebuild a full bundle if it is lost")


@dataclass(frozen=True)
class Base:
    """The previous bundle an upgrade bundle applies to."""

    manifest: mf.Manifest
    sha256: str
    where: str
    directory: Path | None  # the old bundle directory, when OLD was one

    @property
    def files(self) -> dict[str, mf.Entry]:
        """Every file of the old bundle's version: its own files and, for an upgrade bundle, what it relied on."""
        relied = self.manifest.upgrade.relies_on if self.manifest.upgrade else ()
        return {e.path: e for e in (*self.manifest.files, *relied)}


def _signature(path: Path, sig: Path, signers: Path | None) -> str:
    """The old manifest's signature, checked in a scratch directory (the file may be named otherwise)."""
    with tempfile.TemporaryDirectory(prefix=".gl-base-") as tmp:
        shutil.copyfile(path, Path(tmp) / mf.MANIFEST)
        shutil.copyfile(sig, Path(tmp) / mf.SIGNATURE)
        try:
            return sign.verify(Path(tmp), required=signers is not None, allowed_signers=signers).detail
        except DeployError as exc:
            raise ConfigError(f"--upgrade-from {path}: the old manifest fails its signature ({exc}); it was "
                              f"changed after signing: {FIX_BASE}") from None


def load_base(old: Path, signers: Path | None = None) -> Base:
    """Read and check OLD (a bundle directory or a manifest.json); ConfigError for each refusal."""
    path = old / mf.MANIFEST if old.is_dir() else old
    where = f"--upgrade-from {old}"
    if not path.is_file():
        raise ConfigError(f"{where}: no {mf.MANIFEST} there; {FIX_BASE}")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: {path} cannot be read ({exc}); {FIX_BASE}") from None
    try:
        manifest = mf.parse(text, str(path))
    except mf.ManifestError as exc:
        raise ConfigError(f"{where}: {exc} (damaged or tampered); {FIX_BASE}") from None
    digest = hashlib.sha256(data).hexdigest()
    sig = path.with_name(path.name + ".sig")
    if sig.is_file():
        _signature(path, sig, signers)
    elif signers is not None:
        raise ConfigError(f"{where}: {sig.name} missing but --allowed-signers was given; {FIX_BASE}")
    sums = path.with_name(mf.SUMS)
    if path.name == mf.MANIFEST and sums.is_file():
        line = next((ln for ln in sums.read_text(errors="replace").splitlines() if ln.endswith(f"  {mf.MANIFEST}")), "")
        if line.split("  ", 1)[0] != digest:
            raise ConfigError(f"{where}: {path} has sha256 {digest}, {sums} lists another (the manifest was "
                              f"edited); {FIX_BASE}")
    return Base(manifest, digest, where, path.parent if path.name == mf.MANIFEST else None)


def to_versions(settings: Settings, tool: str) -> dict[str, str]:
    """The versions a build of these settings carries (the names of versions.json)."""
    chart = day2_versions.chart()
    return {"k3s": settings.k3s_version, "chart": chart["version"], "backend_version": settings.backend_version,
            "image": backend.containerd_name(settings), "tool": tool}


def pins(settings: Settings) -> dict[str, str]:
    """The extra pins every bundle records so a later upgrade bundle can be compared with it."""
    return {"CHART_VERSION": day2_versions.chart()["version"], "OS_RELEASE": OS_RELEASE,
            "BACKEND_CONTAINERD_IMAGE": backend.containerd_name(settings)}


def from_versions(base: Base) -> dict[str, str]:
    """The old bundle's versions: from an upgrade bundle's own record, else from its pins."""
    m = base.manifest
    if m.upgrade is not None:
        return dict(m.upgrade.to_versions)
    p = m.pins
    return {"k3s": p.get("K3S_VERSION", ""), "chart": p.get("CHART_VERSION", "unknown"),
            "backend_version": p.get("BACKEND_VERSION", ""),
            "image": p.get("BACKEND_CONTAINERD_IMAGE", p.get("BACKEND_IMAGE", "")), "tool": m.tool}


def version_key(text: str) -> tuple[int, ...]:
    """v1.29.4+k3s1 -> (1, 29, 4, 1); 0.2.0 -> (0, 2, 0): the numbers in order (k3s' '3' of 'k3s' skipped)."""
    return tuple(int(n) for n in re.findall(r"\d+", text.replace("+k3s", "+")))


def check_compatible(base: Base, settings: Settings, new: dict[str, str], allow_downgrade: bool) -> dict[str, str]:
    """Refuse another arch/topology/OS release, the same versions, or a downgrade (unless allowed)."""
    m, where = base.manifest, base.where
    if m.arch != settings.k3s_arch:
        raise ConfigError(f"{where}: the old bundle is for {m.arch}, this build for {settings.k3s_arch} "
                          f"(K3S_ARCH, {settings.origin('K3S_ARCH')}); an upgrade bundle only applies to the same "
                          f"architecture: build a full bundle instead")
    if m.topology != settings.topology:
        raise ConfigError(f"{where}: the old bundle is for topology {m.topology}, this build for "
                          f"{settings.topology}; changing topology is a new install: build a full bundle")
    old_os = m.pins.get("OS_RELEASE", OS_RELEASE)  # bundles before the pin existed were built for debian-12
    if old_os != OS_RELEASE:
        raise ConfigError(f"{where}: the old bundle is for {old_os}, this build for {OS_RELEASE}; the OS packages "
                          f"differ entirely: build a full bundle instead")
    old = from_versions(base)
    if old == new:
        raise ConfigError(f"{where}: the old bundle already has these versions ({_show(new)}); nothing to "
                          f"upgrade: change K3S_VERSION / BACKEND_VERSION or the chart first")
    for name in ("k3s", "chart", "backend_version"):
        a, b = version_key(old.get(name, "")), version_key(new[name])
        if a and b and b < a and not allow_downgrade:
            raise ConfigError(f"{where}: {name} {new[name]} is older than the old bundle's {old[name]}: a "
                              f"downgrade, refused (Kubernetes does not support them; the datastore may "
                              f"already be migrated); pass --allow-downgrade to build it anyway")
    return old


def _show(v: dict[str, str]) -> str:
    return ", ".join(f"{k} {v[k]}" for k in sorted(v))


@dataclass
class Selection:
    """The new bundle's files split: what the upgrade bundle carries and what the base already holds."""

    carried: list[Source]
    relied: list[mf.Entry]
    bytes_read: int = 0


def select(sources: list[Source], base: Base) -> Selection:
    """Compare each new file with the base by size, then sha256; verify.sh is always carried."""
    old = base.files
    chosen = Selection([], [])
    for s in sources:
        entry = old.get(s.rel)
        size = s.src.stat().st_size
        if s.rel != mf.VERIFIER and entry is not None and entry.size == size:
            chosen.bytes_read += size
            if sha256_path(s.src) == entry.sha256:
                chosen.relied.append(mf.Entry(s.rel, size, entry.sha256, s.kind, s.version, s.origin))
                continue
        chosen.carried.append(s)
    if all(s.rel == mf.VERIFIER for s in chosen.carried):
        raise ConfigError(f"{base.where}: every file of the new bundle is already in the old one with the same "
                          f"content; nothing to upgrade")
    return chosen


def check_base_files(root: Path, manifest: mf.Manifest, base_dir: Path) -> int:
    """verify --base: the files an upgrade bundle relies on are in base_dir with their size and sha256."""
    up = manifest.upgrade
    if up is None:
        raise ConfigError(f"--base {base_dir}: {root} is a full bundle, not an upgrade bundle; drop --base")
    if not base_dir.is_dir():
        raise ConfigError(f"--base {base_dir}: not a directory; give the installed (previous) bundle directory")
    base_manifest = base_dir / mf.MANIFEST
    if base_manifest.is_file() and sha256_path(base_manifest) != up.base_manifest_sha256:
        raise DeployError(f"--base {base_dir}: its {mf.MANIFEST} is not the one this upgrade bundle was built "
                          f"against (sha256 {up.base_manifest_sha256}); use that bundle, or a full bundle")
    missing = sorted(e.path for e in up.relies_on if not (base_dir / e.path).is_file())
    if missing:
        raise DeployError(f"--base {base_dir}: file(s) the upgrade relies on are missing: {', '.join(missing[:5])}; "
                          f"copy the previous bundle again, or {FIX_REBUILD}")
    wrong = sorted(e.path for e in up.relies_on if (base_dir / e.path).stat().st_size != e.size
                   or sha256_path(base_dir / e.path) != e.sha256)
    if wrong:
        raise DeployError(f"--base {base_dir}: file(s) the upgrade relies on differ (damaged, edited or another "
                          f"version): {', '.join(wrong[:5])}; copy the previous bundle again, or {FIX_REBUILD}")
    return len(up.relies_on)
