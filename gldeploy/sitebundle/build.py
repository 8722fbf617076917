"""Build the air-gapped site bundle (online side): `invoke bundle.build`.

From the pins of the settings it gathers the generated standalone scripts of the topology
(render.render_standalone, under scripts/<topology>/), the k3s binary, its sha256 list and the
air-gap image archive (K3S_ARTIFACTS_DIR or the pinned download, via gldeploy.artifacts), the backend
manifests and, when asked, the sample backend image, plus verify.sh. The rendered scripts find the
artifacts where the invoke path puts them (artifacts/k3s, artifacts/images beside the scripts).

One pass: every input byte is read once and, in the same read, hashed, written into the bundle
directory and streamed into the plain tar (split into parts). manifest.json, its optional signature
and SHA256SUMS close the tar. Nothing time-dependent is recorded (tar mtime 0, owner 0:0, fixed
modes, sorted paths), so the same pins give the same checksums. True secrets (secrets/k3s-token,
secrets/registry-password) never enter the bundle: they go to <out>/<name>.secrets/ (0700/0600).
With os_status (a copy of the target's dpkg status), the `packages` section carries the .deb files a
site role lacks (gldeploy/sitebundle/packages.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import artifacts, bundle, paths, render
from ..errors import ConfigError, DeployError
from ..settings import Settings
from . import manifest as mf
from . import packages as pkgs
from . import sign, split
from . import upgrade as up
from .tarwrite import Source, TreeAndTar

VERIFY_SH = paths.SCRIPTS_DIR / "bundle" / "verify.sh"
_SECRET_KEYS = {rel: key for key, rel in bundle.SECRET_FILES.items()}
# registries.yaml (gldeploy/site/registries.py) carries the registry password: a true secret too
_SECRET_KEYS[bundle.REGISTRIES_YAML] = "REGISTRY_PASSWORD_FILE"


@dataclass
class BuildResult:
    """Where the bundle went and what to compare out of band."""

    bundle_dir: Path
    parts_file: Path
    parts: list[tuple[str, str]]
    manifest_sha256: str
    fingerprint: str = ""
    secrets_dir: Path | None = None
    bytes_read: int = 0
    bundle_bytes: int = 0
    changed: bool = True
    secrets: list[str] = field(default_factory=list)
    relied_on: int = 0  # an upgrade bundle: files it leaves to the base bundle
    relied_bytes: int = 0


def bundle_name(settings: Settings) -> str:
    """Directory and tar name: gl-bundle-<topology>-<arch>."""
    return f"gl-bundle-{settings.topology}-{settings.k3s_arch}"


def _render_kind(rel: str) -> mf.Kind:
    if rel == "secrets/registry-ca.crt":
        return "ca-certificate"
    if rel.startswith("artifacts/images/"):
        return "image-sums" if rel.endswith("SHA256SUMS") else "image"
    if rel.startswith("backend/"):
        return "manifests"
    named: dict[str, mf.Kind] = {"README.txt": "readme", "SHA256SUMS": "sums", ".gl-render": "render-marker"}
    return named.get(rel, "script")


def _k3s_source_dir(settings: Settings, cache_dir: Path | None) -> tuple[Path, str]:
    """The release directory to copy from, and how to name it in errors."""
    arch = settings.k3s_arch
    if settings.k3s_artifacts_dir:
        src = Path(settings.k3s_artifacts_dir).expanduser()
        where = f"K3S_ARTIFACTS_DIR={settings.k3s_artifacts_dir} ({settings.origin('K3S_ARTIFACTS_DIR')})"
        if not src.is_dir():
            raise ConfigError(f"{where}: {src} is not a directory; point it at a copy of the k3s release "
                              f"{settings.k3s_version} or leave it empty to download")
    else:
        src = artifacts.release_cache(settings, cache_dir)
        where = f"k3s cache {src}"
        wanted = [artifacts.binary_name(arch), artifacts.sums_name(arch)]
        if not all((src / n).is_file() for n in wanted) or \
                not any((src / n).is_file() for n in artifacts.airgap_names(arch)):
            src = artifacts.fetch_release(settings, cache_dir, with_images=True)
    for name in (artifacts.binary_name(arch), artifacts.sums_name(arch)):
        if not (src / name).is_file():
            raise ConfigError(f"{where}: {name} missing in {src}; copy it from release {settings.k3s_version}")
    if not any((src / n).is_file() for n in artifacts.airgap_names(arch)):
        raise ConfigError(f"{where}: no {artifacts.airgap_names(arch)[0]}[.gz|.zst] in {src}; an air-gapped "
                          f"host cannot pull k3s' system images: copy the archive from release "
                          f"{settings.k3s_version}")
    return src, where


def k3s_sources(settings: Settings, prefix: str, cache_dir: Path | None) -> tuple[list[Source], str, str]:
    """The k3s release files to ship, the directory they come from and its description."""
    src, where = _k3s_source_dir(settings, cache_dir)
    arch, version = settings.k3s_arch, settings.k3s_version
    found: list[Source] = []
    for name in (artifacts.binary_name(arch), artifacts.sums_name(arch), *artifacts.airgap_names(arch)):
        if (src / name).is_file():
            kind: mf.Kind = "k3s-binary" if name == artifacts.binary_name(arch) else \
                "k3s-sums" if name == artifacts.sums_name(arch) else "k3s-airgap-images"
            found.append(Source(f"{prefix}/{name}", src / name, kind, version,
                                artifacts.release_url(settings.k3s_release_url, version, name),
                                executable=kind == "k3s-binary"))
    return found, str(src), where


def check_k3s(settings: Settings, sums_path: Path, digests: dict[str, str], where: str) -> int:
    """The copied k3s files against the release's sums list (and K3S_SHA256); returns bytes read."""
    sums = artifacts.parse_sums(sums_path)
    binary = artifacts.binary_name(settings.k3s_arch)
    for name, digest in digests.items():
        if name == sums_path.name:
            continue
        if name not in sums:
            raise DeployError(f"{where}: {name} is not listed in {sums_path.name}; refusing an unverifiable "
                              f"file, copy the release {settings.k3s_version} again")
        if sums[name] != digest:
            raise DeployError(f"{where}: {name} has sha256 {digest}, {sums_path.name} lists {sums[name]}; "
                              f"damaged or tampered, fetch release {settings.k3s_version} again")
    if settings.k3s_sha256 and digests[binary] != settings.k3s_sha256.lower():
        raise DeployError(f"{where}: {binary} has sha256 {digests[binary]} but K3S_SHA256 "
                          f"({settings.origin('K3S_SHA256')}) is {settings.k3s_sha256}; check the pin")
    return sums_path.stat().st_size


def _render_sources(settings: Settings, work: Path, prefix: str, sample_image: bool,
                    version: str) -> tuple[list[Source], dict[str, Path]]:
    """Render the standalone scripts into work; split them into covered files and true secrets."""
    # the scripts look for the shipped release beside themselves (same value as with_artifacts)
    baked = dataclasses.replace(settings, k3s_artifacts_dir=bundle.ARTIFACTS_K3S)
    render.render_standalone(baked, work, with_artifacts=False, sample_image=sample_image, version=version)
    sources, secrets = [], {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        rel = path.relative_to(work).as_posix()
        if rel in _SECRET_KEYS:
            secrets[f"{prefix}/{rel}"] = path
            continue
        kind = _render_kind(rel)
        ver = settings.backend_version if kind in ("image", "image-sums", "manifests") else version
        origin = {"image": "gldeploy.image sample image", "image-sums": "gldeploy.image sample image",
                  "manifests": "gldeploy.backend templates", "ca-certificate": "REGISTRY_CA_FILE"}.get(
            kind, "gldeploy scripts.render")
        sources.append(Source(f"{prefix}/{rel}", path, kind, ver, origin, executable=rel.endswith(".sh")))
    return sources, secrets


def package_sources(status: Path | None, arch: str, cache_dir: Path | None) -> list[Source]:
    """The `packages` section: packages/<role>/<name>_<arch>.deb, what the target (per its dpkg
    status) lacks of each role's packages; nothing when no status is given."""
    if status is None:
        return []
    found = pkgs.gather(status, (cache_dir or paths.CACHE_DIR) / "os-packages", arch)
    return [Source(f"{pkgs.PACKAGES_DIR}/{role}/{deb.bundle_name}", path, "os-package", deb.version, deb.uri)
            for role, debs in found.items() for deb, path in debs]


def _place(stage: Path, out: Path, name: str, secrets: dict[str, Path]) -> None:
    """Move the staged bundle, parts and secrets into out, replacing an earlier build of this name."""
    old_parts = split.parts_file(out, name)
    if old_parts.is_file():
        for part, _ in split.read_parts(old_parts):
            (out / part).unlink(missing_ok=True)
    for old in (out / name, out / f"{name}.secrets"):
        if old.exists():
            shutil.rmtree(old)
    for item in sorted(stage.iterdir()):
        item.rename(out / item.name)
    if secrets:
        sdir = out / f"{name}.secrets"
        for rel, src in secrets.items():
            target = sdir / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
            target.chmod(0o600)
        for d in [sdir, *(p for p in sdir.rglob("*") if p.is_dir())]:
            d.chmod(0o700)


def build(settings: Settings, out: Path, *, split_size: int = 0, sign_key: Path | None = None,
          sample_image: bool = False, version: str | None = None, cache_dir: Path | None = None,
          os_status: Path | None = None, upgrade_from: Path | None = None, allow_downgrade: bool = False,
          base_signers: Path | None = None) -> BuildResult:
    """Build <out>/<name>/, its tar parts and <name>.PARTS.sha256; see the module docstring. With
    upgrade_from (the previous bundle's directory or manifest.json): an upgrade bundle
    <name>-upgrade holding only what changed (gldeploy/sitebundle/upgrade.py)."""
    version = version or render.source_version()
    base = up.load_base(upgrade_from, base_signers) if upgrade_from is not None else None
    name = bundle_name(settings) + (up.SUFFIX if base else "")
    render.check_out_dir(out)
    if (out / name).exists() and not (out / name / mf.MANIFEST).is_file():
        raise ConfigError(f"--out {out}: {out / name} exists and is not a bundle (no {mf.MANIFEST}); "
                          f"move it away or choose another --out")
    if sign_key is not None:
        sign.check_key(sign_key)
    if not VERIFY_SH.is_file():
        raise DeployError(f"{VERIFY_SH}: missing; is the checkout complete?")
    to_versions = up.to_versions(settings, version)
    from_versions = up.check_compatible(base, settings, to_versions, allow_downgrade) if base else {}
    prefix = f"scripts/{settings.topology}"
    k3s, k3s_dir, k3s_where = k3s_sources(settings, f"{prefix}/{bundle.ARTIFACTS_K3S}", cache_dir)
    debs = package_sources(os_status, settings.k3s_arch, cache_dir)
    created = out  # the topmost directory this build creates (removed again on a refusal)
    while not created.parent.exists():
        created = created.parent
    created = created if not created.exists() else out / ".gl-none"
    out.mkdir(parents=True, exist_ok=True)
    old = (out / name / mf.MANIFEST).read_bytes() if (out / name / mf.MANIFEST).is_file() else None
    try:
        return _write(settings, out, name, version, prefix, k3s, k3s_dir, k3s_where, debs, sample_image,
                      split_size, sign_key, old, base, (from_versions, to_versions))
    except ConfigError:
        shutil.rmtree(created, ignore_errors=True)
        raise


def _write(settings: Settings, out: Path, name: str, version: str, prefix: str, k3s: list[Source], k3s_dir: str,
           k3s_where: str, debs: list[Source], sample_image: bool, split_size: int, sign_key: Path | None,
           old: bytes | None, base: up.Base | None, versions: tuple[dict[str, str], dict[str, str]]) -> BuildResult:
    """Render, select (an upgrade bundle), copy, check k3s, write the manifest, place the result."""
    with tempfile.TemporaryDirectory(prefix=".gl-bundle-", dir=out) as tmp:
        work, stage = Path(tmp) / "render", Path(tmp) / "stage"
        stage.mkdir()
        rendered, secrets = _render_sources(settings, work, prefix, sample_image, version)
        sources = sorted([*rendered, *k3s, *debs, Source(mf.VERIFIER, VERIFY_SH, "verifier", version,
                                                  "gldeploy scripts/bundle/verify.sh", executable=True)],
                         key=lambda s: s.rel)
        for s in sources:
            mf.check_path(s.rel, "bundle build")
        chosen = up.select(sources, base) if base else up.Selection(sources, [])
        writer = TreeAndTar(stage / name, name, split.PartWriter(stage, name, split_size))
        writer.read_bytes += chosen.bytes_read
        entries = [writer.copy(s) for s in chosen.carried]
        k3s_digests = {Path(e.path).name: e.sha256 for e in (*entries, *chosen.relied) if e.kind.startswith("k3s")}
        writer.read_bytes += check_k3s(settings, Path(k3s_dir) / artifacts.sums_name(settings.k3s_arch),
                                       k3s_digests, k3s_where)
        pins = {"TOPOLOGY": settings.topology, "K3S_VERSION": settings.k3s_version, "K3S_ARCH": settings.k3s_arch,
                "K3S_SHA256": settings.k3s_sha256, "BACKEND_VERSION": settings.backend_version,
                "BACKEND_IMAGE": settings.backend_image, **up.pins(settings)}
        upgrade = mf.Upgrade(base.sha256, versions[0], versions[1], tuple(chosen.relied)) if base else None
        manifest = mf.Manifest(arch=settings.k3s_arch, topology=settings.topology, tool=version, pins=pins,
                               files=tuple(entries),
                               secrets=tuple(mf.Secret(rel, _SECRET_KEYS[rel.removeprefix(prefix + "/")])
                                             for rel in sorted(secrets)), upgrade=upgrade)
        text = mf.render(manifest).encode()
        digest = hashlib.sha256(text).hexdigest()
        writer.data(mf.MANIFEST, text)
        fingerprint = ""
        if sign_key is not None:
            writer.data(mf.SIGNATURE, sign.sign(sign_key, stage / name / mf.MANIFEST))
            fingerprint = sign.fingerprint(sign_key)
        writer.data(mf.SUMS, mf.sums_text(manifest, digest).encode())
        parts = writer.close()
        _place(stage, out, name, secrets)
    return BuildResult(out / name, split.parts_file(out, name), parts, digest, fingerprint,
                       out / f"{name}.secrets" if secrets else None, writer.read_bytes,
                       sum(e.size for e in entries), changed=old != text, secrets=sorted(secrets),
                       relied_on=len(chosen.relied), relied_bytes=sum(e.size for e in chosen.relied))
