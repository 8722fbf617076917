"""The registry password never ships in the site bundle: registries.yaml (gldeploy/site/registries.py)
carries it, so it is a true secret like secrets/registry-password: out of the tree, the tar, the
sums and the manifest's files, delivered in <name>.secrets/ (0600) and listed as a secret. (The
air-gap lab found it in the tar, 0644; 02_install_k3s then rightly refused it on the node.)"""
from __future__ import annotations

import tarfile
from pathlib import Path

from gldeploy.sitebundle import build, verify
from gldeploy.sitebundle import manifest as mf
from tests.fixtures import sitebundle_cases as cases

PASSWORD = "Registry-pass-7f3a"


def test_registries_yaml_is_a_true_secret(tmp_path: Path) -> None:
    pw = tmp_path / "registry-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    loaded = cases.load(tmp_path, "REGISTRY=registry.gov.local:5000", "REGISTRY_USER=deploy",
                        f"REGISTRY_PASSWORD_FILE={pw}")
    result = build.build(loaded, tmp_path / "out", version=cases.VERSION)
    rel = f"{cases.PREFIX}/secrets/registries.yaml"
    m = mf.parse((result.bundle_dir / mf.MANIFEST).read_text())
    assert m.entry(rel) is None and rel in [s.path for s in m.secrets]
    assert not (result.bundle_dir / rel).exists()
    for path in result.bundle_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), f"the password is in {path}"
    for part in result.bundle_dir.parent.glob(f"{cases.NAME}.tar*"):
        assert PASSWORD.encode() not in part.read_bytes(), f"the password is in {part}"
    with tarfile.open(result.bundle_dir.parent / f"{cases.NAME}.tar") as tar:
        assert not any(n.endswith("registries.yaml") for n in tar.getnames())
    secret = result.bundle_dir.parent / f"{cases.NAME}.secrets" / rel
    assert PASSWORD in secret.read_text() and secret.stat().st_mode & 0o777 == 0o600
    verify.verify_bundle(result.bundle_dir)
