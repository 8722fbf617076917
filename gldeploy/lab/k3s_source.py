"""Where the lab's k3s comes from: a real release (given dir or pinned download) or the stand-in.

The release is verified by the product's own code (gldeploy.artifacts), exactly as a deploy
verifies it; the lab only decides which source to use and says so.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from gldeploy import artifacts
from gldeploy.errors import ConfigError
from gldeploy.lab.proc import say
from gldeploy.settings import Settings
from gldeploy.paths import CACHE_DIR



@dataclass(frozen=True)
class K3sSource:
    """A release directory for K3S_ARTIFACTS_DIR and whether it holds real k3s or the stand-in."""

    mode: str  # "real" | "standin"
    directory: Path
    reason: str


def inspect(directory: Path, settings: Settings) -> str:
    """Verify the release in `directory` against its sums (and K3S_SHA256); "real" or "standin"."""
    verified = artifacts.verify_release(directory, settings)
    return "standin" if artifacts.is_standin(verified[0]) else "real"


def _standin_release(settings: Settings) -> Path:
    """A release directory holding the test stand-in (kept under tests/, never installed by users)."""
    from tests.fixtures.k3s_standin.release import make_release  # the lab is a test harness
    dest = CACHE_DIR / "k3s-standin" / settings.k3s_version
    shutil.rmtree(dest, ignore_errors=True)
    make_release(dest, settings.k3s_version, settings.k3s_arch)
    return dest


def choose(artifacts_dir: str, settings: Settings, *, allow_download: bool = True,
           cache_dir: Path | None = None) -> K3sSource:
    """--artifacts DIR if given; else the pinned download (cached, verified); else the labelled stand-in."""
    if artifacts_dir:
        directory = Path(artifacts_dir).expanduser().resolve()
        if not directory.is_dir():
            raise ConfigError(f"--artifacts {artifacts_dir}: not a directory")
        for name in (artifacts.binary_name(settings.k3s_arch), artifacts.sums_name(settings.k3s_arch)):
            if not (directory / name).is_file():
                raise ConfigError(f"--artifacts {directory}: no {name}; a k3s artifacts dir is laid out "
                                  f"like a k3s release (k3s, sha256sum-<arch>.txt, optional airgap images)")
        return K3sSource(inspect(directory, settings), directory, f"from --artifacts {directory}")
    if allow_download:
        try:  # the VMs have no internet: the airgap images come along
            got = artifacts.fetch_release(dataclasses.replace(settings, k3s_artifacts_dir=""), cache_dir,
                                           with_images=True)
            return K3sSource(inspect(got, settings), got,
                             f"pinned release {settings.k3s_version} downloaded and verified")
        except artifacts.ReleaseUnreachable as exc:
            say(f"pinned k3s download not reachable ({str(exc)[:120]}); using the stand-in")
    return K3sSource("standin", _standin_release(settings),
                     "k3s STAND-IN (no real release given and the pinned download is unreachable): "
                     "Kubernetes-level checks are skipped")
