"""Stage the site files into a bundle directory (``<bundle>/site/``), decided once in Python:

every host: images.list, site.hosts, chrony-client.conf, secrets/registries.yaml (0600, the same
file for every node) and the .deb packages of its role (site/packages); the bastion also: the service
configs, the registry certificate and key (0600) and the image archives.

SITE_PACKAGES_DIR is a flat directory of .deb files (the bastion's), or the bundle's packages/
directory with one subdirectory per role (bastion/, node/): each role then gets its own.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..sequences import SiteRole
from ..settings import Settings
from . import ca, images, registries, services


def _put(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(mode)


def registry_names(settings: Settings) -> ca.Names:
    """The names the registry certificate must carry: REGISTRY's host and the bastion's address."""
    return ca.Names.of([registries.registry_host(settings), settings.bastion_ip])


def ca_paths(settings: Settings) -> tuple[Path, Path, Path]:
    if not settings.site_ca_dir:
        raise ConfigError(f"{settings.origin('SITE_CA_DIR')}: SITE_CA_DIR is empty; create the site CA and the "
                          f"registry certificate with invoke ca.init --out DIR and set SITE_CA_DIR=DIR")
    d = Path(settings.site_ca_dir).expanduser()
    return d / "ca.crt", d / "registry.crt", d / "registry.key"


def packages_of(settings: Settings, role: SiteRole) -> list[Path]:
    """The .deb files ROLE installs offline (sorted): SITE_PACKAGES_DIR/<role>/ when the directory has
    per-role subdirectories (the bundle's packages/), else its .deb files for the bastion only."""
    if not settings.site_packages_dir:
        return []
    root = Path(settings.site_packages_dir)
    if any((root / r).is_dir() for r in ("bastion", "node")):
        return sorted((root / role).glob("*.deb"))
    return sorted(root.glob("*.deb")) if role == "bastion" else []


def check(settings: Settings, role: SiteRole) -> list[images.SiteImage]:
    """Validate the site inputs before anything is written (ConfigError names key and fix)."""
    found = images.scan(Path(settings.site_images_dir), registries.project_prefix(settings)) \
        if settings.site_images_dir else []
    if role == "bastion":
        if not settings.bastion_ip:
            raise ConfigError(f"{settings.origin('BASTION_IP')}: BASTION_IP is empty; set the bastion's address")
        if settings.registry_kind == "distribution":
            ca_cert, cert, _ = ca_paths(settings)
            bad = ca.problems(cert, ca_cert, registry_names(settings))
            if bad:
                raise ConfigError(f"SITE_CA_DIR={settings.site_ca_dir}: " + "; ".join(bad))
    if settings.site_packages_dir and not Path(settings.site_packages_dir).is_dir():
        raise ConfigError(f"{settings.origin('SITE_PACKAGES_DIR')}: SITE_PACKAGES_DIR={settings.site_packages_dir} "
                          f"is not a directory of .deb files (or the bundle's packages/ with bastion/ and node/)")
    return found


def stage(settings: Settings, dest: Path, role: SiteRole, *, layout: services.Layout = services.BASTION) -> None:
    """Write dest/site/ (and dest/secrets/registries.yaml) for a bastion or a node."""
    found = check(settings, role)
    site = dest / "site"
    _put(site / images.LIST_NAME, images.list_text(found))
    _put(site / "site.hosts", services.hosts_text(settings))
    if settings.bastion_ip:
        _put(site / "chrony-client.conf", services.chrony_client(settings))
    if settings.registry:
        secrets = dest / "secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        registries.write(settings, secrets)
    for deb in packages_of(settings, role):
        (site / "packages").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deb, site / "packages" / deb.name)
    if role != "bastion":
        return
    _put(site / "chrony-server.conf", services.chrony_server(settings, layout))
    _put(site / "dnsmasq.conf", services.dnsmasq_config(settings, layout))
    if settings.registry_kind == "distribution":
        _put(site / "registry-config.yml", services.registry_config(settings, layout))
        ca_cert, cert, key = ca_paths(settings)
        _put(site / "ca.crt", ca_cert.read_bytes())
        _put(site / "registry.crt", cert.read_bytes())
        _put(site / "registry.key", key.read_bytes(), 0o600)
    for image in found:
        (site / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.archive, site / "images" / image.archive.name)
