"""Site bundle build: reproducible bytes, one read per input byte, normalised tar, secrets kept out,
k3s checked against its release sums, manifest canonical form, split sizes, the invoke tasks."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from invoke import Collection, Program

from gldeploy.errors import ConfigError, DeployError
from gldeploy.sitebundle import build, split, verify
from gldeploy.sitebundle import manifest as mf
from gldeploy.tasks import bundle_tasks
from tests.fixtures import sitebundle_cases as cases


def built(tmp: Path, out: str = "out", **kw: object) -> build.BuildResult:
    return build.build(cases.load(tmp), tmp / out, version=cases.VERSION, **kw)  # type: ignore[arg-type]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_pins_give_the_same_bytes_and_a_rebuild_says_no_change(tmp_path: Path) -> None:
    first = built(tmp_path, "a", split_size=32 << 10)
    again = built(tmp_path, "a", split_size=32 << 10)
    other = built(tmp_path, "b", split_size=32 << 10)
    assert first.changed and not again.changed
    assert first.manifest_sha256 == again.manifest_sha256 == other.manifest_sha256
    assert first.parts == again.parts == other.parts and len(first.parts) > 1
    assert sha(first.parts_file) == sha(other.parts_file)
    assert (tmp_path / "a" / cases.NAME / mf.SUMS).read_bytes() == (tmp_path / "b" / cases.NAME / mf.SUMS).read_bytes()


def test_each_input_byte_is_read_once(tmp_path: Path) -> None:
    result = built(tmp_path)
    assert result.bundle_bytes > 50_000
    assert result.bytes_read / result.bundle_bytes <= 1.05


def test_tar_is_normalised_sorted_and_matches_the_directory(tmp_path: Path) -> None:
    result = built(tmp_path)
    with tarfile.open(result.bundle_dir.parent / f"{cases.NAME}.tar") as tar:
        members = tar.getmembers()
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        names = [m.name.removeprefix(f"{cases.NAME}/") for m in members if m.isfile()]
        assert names[-2:] == [mf.MANIFEST, mf.SUMS]
        assert names[:-2] == sorted(names[:-2])
        for m in members:
            if m.isfile():
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                assert data == (result.bundle_dir.parent / m.name).read_bytes()
                assert m.mode == (0o755 if m.name.endswith((".sh", "/k3s")) else 0o644)


def test_manifest_records_kind_version_origin_arch_and_no_secret(tmp_path: Path) -> None:
    result = built(tmp_path, sample_image=True)
    m = mf.parse((result.bundle_dir / mf.MANIFEST).read_text())
    kinds = {e.kind for e in m.files}
    assert {"k3s-binary", "k3s-sums", "k3s-airgap-images", "image", "image-sums", "manifests", "script",
            "verifier"} <= kinds
    assert m.arch == "amd64" and m.pins["K3S_VERSION"] == "v1.28.3+k3s2"
    binary = m.entry(cases.K3S)
    assert binary and binary.version == "v1.28.3+k3s2" and "v1.28.3%2Bk3s2/k3s" in binary.origin
    assert [s.path for s in m.secrets] == [f"{cases.PREFIX}/secrets/k3s-token"]
    assert not (result.bundle_dir / cases.PREFIX / "secrets" / "k3s-token").exists()
    assert "s3cret-token" not in (result.bundle_dir / mf.SUMS).read_text()
    with tarfile.open(result.bundle_dir.parent / f"{cases.NAME}.tar") as tar:
        assert not any("k3s-token" in n for n in tar.getnames())
    secret = result.bundle_dir.parent / f"{cases.NAME}.secrets" / cases.PREFIX / "secrets" / "k3s-token"
    assert secret.read_text() == "s3cret-token\n" and secret.stat().st_mode & 0o777 == 0o600
    baked = (result.bundle_dir / cases.PREFIX / "02_install_k3s.sh").read_text()
    assert "K3S_ARTIFACTS_DIR='artifacts/k3s'" in baked or "K3S_ARTIFACTS_DIR=artifacts/k3s" in baked
    verify.verify_bundle(result.bundle_dir)


def test_ca_certificate_is_covered(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    result = build.build(cases.load(tmp_path, f"REGISTRY_CA_FILE={ca}"), tmp_path / "out", version=cases.VERSION)
    m = mf.parse((result.bundle_dir / mf.MANIFEST).read_text())
    entry = m.entry(f"{cases.PREFIX}/secrets/registry-ca.crt")
    assert entry and entry.kind == "ca-certificate" and entry.sha256 == sha(ca)


def test_tampered_k3s_release_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    s = cases.load(tmp_path)
    binary = tmp_path / "release" / "k3s"
    binary.write_bytes(binary.read_bytes() + b"#")
    with pytest.raises(DeployError) as err:
        build.build(s, tmp_path / "out", version=cases.VERSION)
    assert err.value.exit_code == 1 and "k3s has sha256" in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_release_without_airgap_images_is_bad_input(tmp_path: Path) -> None:
    s = cases.load(tmp_path)
    (tmp_path / "release" / "k3s-airgap-images-amd64.tar").unlink()
    with pytest.raises(ConfigError, match="k3s-airgap-images-amd64.tar"):
        build.build(s, tmp_path / "out", version=cases.VERSION)
    assert not (tmp_path / "out").exists()


def test_signed_build_reports_fingerprint_and_verifies(tmp_path: Path) -> None:
    key = cases.keygen(tmp_path / "signer")
    result = built(tmp_path, sign_key=key)
    assert "SHA256:" in result.fingerprint and "ED25519" in result.fingerprint
    signers = tmp_path / "allowed"
    signers.write_text(f"builder {(tmp_path / 'signer.pub').read_text()}")
    report = verify.verify_bundle(result.bundle_dir, require_signature=True, allowed_signers=signers)
    assert report.signature.outcome == "verified" and "builder" in report.signature.detail


def test_missing_sign_key_is_bad_input_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--sign-key"):
        built(tmp_path, sign_key=tmp_path / "nope")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,size", [("4G", 4 << 30), ("700M", 700 << 20), ("512K", 512 << 10),
                                       ("2048", 2048), ("1GiB", 1 << 30)])
def test_split_size(text: str, size: int) -> None:
    assert split.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "4X", "-1G", "12", "1.5G"])
def test_bad_split_size(text: str) -> None:
    with pytest.raises(ConfigError, match="--split-size"):
        split.parse_size(text)


def test_manifest_must_be_canonical(tmp_path: Path) -> None:
    result = built(tmp_path)
    text = (result.bundle_dir / mf.MANIFEST).read_text()
    assert mf.render(mf.parse(text)) == text
    with pytest.raises(mf.ManifestError, match="canonical"):
        mf.parse(json.dumps(json.loads(text)))
    with pytest.raises(mf.ManifestError, match="plain relative path"):
        mf.parse(text.replace(f'"path": "{cases.K3S}"', '"path": "../../etc/passwd"'))


def program() -> Program:
    root = Collection()
    root.add_collection(bundle_tasks.ns)
    return Program(namespace=root, version="test")


def test_every_option_has_help() -> None:
    for t in bundle_tasks.ns.tasks.values():
        assert t.__doc__ and len(t.__doc__.strip().splitlines()) == 1
        params = [p for p in t.body.__code__.co_varnames[1:t.body.__code__.co_argcount]]
        assert set(params) - {"set_"} <= set(t.help), set(params) - set(t.help)


def test_invoke_build_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases.load(tmp_path)
    env = tmp_path / "site.env"
    env.write_text(f"CONTROL_PLANE_IPS=192.168.56.10\nK3S_ARTIFACTS_DIR={tmp_path / 'release'}\n")
    program().run(["invoke", "bundle.build", "--env", str(env), "--out", str(tmp_path / "out"),
                   "--split-size", "64K"], exit=False)
    printed = capsys.readouterr().out
    assert "manifest.json sha256" in printed and "ratio" in printed
    program().run(["invoke", "bundle.verify", "--unpack", str(tmp_path / "out" / f"{cases.NAME}.PARTS.sha256"),
                   str(tmp_path)], exit=False)
    assert "OK:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        program().run(["invoke", "bundle.verify", str(tmp_path / cases.NAME), "--arch", "arm64"])
    assert exit_.value.code == 2
