"""stage.stage: the .deb files each site role installs offline. SITE_PACKAGES_DIR is either a flat
directory of .deb files (the bastion's) or the bundle's packages/ directory with one subdirectory
per role (bastion/, node/): then the bastion and every node get their own role's packages, so the
node's site phase installs its chrony client from the bundle as the bastion installs its services."""
from __future__ import annotations

from pathlib import Path

import pytest

from gldeploy import settings
from gldeploy.errors import ConfigError
from gldeploy.site import ca, stage


def load(tmp_path: Path, packages: Path) -> settings.Settings:
    ca.init(tmp_path / "ca", ca.Names.of(["registry.gov.local", "192.168.56.5"]))
    pw = tmp_path / "pw"
    pw.write_text("S3cret-pass\n")
    pw.chmod(0o600)
    return settings.load(None, environ={}, overrides=[
        "CONTROL_PLANE_IPS=192.168.56.10", "BASTION_IP=192.168.56.5", "REGISTRY=registry.gov.local:5000",
        "REGISTRY_USER=deploy", f"REGISTRY_PASSWORD_FILE={pw}", f"REGISTRY_CA_FILE={tmp_path / 'ca/ca.crt'}",
        f"SITE_CA_DIR={tmp_path / 'ca'}", f"SITE_PACKAGES_DIR={packages}"])


def debs(dest: Path) -> list[str]:
    return sorted(p.name for p in (dest / "site/packages").glob("*.deb"))


def test_the_bundles_packages_dir_gives_each_role_its_own(tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    for role, names in (("bastion", ("docker-registry_amd64.deb", "chrony_amd64.deb")), ("node", ("chrony_amd64.deb",))):
        (packages / role).mkdir(parents=True)
        for name in names:
            (packages / role / name).write_bytes(f"{role}/{name}".encode())
    s = load(tmp_path, packages)
    stage.stage(s, tmp_path / "bastion", "bastion")
    stage.stage(s, tmp_path / "node", "node")
    assert debs(tmp_path / "bastion") == ["chrony_amd64.deb", "docker-registry_amd64.deb"]
    assert debs(tmp_path / "node") == ["chrony_amd64.deb"]
    assert (tmp_path / "node/site/packages/chrony_amd64.deb").read_bytes() == b"node/chrony_amd64.deb"


def test_a_flat_directory_is_the_bastions_only(tmp_path: Path) -> None:
    packages = tmp_path / "debs"
    packages.mkdir()
    (packages / "skopeo_amd64.deb").write_bytes(b"x")
    s = load(tmp_path, packages)
    stage.stage(s, tmp_path / "bastion", "bastion")
    stage.stage(s, tmp_path / "node", "node")
    assert debs(tmp_path / "bastion") == ["skopeo_amd64.deb"]
    assert debs(tmp_path / "node") == []


def test_a_missing_packages_dir_is_bad_input_for_any_role(tmp_path: Path) -> None:
    s = load(tmp_path, tmp_path / "nope")
    for role in ("bastion", "node"):
        with pytest.raises(ConfigError, match="SITE_PACKAGES_DIR"):
            stage.check(s, role)  # type: ignore[arg-type]
