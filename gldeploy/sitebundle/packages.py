"""The bundle's `packages` section: Debian packages a site role needs, as .deb files (online side).

An air-gapped host has no package mirror, so what a role needs (the bastion: the registry, htpasswd,
skopeo, chrony, dnsmasq) travels in the bundle. Only what the target host lacks is carried: the
dependency closure is computed by apt itself, in a throwaway apt root whose dpkg status is a copy of
the target's /var/lib/dpkg/status (`apt-get install --print-uris` lists exactly the missing
packages, with their hash), then each is fetched with `apt-get download` and checked against that
hash. Files are named <package>_<arch>.deb (one version per package; the version, the sha256
and the URI are in manifest.json), so every path is plain. Downloads are cached by their hash.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import proc
from ..errors import ConfigError, DeployError

PackageRole = Literal["bastion", "node"]
# role -> the packages it installs (dependencies are computed, not listed); a node's chrony is the
# client the site phases (03_site_node) configure against the bastion
ROLE_PACKAGES: dict[PackageRole, tuple[str, ...]] = {
    "bastion": ("docker-registry", "apache2-utils", "skopeo", "chrony", "dnsmasq", "bind9-dnsutils"),
    "node": ("chrony",),
}
PACKAGES_DIR = "packages"  # in the bundle: packages/<role>/<name>_<arch>.deb
SUITE = "bookworm"  # the release of the lab box and of the supported targets (Debian 12)
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_TIMEOUT = 900
# the hash is missing for some indexes (e.g. bookworm-security): apt-get download still checks it
_URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+)(?: (?P<hash>\S+))?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")
_ALGOS = {"md5sum": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}


@dataclass(frozen=True)
class Deb:
    """One package of the closure: name, version, arch, where apt gets it, its size and sha256."""

    name: str
    version: str
    arch: str
    uri: str
    size: int
    hash: str  # algo:hex as apt prints it, or "" (apt-get download checks every hash of the signed index)

    @property
    def bundle_name(self) -> str:
        return f"{self.name}_{self.arch}.deb"


def parse_print_uris(text: str) -> list[Deb]:
    """Debs from `apt-get install --print-uris -qq` output ('URI' name_version_arch.deb size SHA256:hex)."""
    debs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _URI_LINE.match(line.strip())
        if not match:
            raise DeployError(f"apt-get --print-uris: unexpected line {line.strip()!r}")
        parts = match["file"].removesuffix(".deb").split("_")
        algo, _, digest = (match["hash"] or "sha256:").partition(":")
        if len(parts) != 3 or _ALGOS.get(algo.lower()) is None or \
                not re.fullmatch(r"([0-9a-f]{32,128})?", digest):
            raise DeployError(f"apt-get --print-uris: cannot read {line.strip()!r} (expected "
                              f"name_version_arch.deb and a {'/'.join(_ALGOS)} hash)")
        name, version, arch = parts[0], parts[1].replace("%3a", ":"), parts[2]
        debs.append(Deb(name, version, arch, match["uri"], int(match["size"]),
                        f"{algo.lower()}:{digest}" if digest else ""))
    return sorted(debs, key=lambda d: d.name)


def check_status(status: Path) -> Path:
    """A readable dpkg status file of the target host (ConfigError naming it and how to get one)."""
    how = "copy /var/lib/dpkg/status from the target host (e.g. scp target:/var/lib/dpkg/status status)"
    if not status.is_file():
        raise ConfigError(f"--os-status {status}: no such file; {how}")
    head = status.read_text(errors="replace")[:4096]
    if not re.search(r"^Package: ", head, re.M) or not re.search(r"^Status: ", head, re.M):
        raise ConfigError(f"--os-status {status}: not a dpkg status file (no Package:/Status: fields); {how}")
    return status


class AptRoot:
    """A throwaway apt configuration: the Debian 12 mirror, the target's dpkg status, own lists/cache."""

    def __init__(self, root: Path, status: Path, arch: str, mirror: str = MIRROR,
                 security: str = SECURITY_MIRROR) -> None:
        self.root, self.arch = root, arch
        for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                    "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(status, root / "var/lib/dpkg/status")
        signed = f"[arch={arch} signed-by={KEYRING}]"
        (root / "etc/apt/sources.list").write_text(
            f"deb {signed} {mirror} {SUITE} main\ndeb {signed} {mirror} {SUITE}-updates main\n"
            f"deb {signed} {security} {SUITE}-security main\n")

    def argv(self, *args: str) -> list[str]:
        r = self.root
        return ["apt-get", "-q", "-o", f"Dir::Etc={r}/etc/apt", "-o", f"Dir::State={r}/var/lib/apt",
                "-o", f"Dir::Cache={r}/var/cache/apt", "-o", f"Dir::State::status={r}/var/lib/dpkg/status",
                "-o", f"APT::Architecture={self.arch}", "-o", "APT::Architectures::=",
                "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root", *args]

    def update(self) -> None:
        proc.run(self.argv("update"), timeout=APT_TIMEOUT, check=True, what="apt-get update (bundle packages)")

    def closure(self, names: tuple[str, ...]) -> list[Deb]:
        """What `apt-get install` would fetch for these on the target: the missing closure."""
        for name in names:
            if not _NAME.match(name):
                raise ConfigError(f"package name {name!r} is not a Debian package name")
        out = proc.run(self.argv("install", "--print-uris", "-qq", "-y", "--no-install-recommends", *names),
                       timeout=APT_TIMEOUT, check=True, what="apt-get install --print-uris").stdout
        return parse_print_uris(out)

    def download(self, deb: Deb, dest: Path) -> Path:
        """`apt-get download name=version` into dest; the file is checked against apt's sha256."""
        proc.run(self.argv("download", f"{deb.name}:{deb.arch}={deb.version}"), cwd=dest,
                 timeout=APT_TIMEOUT, check=True, what=f"apt-get download {deb.name}")
        found = [p for p in dest.glob(f"{deb.name}_*_{deb.arch}.deb")]
        if len(found) != 1:
            raise DeployError(f"apt-get download {deb.name}={deb.version} left {len(found)} files in {dest}")
        return found[0]


def hash_of(path: Path, algo: str = "sha256") -> str:
    """ALGO:hex of a file (ALGO as apt names it: md5sum, sha1, sha256, sha512)."""
    digest = hashlib.new(_ALGOS[algo])
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{algo}:{digest.hexdigest()}"


def matches(path: Path, deb: Deb) -> bool:
    """True when the file has the size (and the hash, when apt printed one) apt's signed index gives."""
    if not path.is_file() or path.stat().st_size != deb.size:
        return False
    return not deb.hash or hash_of(path, deb.hash.split(":", 1)[0]) == deb.hash


def gather(status: Path, cache: Path, arch: str = "amd64",
           roles: tuple[PackageRole, ...] = ("bastion", "node")) -> dict[PackageRole, list[tuple[Deb, Path]]]:
    """For each role: the packages missing on the target (per `status`), each as a checked cached .deb."""
    check_status(status)
    if not KEYRING.is_file():
        raise DeployError(f"{KEYRING} is missing; apt-get install debian-archive-keyring")
    store = cache / "debs"
    store.mkdir(parents=True, exist_ok=True)
    result: dict[PackageRole, list[tuple[Deb, Path]]] = {}
    with tempfile.TemporaryDirectory(prefix="gl-apt-") as tmp:
        apt = AptRoot(Path(tmp) / "root", status, arch)
        apt.update()
        for role in roles:
            files = []
            for deb in apt.closure(ROLE_PACKAGES[role]):
                cached = store / deb.bundle_name.replace(".deb", f"_{deb.version.replace(':', '%3a')}.deb")
                if not matches(cached, deb):
                    got = apt.download(deb, Path(tmp))
                    if not matches(got, deb):
                        raise DeployError(f"{deb.name} {deb.version}: the downloaded file is not the one the "
                                          f"signed index lists ({deb.size} bytes, {deb.hash}); mirror damaged?")
                    got.replace(cached)
                files.append((deb, cached))
            result[role] = files
    return result
