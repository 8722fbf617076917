"""Where the lab's k3s comes from: a real release (given dir or pinned download) or the stand-in.

The release is verified by the product's own code (gldeploy.artifacts), exactly as a deploy
verifies it; the lab only decides which source to use and says so.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gldeploy import artifacts
from gldeploy.errors import ConfigError
from gldeploy.lab.proc import say
from gldeploy.paths import CACHE_DIR
from gldeploy.settings import Settings

Mode = Literal["real", "standin"]
_VERSION_LINE = re.compile(r'^VERSION = "[^"]*"', re.M)


@dataclass(frozen=True)
class K3sSource:
    """A release directory for K3S_ARTIFACTS_DIR and whether it holds real k3s or the stand-in."""

    mode: Mode
    directory: Path
    reason: str


def inspect(directory: Path, settings: Settings) -> Mode:
    """Verify the release in `directory` against its sums (and K3S_SHA256); "real" or "standin"."""
    verified = artifacts.verify_release(directory, settings)
    return "standin" if artifacts.is_standin(verified[0]) else "real"


def standin_release(standin: Path, settings: Settings, dest: Path | None = None) -> Path:
    """A k3s-release-like directory holding the stand-in executable the caller named (with the
    pinned version baked into its VERSION line) and its sums file. The lab never imports test code:
    the caller (`invoke lab.run --standin`) says where the stand-in is."""
    if not standin.is_file():
        raise ConfigError(f"--standin {standin}: no such file; it names the k3s stand-in executable "
                          f"(tests/fixtures/k3s_standin/k3s in this checkout)")
    text = standin.read_text()
    if not artifacts.is_standin(standin):
        raise ConfigError(f"--standin {standin}: not the k3s stand-in (no stand-in marker in it)")
    baked, count = _VERSION_LINE.subn(f'VERSION = "{settings.k3s_version}"', text, count=1)
    if count != 1:
        raise ConfigError(f"--standin {standin}: no `VERSION = \"...\"` line to bake the version into")
    dest = dest or CACHE_DIR / "k3s-standin" / settings.k3s_version
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    binary = dest / artifacts.binary_name(settings.k3s_arch)
    binary.write_text(baked)
    binary.chmod(0o755)
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    (dest / artifacts.sums_name(settings.k3s_arch)).write_text(f"{digest}  {binary.name}\n")
    return dest


def choose(artifacts_dir: str, settings: Settings, *, standin: Path | None, allow_download: bool = True,
           cache_dir: Path | None = None) -> K3sSource:
    """--artifacts DIR if given; else the pinned download (cached, verified); else a release made from
    the stand-in the caller named, labelled "k3s stand-in" (no stand-in given: an error)."""
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
            say(f"pinned k3s download not reachable ({str(exc)[:120]}); using the k3s stand-in")
    if standin is None:
        raise ConfigError("no real k3s: no --artifacts given and the pinned download is unreachable or "
                          "disabled; pass --artifacts DIR (a k3s release) or --standin FILE (the k3s "
                          "stand-in, tests/fixtures/k3s_standin/k3s) to run the lab in k3s stand-in mode")
    return K3sSource("standin", standin_release(standin, settings),
                     f"k3s STAND-IN from {standin} (no real release given and the pinned download is "
                     f"unreachable): Kubernetes-level checks are skipped")
