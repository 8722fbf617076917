"""k3s release artifacts on the control host: fetch, verify, cache and stage into a bundle.

`stage_k3s(settings, dest)` fills a bundle's ``artifacts/k3s`` directory from K3S_ARTIFACTS_DIR
(a local copy of a release) or by downloading K3S_RELEASE_URL/<version, '+' as %2B>/<asset>
(http, https or file URLs). The binary is checked against the release's ``sha256sum-<arch>.txt``
and, when set, K3S_SHA256; airgap image tarballs present next to it must be listed in the sums
file and match. Nothing is staged unless everything verifies (DeployError otherwise).

Downloads are cached in ``~/.cache/gl-deploy/k3s/<version>/<arch>/``; a cache entry is re-verified
on every use, so a corrupted cache is refetched rather than trusted.

Stand-in detection: the test-only k3s stand-in (tests/fixtures/k3s_standin/k3s) carries the
bytes ``GLDEPLOY_K3S_STANDIN``; a binary containing them is reported as mode "standin", any other
verified binary as "real". lib/k3s.sh uses the same marker on the host (k3s_mode).
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable

from .errors import ConfigError, DeployError
from .settings import Settings

STANDIN_MARKER = b"GLDEPLOY_K3S_STANDIN"
DOWNLOAD_TIMEOUT = 60  # seconds per network operation (connect / read), not per file
_CHUNK = 1 << 20
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)$")


def binary_name(arch: str) -> str:
    """Release asset name of the k3s binary: `k3s` on amd64, `k3s-<arch>` otherwise."""
    return "k3s" if arch == "amd64" else f"k3s-{arch}"


def sums_name(arch: str) -> str:
    """Release asset listing the sha256 of every other asset."""
    return f"sha256sum-{arch}.txt"


def airgap_names(arch: str) -> tuple[str, ...]:
    """Possible names of the airgap image tarball of a release."""
    return tuple(f"k3s-airgap-images-{arch}.tar{ext}" for ext in ("", ".gz", ".zst"))


def default_cache_dir() -> Path:
    """~/.cache/gl-deploy/k3s (the version and arch are appended per release)."""
    return Path.home() / ".cache" / "gl-deploy" / "k3s"


def release_url(base: str, version: str, asset: str) -> str:
    """URL of a release asset, the version path-quoted ('+' becomes %2B) as GitHub expects."""
    return f"{base.rstrip('/')}/{urllib.parse.quote(version, safe='')}/{asset}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_sums(path: Path) -> dict[str, str]:
    """Read a `<sha256>  <name>` list; refuse lines that are neither blank nor that shape."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = _SUM_LINE.match(line.strip())
        if not match:
            raise DeployError(f"{path}:{lineno}: expected '<sha256>  <file>', got {line.strip()[:80]!r}; "
                              f"the sums file is damaged, fetch it again from the same release")
        sums[match.group(2)] = match.group(1).lower()
    return sums


def is_standin(binary: Path) -> bool:
    """True when `binary` is the test stand-in (contains STANDIN_MARKER)."""
    tail = b""
    with binary.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            if STANDIN_MARKER in tail + block:
                return True
            tail = block[-len(STANDIN_MARKER):]
    return False


def verify_release(src: Path, settings: Settings) -> list[Path]:
    """Verify binary (+ present airgap tarballs) in `src`; return the files to stage."""
    arch = settings.k3s_arch
    binary, sums_file = src / binary_name(arch), src / sums_name(arch)
    sums = parse_sums(sums_file)
    if binary.name not in sums:
        raise DeployError(f"{sums_file} does not list {binary.name}; it is not the sums file of a k3s "
                          f"{arch} release")
    actual = sha256_file(binary)
    if actual != sums[binary.name]:
        raise DeployError(f"{binary}: sha256 is {actual}, but {sums_file.name} lists {sums[binary.name]}; "
                          f"the binary is damaged or tampered with, fetch release {settings.k3s_version} again")
    if settings.k3s_sha256 and actual != settings.k3s_sha256.lower():
        raise DeployError(f"{binary}: sha256 is {actual}, but K3S_SHA256 ({settings.origin('K3S_SHA256')}) "
                          f"is {settings.k3s_sha256}; check the pinned value and the release")
    files = [binary, sums_file]
    for name in airgap_names(arch):
        tarball = src / name
        if not tarball.is_file():
            continue
        if name not in sums:
            raise DeployError(f"{tarball}: not listed in {sums_file.name}; refusing an unverifiable image tarball")
        if sha256_file(tarball) != sums[name]:
            raise DeployError(f"{tarball}: sha256 does not match {sums_file.name}; fetch it again")
        files.append(tarball)
    return files


class ReleaseUnreachable(DeployError):
    """The release server could not be reached at all (no network, DNS, proxy); not a bad release."""


def _download(url: str, dest: Path) -> None:
    """Fetch one URL to `dest` (http, https, file), with errors that name the URL."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise ConfigError(f"K3S_RELEASE_URL: {url!r} is not an http(s):// or file:// URL")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise DeployError(f"download {url}: HTTP {exc.code} {exc.reason}; check K3S_VERSION and "
                          f"K3S_RELEASE_URL, or set K3S_ARTIFACTS_DIR to a local copy of the release") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReleaseUnreachable(f"download {url}: {reason}; check the network/proxy, or set K3S_ARTIFACTS_DIR "
                          f"to a local copy of the release") from None


def release_cache(settings: Settings, cache_dir: Path | None = None) -> Path:
    """Where the pinned release of `settings` is cached: <cache>/<version>/<arch>."""
    return (cache_dir or default_cache_dir()) / settings.k3s_version / settings.k3s_arch


def fetch_release(settings: Settings, cache_dir: Path | None = None, *, with_images: bool = False) -> Path:
    """The pinned release, downloaded (once) and verified in the cache; returns the cache directory.

    Raises ReleaseUnreachable when the release server cannot be reached at all.
    """
    return _fetch_to_cache(settings, release_cache(settings, cache_dir), with_images)


def _fetch_to_cache(settings: Settings, cache: Path, with_images: bool) -> Path:
    """Return a verified cache directory, downloading into it when missing or invalid."""
    arch, version = settings.k3s_arch, settings.k3s_version
    wanted = [binary_name(arch), sums_name(arch)]
    if cache.is_dir() and all((cache / n).is_file() for n in wanted) and \
            (not with_images or any((cache / n).is_file() for n in airgap_names(arch))):
        try:
            verify_release(cache, settings)
            return cache
        except DeployError:
            pass  # a damaged cache entry is refetched below, never trusted
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".partial-") as tmp:
        staging = Path(tmp)
        for name in wanted:
            _download(release_url(settings.k3s_release_url, version, name), staging / name)
        if with_images:
            listed = parse_sums(staging / sums_name(arch))
            name = next((n for n in reversed(airgap_names(arch)) if n in listed), airgap_names(arch)[-1])
            _download(release_url(settings.k3s_release_url, version, name), staging / name)
        verify_release(staging, settings)
        if cache.exists():
            shutil.rmtree(cache)
        staging.rename(cache)
        staging.mkdir()  # TemporaryDirectory cleans up the (now empty) name
    return cache


def _local_release(settings: Settings) -> Path:
    src = Path(settings.k3s_artifacts_dir).expanduser()
    where = f"K3S_ARTIFACTS_DIR={settings.k3s_artifacts_dir} ({settings.origin('K3S_ARTIFACTS_DIR')})"
    if not src.is_dir():
        raise ConfigError(f"{where}: {src} is not a directory; point it at a copy of the k3s release "
                          f"or leave it empty to download")
    for name in (binary_name(settings.k3s_arch), sums_name(settings.k3s_arch)):
        if not (src / name).is_file():
            raise ConfigError(f"{where}: {name} missing in {src}; copy it from release {settings.k3s_version}")
    return src


def _stage(files: Iterable[Path], dest: Path, binary: str) -> None:
    """Copy verified files into dest atomically; drop stale k3s assets left from earlier runs."""
    dest.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    for src in files:
        names.add(src.name)
        target = dest / src.name
        if target.is_file() and sha256_file(target) == sha256_file(src):
            continue
        partial = dest / f".{src.name}.partial"
        shutil.copyfile(src, partial)
        partial.rename(target)
    for old in dest.iterdir():
        if old.is_file() and old.name not in names and (old.name.startswith(("k3s", "sha256sum-"))):
            old.unlink()
    (dest / binary).chmod(0o755)


def stage_k3s(settings: Settings, dest: Path, *, cache_dir: Path | None = None,
              with_images: bool = False) -> str:
    """Fill `dest` with a verified k3s release; return its mode, "real" or "standin".

    Source: K3S_ARTIFACTS_DIR when set, else K3S_RELEASE_URL via the cache (`cache_dir`, default
    ~/.cache/gl-deploy/k3s). `with_images` also downloads the airgap image tarball.
    Raises ConfigError for a bad artifacts dir, DeployError for download/verification failures;
    in both cases `dest` is left untouched.
    """
    if settings.k3s_artifacts_dir:
        src = _local_release(settings)
    else:
        src = fetch_release(settings, cache_dir, with_images=with_images)
    files = verify_release(src, settings)
    _stage(files, dest, binary_name(settings.k3s_arch))
    return "standin" if is_standin(dest / binary_name(settings.k3s_arch)) else "real"
