"""Where the lab's k3s comes from: a real release (given dir or pinned download) or the stand-in."""
from __future__ import annotations

import hashlib
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gldeploy.errors import ConfigError, DeployError
from gldeploy.lab.proc import say

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "k3s"
MARKER = b"GLDEPLOY_K3S_STANDIN"
PROBE_TIMEOUT = 10
DOWNLOAD_TIMEOUT = 600


@dataclass(frozen=True)
class K3sSource:
    """A release directory for K3S_ARTIFACTS_DIR and whether it holds real k3s or the stand-in."""

    mode: str  # "real" | "standin"
    directory: Path
    reason: str


def read_sums(directory: Path, arch: str = "amd64") -> dict[str, str]:
    """asset name -> sha256 from sha256sum-<arch>.txt."""
    sums = directory / f"sha256sum-{arch}.txt"
    if not sums.is_file():
        raise ConfigError(f"{directory}: no sha256sum-{arch}.txt; a k3s artifacts dir is laid out like a "
                          f"k3s release (k3s, sha256sum-{arch}.txt, optional airgap images)")
    out = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*")] = parts[0]
    return out


def inspect(directory: Path, arch: str = "amd64") -> str:
    """Verify the binary against the sums; return "real" or "standin" (by the stand-in marker)."""
    binary = directory / ("k3s" if arch == "amd64" else f"k3s-{arch}")
    if not binary.is_file():
        raise ConfigError(f"{directory}: no {binary.name} binary; pass a k3s release directory to --artifacts")
    expected = read_sums(directory, arch).get(binary.name)
    data = binary.read_bytes()
    if expected != hashlib.sha256(data).hexdigest():
        raise ConfigError(f"{binary}: sha256 does not match sha256sum-{arch}.txt; the artifacts are "
                          f"corrupt or mixed from different releases")
    return "standin" if MARKER in data else "real"


def _url(base: str, version: str, asset: str) -> str:
    return f"{base.rstrip('/')}/{version.replace('+', '%2B')}/{asset}"


def try_download(version: str, base_url: str, arch: str = "amd64") -> Path | None:
    """Download the pinned release (binary, sums, airgap images) into the cache; None if unreachable."""
    dest = CACHE / version
    sums_name = f"sha256sum-{arch}.txt"
    try:
        with urllib.request.urlopen(_url(base_url, version, sums_name), timeout=PROBE_TIMEOUT) as resp:
            sums_text = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        say(f"pinned k3s download not reachable ({exc.__class__.__name__}); using the stand-in")
        return None
    tmp = dest.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / sums_name).write_bytes(sums_text)
    binary = "k3s" if arch == "amd64" else f"k3s-{arch}"
    for asset in (binary, f"k3s-airgap-images-{arch}.tar.zst"):
        say(f"downloading {asset} {version} ...")
        try:
            with urllib.request.urlopen(_url(base_url, version, asset), timeout=DOWNLOAD_TIMEOUT) as resp, \
                    (tmp / asset).open("wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError) as exc:
            raise DeployError(f"k3s {version}: sums were reachable but {asset} failed to download: {exc}") from None
    sums = read_sums(tmp, arch)
    for asset in (binary, f"k3s-airgap-images-{arch}.tar.zst"):
        if sums.get(asset) != hashlib.sha256((tmp / asset).read_bytes()).hexdigest():
            raise DeployError(f"k3s {version}: {asset} does not match the release's {sums_name}")
    (tmp / binary).chmod(0o755)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def choose(artifacts: str, version: str, base_url: str, *, allow_download: bool = True,
           arch: str = "amd64") -> K3sSource:
    """--artifacts DIR if given; else a cached/pinned download; else the labelled stand-in."""
    if artifacts:
        directory = Path(artifacts).expanduser().resolve()
        if not directory.is_dir():
            raise ConfigError(f"--artifacts {artifacts}: not a directory")
        mode = inspect(directory, arch)
        return K3sSource(mode, directory, f"from --artifacts {directory}")
    cached = CACHE / version
    if cached.is_dir():
        try:
            if inspect(cached, arch) == "real":
                return K3sSource("real", cached, f"cached pinned release {version}")
        except ConfigError:
            shutil.rmtree(cached, ignore_errors=True)
    if allow_download:
        got = try_download(version, base_url, arch)
        if got:
            return K3sSource("real", got, f"pinned release {version} downloaded and verified")
    sys.path.insert(0, str(REPO))
    from tests.fixtures.k3s_standin.release import make_release  # test-only stand-in
    dest = REPO / ".cache" / "k3s-standin" / version
    shutil.rmtree(dest, ignore_errors=True)
    make_release(dest, version, arch)
    return K3sSource("standin", dest, "k3s STAND-IN (no real release given and the pinned download "
                     "is unreachable): Kubernetes-level checks are skipped")
