"""The bundle's packages section: apt's closure output read exactly, the target's dpkg status checked,
downloads checked against apt's size/hash and cached, .deb files in the manifest as os-package with
version and origin, and both verifiers accepting the result. apt-get is a fake on PATH here (no mirror
in unit tests); the air-gap VM lab runs the real one against the box's dpkg status."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from gldeploy.errors import ConfigError, DeployError
from gldeploy.sitebundle import build, verify
from gldeploy.sitebundle import manifest as mf
from gldeploy.sitebundle import packages as pkgs
from tests.fixtures import sitebundle_cases as cases

MIRROR = "http://deb.debian.org/debian/pool/main"
CHRONY = b"chrony deb bytes\n" * 100
BIND = b"bind9 dnsutils deb bytes\n" * 50
STATUS = "Package: base-files\nStatus: install ok installed\nVersion: 12.4\n\n"


def uri_lines(chrony_hash: str | None = None) -> str:
    md5 = chrony_hash or hashlib.md5(CHRONY).hexdigest()
    return (f"'{MIRROR}/c/chrony/chrony_4.3-2%2bdeb12u3_amd64.deb' chrony_4.3-2+deb12u3_amd64.deb "
            f"{len(CHRONY)} MD5Sum:{md5}\n"
            f"'{MIRROR}/b/bind9/bind9-dnsutils_9.18.49-1%7edeb12u3_amd64.deb' "
            f"bind9-dnsutils_1%3a9.18.49-1~deb12u3_amd64.deb {len(BIND)} \n")


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """apt-get on PATH: `install --print-uris` prints $FAKE_APT/uris, `download` writes the bytes in
    $FAKE_APT/<name>.bytes as apt would name the file; every call is logged."""
    bindir, data = tmp_path / "bin", tmp_path / "fake-apt"
    bindir.mkdir()
    data.mkdir()
    (data / "uris").write_text(uri_lines())
    (data / "chrony.bytes").write_bytes(CHRONY)
    (data / "bind9-dnsutils.bytes").write_bytes(BIND)
    script = bindir / "apt-get"
    script.write_text("""#!/bin/bash
set -euo pipefail
printf '%s\\n' "$*" >>"$FAKE_APT/calls"
for a in "$@"; do
  case $a in
    update) exit 0 ;;
    --print-uris) cat "$FAKE_APT/uris"; exit 0 ;;
    *=*:*|*:amd64=*) spec=$a ;;
  esac
done
name=${spec%%:*}; version=${spec#*=}
cp "$FAKE_APT/$name.bytes" "${name}_${version//:/%3a}_amd64.deb"
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT", str(data))
    return data


@pytest.fixture
def status(tmp_path: Path) -> Path:
    path = tmp_path / "target.status"
    path.write_text(STATUS)
    return path


def test_print_uris_with_and_without_hash_and_an_epoch() -> None:
    debs = pkgs.parse_print_uris(uri_lines())
    assert [(d.name, d.version, d.arch, d.size) for d in debs] == [
        ("bind9-dnsutils", "1:9.18.49-1~deb12u3", "amd64", len(BIND)),
        ("chrony", "4.3-2+deb12u3", "amd64", len(CHRONY))]
    assert debs[0].hash == "" and debs[1].hash == f"md5sum:{hashlib.md5(CHRONY).hexdigest()}"
    assert debs[0].bundle_name == "bind9-dnsutils_amd64.deb"
    assert mf.SAFE_PATH.match(f"packages/bastion/{debs[0].bundle_name}")


@pytest.mark.parametrize("line", ["E: Unable to locate package nosuch",
                                  "'http://x/a_1_amd64.deb' a_1_amd64.deb 10 CRC32:abcd",
                                  "'http://x/a.deb' a.deb 10 SHA256:" + "0" * 64])
def test_unreadable_print_uris_output_is_an_error_not_an_empty_closure(line: str) -> None:
    with pytest.raises(DeployError, match="apt-get --print-uris"):
        pkgs.parse_print_uris(line + "\n")


def test_status_must_be_a_dpkg_status_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--os-status .*no such file.*/var/lib/dpkg/status"):
        pkgs.check_status(tmp_path / "missing")
    (tmp_path / "bad").write_text("hello\n")
    with pytest.raises(ConfigError, match="not a dpkg status file"):
        pkgs.check_status(tmp_path / "bad")


def test_gather_downloads_checks_and_caches(fake_apt: Path, status: Path, tmp_path: Path) -> None:
    found = pkgs.gather(status, tmp_path / "cache")
    assert set(found) == {"bastion", "node"}
    got = {d.name: p.read_bytes() for d, p in found["bastion"]}
    assert got == {"chrony": CHRONY, "bind9-dnsutils": BIND}
    calls = (fake_apt / "calls").read_text().splitlines()
    install = next(c for c in calls if "--print-uris" in c)
    assert all(p in install.split() for p in pkgs.ROLE_PACKAGES["bastion"]) and "--no-install-recommends" in install
    assert f"Dir::State::status={tmp_path}" not in install  # a throwaway root, not the target's file
    assert "bind9-dnsutils:amd64=1:9.18.49-1~deb12u3" in " ".join(calls)
    downloads = sum("download" in c.split() for c in calls)
    pkgs.gather(status, tmp_path / "cache")
    calls = (fake_apt / "calls").read_text().splitlines()
    assert sum("download" in c.split() for c in calls) == downloads  # second run: from the cache


def test_a_download_that_is_not_what_the_index_lists_is_refused(fake_apt: Path, status: Path,
                                                                tmp_path: Path) -> None:
    (fake_apt / "uris").write_text(uri_lines(chrony_hash="0" * 32))
    with pytest.raises(DeployError, match="chrony 4.3-2.deb12u3: the downloaded file is not the one"):
        pkgs.gather(status, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "debs").glob("chrony*"))


def test_bundle_packages_section_in_manifest_and_verified(fake_apt: Path, status: Path, tmp_path: Path) -> None:
    result = build.build(cases.load(tmp_path), tmp_path / "out", version=cases.VERSION, os_status=status,
                         cache_dir=tmp_path / "cache")
    manifest = mf.parse((result.bundle_dir / mf.MANIFEST).read_text())
    debs = {e.path: e for e in manifest.files if e.kind == "os-package"}
    assert set(debs) == {f"packages/{role}/{name}_amd64.deb" for role in ("bastion", "node")
                         for name in ("chrony", "bind9-dnsutils")}
    chrony = debs["packages/bastion/chrony_amd64.deb"]
    assert chrony.version == "4.3-2+deb12u3" and chrony.origin.endswith("chrony_4.3-2%2bdeb12u3_amd64.deb")
    assert chrony.sha256 == hashlib.sha256(CHRONY).hexdigest()
    assert (result.bundle_dir / chrony.path).read_bytes() == CHRONY
    verify.verify_bundle(result.bundle_dir)
    shell = subprocess.run(["bash", str(result.bundle_dir / mf.VERIFIER)], cwd=result.bundle_dir,
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    json.loads((result.bundle_dir / mf.MANIFEST).read_text())


def test_no_status_no_packages_section(tmp_path: Path) -> None:
    result = build.build(cases.load(tmp_path), tmp_path / "out", version=cases.VERSION)
    assert not (result.bundle_dir / pkgs.PACKAGES_DIR).exists()
