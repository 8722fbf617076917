"""Stage the per-host bundle (docs/architecture.md "Bundle layout") in a local directory.

Everything is validated before anything is written, so bad settings or files fail with exit 2
before any host is touched. What is staged follows the phases: their scripts (from the sequence
table, never a glob) and what each phase needs (``sequences.Phase.needs``). The invoke path ships
the result with ``transport.put_dir``; the standalone renderer (``render.py``) builds the same bundle
with ``baked=True``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Sequence

from . import backend, envfile, image_archive, loadbalancer
from .bake import bake_script
from .errors import ConfigError, DeployError
from .paths import SCRIPTS_DIR
from .secretfile import check_k3s_token, read_private
from .sequences import SERVER_ROLES, TOOLS, Need, Phase, Role
from .settings import Settings

# secret/path keys rewritten to bundle-relative paths: key -> path inside the bundle
SECRET_FILES = {"K3S_TOKEN_FILE": "secrets/k3s-token", "REGISTRY_PASSWORD_FILE": "secrets/registry-password"}
PUBLIC_FILES = {"REGISTRY_CA_FILE": "secrets/registry-ca.crt"}
ARTIFACTS_K3S = "artifacts/k3s"
ARTIFACTS_IMAGES = "artifacts/images"
ARTIFACTS_LB_PACKAGES = "artifacts/lb-packages"  # LB_PACKAGES_DIR's .deb/.rpm files (lib/loadbalancer.sh)
# where a k3s-installing phase finds what gldeploy rendered for it: the one registries.yaml of every
# node (gldeploy/site/registries.py; 0600, it holds the registry password) and the pinned versions
# (gldeploy/day2/versions.py), which 02 installs as /etc/gl-deploy/versions.json
REGISTRIES_YAML = "secrets/registries.yaml"
VERSIONS_JSON = "versions.json"
# first assignment of every settings.env gldeploy writes; lib/common.sh gl_load_settings refuses an
# env file without this exact line (a hand-written file lacks the defaults the scripts rely on)
SETTINGS_FORMAT_LINE = "GL_SETTINGS_FORMAT='1'"


@dataclass
class BundleInfo:
    """What was staged: where, the k3s mode of the artifacts, and the bundle-relative settings."""

    dest: Path
    k3s_mode: str
    values: dict[str, str]
    files: list[str] = field(default_factory=list)


def phase_scripts(phases: Sequence[Phase], scripts_dir: Path = SCRIPTS_DIR) -> list[Path]:
    """The entry-point scripts of the given phases, in order, then the tools every bundle carries
    (sequences.TOOLS: doctor.sh); a missing one is named."""
    found = [scripts_dir / p.script for p in phases] + [scripts_dir / t.script for t in TOOLS]
    missing = [p.name for p in found if not p.is_file()]
    if missing:
        raise DeployError(f"{scripts_dir}: phase script(s) missing: {', '.join(missing)}; "
                          f"is the checkout complete?")
    return found


def _check_private_file(settings: Settings, key: str, path: str) -> Path:
    read_private(path, what=f"{key}={path}", where=settings.origin(key))
    return Path(path).expanduser()


def _check_token(settings: Settings, path: Path, roles: Collection[Role]) -> None:
    """The token file's content is one k3s will take on every targeted role (else k3s would only say
    'exited while starting' after the host was changed)."""
    where = f"K3S_TOKEN_FILE={path} ({settings.origin('K3S_TOKEN_FILE')})"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the token file is not UTF-8 text; write the token on one line") from None
    check_k3s_token(text, where, for_server=bool(SERVER_ROLES & set(roles)),
                    first_server=bool({"single", "first-server"} & set(roles)))


def _check_ca_file(settings: Settings, path: str) -> Path:
    where = settings.origin("REGISTRY_CA_FILE")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{where}: REGISTRY_CA_FILE={path}: file not found; point it at the registry's CA "
                          f"certificate (PEM) or clear it")
    if b"-----BEGIN CERTIFICATE-----" not in p.read_bytes():
        raise ConfigError(f"{where}: REGISTRY_CA_FILE={path} is not a PEM certificate (no BEGIN CERTIFICATE "
                          f"line); export the CA as PEM, e.g. openssl x509 -in ca.der -inform der -out ca.crt")
    return p


def check_inputs(settings: Settings, roles: Collection[Role] = (), needs: Collection[Need] = ()) -> dict[str, Path]:
    """Validate secret and CA files (the token for the roles targeted) and, when a phase installs the
    API VIP load balancer (need "lb"), its settings and VRRP password (loadbalancer.validate), and the
    site's backend image archive (need "images": it must carry BACKEND_IMAGE_REF); returns
    bundle-relative name -> source file."""
    if "lb" in needs:
        loadbalancer.from_settings(settings)  # ConfigError (exit 2) before any host is touched
    if "images" in needs and settings.backend_image_archive:
        image_archive.check(settings)
    env = settings.to_env()
    copies: dict[str, Path] = {}
    for key, rel in SECRET_FILES.items():
        if env[key]:
            copies[rel] = _check_private_file(settings, key, env[key])
    if env["K3S_TOKEN_FILE"]:
        _check_token(settings, copies[SECRET_FILES["K3S_TOKEN_FILE"]], roles)
    if env["REGISTRY_CA_FILE"]:
        copies[PUBLIC_FILES["REGISTRY_CA_FILE"]] = _check_ca_file(settings, env["REGISTRY_CA_FILE"])
    if "k3s" in needs and settings.registry:
        from .site import registries
        registries.render(settings)  # reads the password: a problem is exit 2 before anything is written
    return copies


def derived_values(settings: Settings) -> dict[str, str]:
    """Values computed from the settings for the scripts; not user keys (not in settings.KEYS).

    BACKEND_IMAGE_REF: the name containerd stores the imported backend archive under
    (backend.containerd_name), which phase 03 looks for before importing again.
    API_SERVER_URL: what joining servers and agents dial when no --server-url is given: the VIP's
    HAProxy frontend (loadbalancer.endpoint); empty without an API_VIP.
    LB_FRONTEND_PORT: the port of that frontend (LB_PORT, or its default: loadbalancer.port_of),
    which 01 checks is free on a load balancer node; empty without an API_VIP.
    """
    vip = bool(settings.api_vip)
    return {"BACKEND_IMAGE_REF": backend.containerd_name(settings),
            "API_SERVER_URL": loadbalancer.endpoint(settings) if vip else "",
            "LB_FRONTEND_PORT": str(loadbalancer.port_of(settings)) if vip else ""}


def bundle_values(settings: Settings, *, artifacts_staged: bool) -> dict[str, str]:
    """settings.to_env() with file keys rewritten to paths inside the bundle, plus derived_values()."""
    values = settings.to_env()
    for key, rel in {**SECRET_FILES, **PUBLIC_FILES}.items():
        if values[key]:
            values[key] = rel
    if artifacts_staged:
        values["K3S_ARTIFACTS_DIR"] = ARTIFACTS_K3S
    if values["LB_PACKAGES_DIR"]:
        values["LB_PACKAGES_DIR"] = ARTIFACTS_LB_PACKAGES  # staged with the load balancer files (_stage_lb)
    values.update(derived_values(settings))
    return values


def settings_env_text(values: dict[str, str], header: str = "") -> str:
    """The settings.env text: header comments, the format marker line, then every value quoted."""
    body = envfile.render(values)
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    return "\n".join([*lines, SETTINGS_FORMAT_LINE]) + "\n" + body


def _write(path: Path, data: bytes | str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    path.chmod(mode)


def _stage_secrets(dest: Path, copies: dict[str, Path]) -> None:
    if not copies:
        return
    secrets = dest / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    secrets.chmod(0o700)
    for rel, src in sorted(copies.items()):
        _write(dest / rel, src.read_bytes(), 0o600)


@dataclass(frozen=True)
class Staging:
    """What the caller asks for beyond the phases' needs: ship k3s artifacts (else the host downloads
    or reads K3S_ARTIFACTS_DIR itself) and the sample backend image."""

    k3s_artifacts: bool = True
    sample_image: bool = False


def _stage_k3s(settings: Settings, dest: Path, staging: Staging) -> str | None:
    """What the k3s-installing phases take from the bundle: versions.json, secrets/registries.yaml
    (with REGISTRY: the same file on every node, installed as is) and the release artifacts."""
    from .day2 import versions
    from .site import registries

    _write(dest / VERSIONS_JSON, versions.versions_json(settings), 0o644)
    if settings.registry:
        (dest / "secrets").mkdir(mode=0o700, exist_ok=True)
        (dest / "secrets").chmod(0o700)
        registries.write(settings, (dest / REGISTRIES_YAML).parent)
    if not staging.k3s_artifacts:
        return None
    from . import artifacts

    target = dest / ARTIFACTS_K3S
    target.mkdir(parents=True, exist_ok=True)
    return str(artifacts.stage_k3s(settings, target))


def _stage_images(settings: Settings, dest: Path, staging: Staging) -> str | None:
    """The backend image archive with its SHA256SUMS line: the site's own (BACKEND_IMAGE_ARCHIVE,
    checked by check_inputs to carry BACKEND_IMAGE_REF), else the sample image when asked for."""
    if not (settings.backend_image_archive or staging.sample_image):
        return None
    from . import artifacts, image

    images = dest / ARTIFACTS_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    if settings.backend_image_archive:
        source = Path(settings.backend_image_archive).expanduser()
        archive = images / source.name
        shutil.copyfile(source, archive)
        archive.chmod(0o644)
    else:
        archive = image.build_sample_image(settings.backend_version, images,
                                           image_name=backend.containerd_name(settings))
    _write(images / "SHA256SUMS", f"{artifacts.sha256_file(archive)}  {archive.name}\n", 0o644)
    return None


def _stage_backend(settings: Settings, dest: Path, staging: Staging) -> str | None:
    backend.write_bundle_files(settings, dest / "backend", tls_secret=settings.backend_tls_secret)
    return None


LB_DIR, LB_SECRET_DIR = "lb", "secrets/lb"


def _stage_lb(settings: Settings, dest: Path, staging: Staging) -> str | None:
    """One directory per load balancer node, lb/<address>/ (haproxy.cfg, track script) and
    secrets/lb/<address>/keepalived.conf (0600: the VRRP password; secrets/ stays out of the rendered
    SHA256SUMS). 02_init_control_plane installs the one whose address this host holds."""
    cfg = loadbalancer.from_settings(settings)
    for tree in (dest / LB_DIR, dest / LB_SECRET_DIR):
        if tree.exists():
            shutil.rmtree(tree)
    (dest / "secrets").mkdir(mode=0o700, exist_ok=True)
    (dest / "secrets").chmod(0o700)
    for node in cfg.nodes:
        loadbalancer.write_node_files(cfg, node.address, dest / LB_DIR / node.address,
                                      secret_dest=dest / LB_SECRET_DIR / node.address)
    if settings.lb_packages_dir:  # offline nodes install haproxy/keepalived from these (LB_PACKAGES_DIR)
        packages = dest / ARTIFACTS_LB_PACKAGES
        if packages.exists():
            shutil.rmtree(packages)
        packages.mkdir(parents=True)
        source = Path(settings.lb_packages_dir).expanduser()
        for pkg in sorted([*source.glob("*.deb"), *source.glob("*.rpm")]):
            _write(packages / pkg.name, pkg.read_bytes(), 0o644)
    return None


def _stage_cni(settings: Settings, dest: Path, staging: Staging) -> str | None:
    return None  # flannel is built into k3s; other CNIs' manifests are staged by the cluster work


# one stager per need (sequences.Need): a phase's needs decide what a bundle carries
STAGERS: dict[Need, Callable[[Settings, Path, Staging], str | None]] = {
    "k3s": _stage_k3s, "backend": _stage_backend, "images": _stage_images, "cni": _stage_cni, "lb": _stage_lb,
}


def needs_of(phases: Sequence[Phase]) -> tuple[Need, ...]:
    """The union of the phases' needs, in STAGERS order."""
    wanted = {n for p in phases for n in p.needs}
    return tuple(n for n in STAGERS if n in wanted)


def build_bundle(settings: Settings, dest: Path, phases: Sequence[Phase], *, baked: bool,
                 staging: Staging = Staging(), script_header: Sequence[str] = (),
                 roles: Collection[Role] = ()) -> BundleInfo:
    """Stage a host bundle in dest: the phases' scripts, settings (file or baked), secrets, and what
    the phases need (k3s artifacts, backend manifests, images).

    baked=False: scripts + lib/ + settings.env (0600), as shipped by the invoke path.
    baked=True: standalone scripts with libraries inlined and settings baked in (render.py).
    roles: the roles the bundle is for (default: every role of the phases).
    """
    needs = needs_of(phases)
    # nothing is written on bad input
    copies = check_inputs(settings, roles or {r for p in phases for r in p.roles}, needs)
    scripts = phase_scripts(phases)
    values = bundle_values(settings, artifacts_staged="k3s" in needs and staging.k3s_artifacts)
    dest.mkdir(parents=True, exist_ok=True)
    if baked:
        for script in scripts:
            _write(dest / script.name, bake_script(script, values, script_header), 0o755)
    else:
        for script in scripts:
            _write(dest / script.name, script.read_bytes(), 0o755)
        libs = dest / "lib"
        if libs.exists():
            shutil.rmtree(libs)
        shutil.copytree(SCRIPTS_DIR / "lib", libs)
        header = "generated by gldeploy (invoke path); every value is quoted for bash. Do not edit."
        _write(dest / "settings.env", settings_env_text(values, header), 0o600)
    _stage_secrets(dest, copies)
    k3s_mode = "none"
    for need in needs:
        k3s_mode = STAGERS[need](settings, dest, staging) or k3s_mode
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    return BundleInfo(dest, k3s_mode, values, files)
