"""Upgrade bundles (bundle.build --upgrade-from OLD): only changed files, relies_on with sha256, signed and
verified like a full bundle, --base checks the previous bundle; each refusal exits 2 and writes nothing."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from gldeploy import settings
from gldeploy.errors import ConfigError, DeployError
from gldeploy.sitebundle import build, upgrade, verify
from gldeploy.sitebundle import manifest as mf
from tests.fixtures import sitebundle_cases as cases
from tests.fixtures.k3s_standin.release import make_release

OLD, NEW = "v1.28.3+k3s2", "v1.28.4+k3s1"  # a k3s patch release: the chart values stay
UP = f"{cases.NAME}-upgrade"


def load(tmp: Path, k3s: str, *extra: str) -> settings.Settings:
    release = tmp / f"release-{k3s}"
    if not release.is_dir():
        make_release(release, k3s, images={"k3s-airgap-images-amd64.tar": f"images {k3s}\n".encode() * 4000})
    token = tmp / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    return settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=192.168.56.10", f"K3S_VERSION={k3s}",
                                                      f"K3S_ARTIFACTS_DIR={release}", f"K3S_TOKEN_FILE={token}",
                                                      *extra])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp/old: a signed full bundle of OLD; tmp/keys: its signer and allowed_signers."""
    tmp = tmp_path_factory.mktemp("upgrade")
    keys = tmp / "keys"
    keys.mkdir()
    cases.keygen(keys / "a")
    cases.keygen(keys / "b")
    (keys / "allowed_signers").write_text(f"builder {(keys / 'a.pub').read_text()}")
    build.build(load(tmp, OLD), tmp / "old", sign_key=keys / "a", version=cases.VERSION, sample_image=True)
    return tmp


def new_build(site: Path, tmp: Path, old: Path | None = None, k3s: str = NEW, **kw: object) -> build.BuildResult:
    return build.build(load(site, k3s), tmp / "new", version=cases.VERSION, sign_key=site / "keys" / "a",
                       upgrade_from=old or site / "old" / cases.NAME, sample_image=True, **kw)  # type: ignore[arg-type]


def test_only_changed_files_travel_and_the_rest_is_listed_with_sha256(site: Path, tmp_path: Path) -> None:
    result = new_build(site, tmp_path)
    assert result.bundle_dir.name == UP
    m = mf.parse((result.bundle_dir / mf.MANIFEST).read_text())
    full = build.build(load(site, NEW), tmp_path / "full", version=cases.VERSION, sample_image=True)
    new_files = {e.path: e for e in mf.parse((full.bundle_dir / mf.MANIFEST).read_text()).files}
    old_files = {e.path: e for e in mf.parse((site / "old" / cases.NAME / mf.MANIFEST).read_text()).files}
    assert m.upgrade is not None
    carried, relied = {e.path for e in m.files}, {e.path: e for e in m.upgrade.relies_on}
    # together they are exactly the new full bundle; nothing is both
    assert carried | set(relied) == set(new_files) and not carried & set(relied)
    for path in carried - {mf.VERIFIER}:
        assert path not in old_files or old_files[path].sha256 != new_files[path].sha256, path
    for path, e in relied.items():
        assert e.sha256 == old_files[path].sha256 == new_files[path].sha256 and e.size == old_files[path].size
    assert mf.VERIFIER in carried  # the verifier travels with what it verifies
    assert {cases.K3S, f"{cases.PREFIX}/artifacts/k3s/sha256sum-amd64.txt"} <= carried
    assert {f"{cases.PREFIX}/backend/gl-backend-0.2.0.tgz", f"{cases.PREFIX}/artifacts/images/SHA256SUMS"} <= set(relied)
    assert m.upgrade.from_versions["k3s"] == OLD and m.upgrade.to_versions["k3s"] == NEW
    assert m.upgrade.to_versions["chart"] == "0.2.0" and m.upgrade.to_versions["image"]
    old_text = (site / "old" / cases.NAME / mf.MANIFEST).read_bytes()
    assert m.upgrade.base_manifest_sha256 == hashlib.sha256(old_text).hexdigest()
    assert result.bundle_bytes < full.bundle_bytes and result.relied_on == len(relied)
    # on disk and in the tar: only the carried files
    present = {p.relative_to(result.bundle_dir).as_posix() for p in result.bundle_dir.rglob("*") if p.is_file()}
    assert present == carried | set(mf.META)
    print(f"\nfull bundle {full.bundle_bytes} bytes, upgrade bundle {result.bundle_bytes} bytes, "
          f"{len(carried)} of {len(new_files)} files carried")


def test_upgrade_bundle_is_signed_and_verified_like_a_full_one(site: Path, tmp_path: Path) -> None:
    result = new_build(site, tmp_path)
    signers = site / "keys" / "allowed_signers"
    report = verify.verify_bundle(result.bundle_dir, require_signature=True, allowed_signers=signers,
                                  base=site / "old" / cases.NAME)
    assert report.signature.outcome == "verified" and report.base_files == result.relied_on > 0
    # a byte flipped in a carried file is caught like in any bundle
    binary = result.bundle_dir / cases.K3S
    binary.write_bytes(binary.read_bytes() + b"#")
    with pytest.raises(DeployError, match="size differs"):
        verify.verify_bundle(result.bundle_dir)


def test_base_missing_or_changed_relied_on_file_is_refused(site: Path, tmp_path: Path) -> None:
    result = new_build(site, tmp_path)
    base = tmp_path / "base"
    shutil.copytree(site / "old" / cases.NAME, base)
    chart = base / cases.PREFIX / "backend/gl-backend-0.2.0.tgz"
    chart.write_bytes(chart.read_bytes()[:-1] + b"x")
    with pytest.raises(DeployError, match="gl-backend-0.2.0.tgz") as err:
        verify.verify_bundle(result.bundle_dir, base=base)
    assert "differ" in str(err.value)
    chart.unlink()
    with pytest.raises(DeployError, match="missing: .*gl-backend-0.2.0.tgz"):
        verify.verify_bundle(result.bundle_dir, base=base)
    (base / mf.MANIFEST).write_text((base / mf.MANIFEST).read_text() + " ")
    with pytest.raises(DeployError, match="not the one this upgrade bundle was built against"):
        verify.verify_bundle(result.bundle_dir, base=base)


def test_old_manifest_file_alone_is_accepted(site: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(site / "old" / cases.NAME / mf.MANIFEST, media / "old-manifest.json")
    shutil.copy(site / "old" / cases.NAME / mf.SIGNATURE, media / "old-manifest.json.sig")
    result = new_build(site, tmp_path, old=media / "old-manifest.json", base_signers=site / "keys" / "allowed_signers")
    assert result.relied_on > 0


def _tamper(old: Path) -> None:
    text = (old / mf.MANIFEST).read_text().replace(OLD, "v1.28.4+k3s1")
    (old / mf.MANIFEST).write_text(text)


def _unsigned_edit(old: Path) -> None:
    (old / mf.SIGNATURE).unlink()
    _tamper(old)


@pytest.mark.parametrize("name,mutate,k3s,text", [
    ("missing", lambda old: (old / mf.MANIFEST).unlink(), NEW, "no manifest.json there"),
    ("unreadable", lambda old: (old / mf.MANIFEST).write_bytes(b"\xff\xfe not json"), NEW, "cannot be read"),
    ("not-canonical", lambda old: (old / mf.MANIFEST).write_text('{"format": "gl-native-bundle/1"}'), NEW,
     "damaged or tampered"),
    ("signature-fails", _tamper, NEW, "fails its signature"),
    ("sums-disagree", _unsigned_edit, NEW, "SHA256SUMS lists another"),
    ("same-version", lambda old: None, OLD, "nothing to upgrade"),
    ("downgrade", lambda old: None, "v1.27.9+k3s1", "downgrade, refused"),
])
def test_refusals_exit_2_and_write_nothing(site: Path, tmp_path: Path, name: str, mutate: object, k3s: str,
                                           text: str) -> None:
    old = tmp_path / "old"
    shutil.copytree(site / "old" / cases.NAME, old)
    mutate(old)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=text) as err:
        new_build(site, tmp_path, old=old, k3s=k3s)
    assert err.value.exit_code == 2 and "; " in str(err.value)
    assert not (tmp_path / "new").exists()


def test_downgrade_when_asked_for(site: Path, tmp_path: Path) -> None:
    result = new_build(site, tmp_path, k3s="v1.27.9+k3s1", allow_downgrade=True)
    m = mf.parse((result.bundle_dir / mf.MANIFEST).read_text())
    assert m.upgrade and m.upgrade.to_versions["k3s"] == "v1.27.9+k3s1"


@pytest.mark.parametrize("pin,value,text", [("arch", "arm64", "architecture"), ("OS_RELEASE", "debian-11", "debian-11"),
                                            ("topology", "ha", "topology")])
def test_other_arch_os_release_or_topology_is_refused(site: Path, tmp_path: Path, pin: str, value: str,
                                                      text: str) -> None:
    old = tmp_path / "old"
    shutil.copytree(site / "old" / cases.NAME, old)
    (old / mf.SIGNATURE).unlink()
    (old / mf.SUMS).unlink()
    m = mf.parse((old / mf.MANIFEST).read_text())
    if pin == "arch":
        m = mf.Manifest(value, m.topology, m.tool, m.pins, m.files, m.secrets)
    elif pin == "topology":
        m = mf.Manifest(m.arch, value, m.tool, m.pins, m.files, m.secrets)
    else:
        m = mf.Manifest(m.arch, m.topology, m.tool, {**m.pins, pin: value}, m.files, m.secrets)
    (old / mf.MANIFEST).write_text(mf.render(m))
    with pytest.raises(ConfigError, match=text) as err:
        new_build(site, tmp_path, old=old)
    assert err.value.exit_code == 2
    assert not (tmp_path / "new").exists()


def test_chained_upgrade_bundle_counts_what_its_base_relied_on(site: Path, tmp_path: Path) -> None:
    first = new_build(site, tmp_path)
    second = build.build(load(site, "v1.28.5+k3s1"), tmp_path / "second", version=cases.VERSION,
                         upgrade_from=first.bundle_dir, sample_image=True)
    m = mf.parse((second.bundle_dir / mf.MANIFEST).read_text())
    assert m.upgrade and m.upgrade.from_versions["k3s"] == NEW
    assert f"{cases.PREFIX}/backend/gl-backend-0.2.0.tgz" in {e.path for e in m.upgrade.relies_on}


def test_version_key_orders_k3s_releases() -> None:
    assert upgrade.version_key("v1.29.4+k3s1") < upgrade.version_key("v1.29.4+k3s2") < \
        upgrade.version_key("v1.30.0+k3s1")
    assert upgrade.version_key("v1.28.10+k3s1") > upgrade.version_key("v1.28.9+k3s3")


def test_invoke_build_upgrade_then_verify_with_base(site: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.test_sitebundle import program
    release = tmp_path / "rel"
    make_release(release, NEW, images={"k3s-airgap-images-amd64.tar": b"x" * 100})
    env = tmp_path / "site.env"
    env.write_text(f"CONTROL_PLANE_IPS=192.168.56.10\nK3S_VERSION={NEW}\nK3S_ARTIFACTS_DIR={release}\n")
    old = site / "old" / cases.NAME
    program().run(["invoke", "bundle.build", "--env", str(env), "--out", str(tmp_path / "out"), "--sample-image",
                   "--upgrade-from", str(old), "--allowed-signers", str(site / "keys" / "allowed_signers")],
                  exit=False)
    printed = capsys.readouterr().out
    assert "upgrade bundle:" in printed and "left to the previous bundle" in printed
    program().run(["invoke", "bundle.verify", str(tmp_path / "out" / UP), "--base", str(old)], exit=False)
    printed = capsys.readouterr().out
    assert "OK:" in printed and f"k3s {OLD} -> {NEW}" in printed and "checked in" in printed
    with pytest.raises(SystemExit) as exit_:
        program().run(["invoke", "bundle.build", "--env", str(env), "--out", str(tmp_path / "again"),
                       "--upgrade-from", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2 and not (tmp_path / "again").exists()
    with pytest.raises(SystemExit) as exit_:
        program().run(["invoke", "bundle.build", "--env", str(env), "--out", str(tmp_path / "again"),
                       "--allow-downgrade"])
    assert exit_.value.code == 2
