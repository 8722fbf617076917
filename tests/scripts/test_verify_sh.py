"""verify.sh (bash, the verifier shipped in every bundle) on the shared fault table: it must agree with
the Python verifier (same exit code, same file named), and stay shellcheck clean."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import sitebundle_cases as cases
from tests.unit.test_sitebundle_faults import destination, run_python

VERIFY_SH = Path(__file__).resolve().parents[2] / "scripts" / "bundle" / "verify.sh"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cases.build_signed(tmp_path_factory.mktemp("sitebundle-sh"))


def run_bash(case: cases.Case, out: Path, dest: Path) -> tuple[int, str]:
    opts = cases.options(case, out)
    argv = ["bash", str(VERIFY_SH)]
    if case.unpack:
        argv += ["--unpack", str(out / f"{cases.NAME}.PARTS.sha256"), "--to", str(dest)]
    else:
        argv.append(str(cases.bundle(out)))
    if opts["require_signature"]:
        argv.append("--require-signature")
    if opts["allowed_signers"]:
        argv += ["--allowed-signers", str(opts["allowed_signers"])]
    if opts["arch"]:
        argv += ["--arch", str(opts["arch"])]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})  # no python on the offline host
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_verify_sh_agrees_with_python(built: Path, tmp_path: Path, case: cases.Case) -> None:
    out = cases.prepared(built, tmp_path / "sh", case)
    with destination(tmp_path / "sh", case) as dest:
        code, message = run_bash(case, out, dest)
        assert code == case.code, message
        assert case.names in message, message
        if code and case.unpack:
            assert not any(dest.iterdir()), "a refused unpack wrote into the destination"
    py_out = cases.prepared(built, tmp_path / "py", case)
    with destination(tmp_path / "py", case) as dest:
        assert run_python(case, py_out, dest)[0] == code


def test_shipped_verify_sh_is_the_repo_copy(built: Path) -> None:
    assert (cases.bundle(built) / "verify.sh").read_bytes() == VERIFY_SH.read_bytes()


def test_verify_sh_rejects_unknown_option(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(VERIFY_SH), "--frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option '--frobnicate'" in proc.stderr


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
def test_verify_sh_is_shellcheck_clean() -> None:
    proc = subprocess.run(["shellcheck", "-x", str(VERIFY_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("case", [c for c in cases.CASES if c.name in ("verified", "flipped-byte", "truncated-file")],
                         ids=lambda c: c.name)
def test_verify_sh_without_openssl_uses_sha256sum(built: Path, tmp_path: Path, case: cases.Case) -> None:
    """Hosts without openssl hash with coreutils' sha256sum: same answers."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bash", "sha256sum", "ssh-keygen", "xargs", "sort", "comm", "sed", "cut", "find", "stat", "cat",
                 "grep", "head", "paste", "tr", "dirname", "basename", "nproc", "env"):
        found = shutil.which(name)
        assert found, name
        (tools / name).symlink_to(found)
    out = cases.prepared(built, tmp_path, case)
    opts = cases.options(case, out)
    proc = subprocess.run(["bash", str(VERIFY_SH), str(cases.bundle(out)), "--require-signature",
                           "--allowed-signers", str(opts["allowed_signers"])],
                          capture_output=True, text=True, env={"PATH": str(tools)})
    assert proc.returncode == case.code, proc.stderr
    assert case.names in proc.stderr


def test_many_parts_are_all_recognised_as_listed(built: Path, tmp_path: Path) -> None:
    """Membership of each present part is decided without `printf | grep -q` (which, under pipefail,
    called a listed part stray whenever grep quit before printf had written the whole list)."""
    out = cases.prepared(built, tmp_path / "many", cases.CASES[0].__class__("none", lambda o: None, 0, ""))
    parts = sorted(out.glob(f"{cases.NAME}.tar.*"))
    assert len(parts) >= 10
    dest = tmp_path / "dest"
    dest.mkdir()
    for _ in range(20):  # the old race needed luck; a sound lookup passes every time
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        proc = subprocess.run(["bash", str(VERIFY_SH), "--unpack", str(out / f"{cases.NAME}.PARTS.sha256"),
                               "--to", str(dest)], capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        assert proc.returncode == 0 and "not listed" not in proc.stderr, proc.stderr
