"""scripts/lib/common.sh helpers (file install, temp dirs), sourced into small bash scripts, and a caller."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, standin_pid, stop_standin
from tests.fixtures.shims import failing_install_path

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "scripts" / "lib" / "common.sh"


def run_lib(snippet: str, *args: str, cwd: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """bash -c 'set -euo pipefail; source common.sh; SNIPPET' with ARGS as $2..."""
    full_env = {"PATH": os.environ["PATH"], "GL_PHASE": "libtest", **(env or {})}
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "$1"; shift; {snippet}', "libtest",
                           str(COMMON), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=30)


INSTALL = 'gl_install_file "$1" "$2" "$3"; echo "installed=${GL_INSTALLED}"'


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(b"new content\n")
    return path


def test_install_file_reports_changed_then_unchanged(tmp_path: Path, src: Path) -> None:
    dest = tmp_path / "dest" / "sub" / "file"
    first = run_lib(INSTALL, str(src), str(dest), "0640", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "installed=changed\n"
    assert dest.read_bytes() == b"new content\n" and (dest.stat().st_mode & 0o777) == 0o640
    again = run_lib(INSTALL, str(src), str(dest), "0640", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, "installed=unchanged\n"), again.stderr
    mode_only = run_lib(INSTALL, str(src), str(dest), "0600", cwd=tmp_path)
    assert (mode_only.returncode, mode_only.stdout) == (0, "installed=changed\n"), mode_only.stderr
    assert (dest.stat().st_mode & 0o777) == 0o600
    assert not list(dest.parent.glob("*.gl-new"))


def test_install_failure_is_fatal_and_leaves_dest_untouched(tmp_path: Path, src: Path) -> None:
    dest = tmp_path / "dest" / "file"
    dest.parent.mkdir()
    dest.write_bytes(b"old content\n")
    result = run_lib(INSTALL, str(src), str(dest), "0644", cwd=tmp_path,
                     env={"PATH": failing_install_path(tmp_path)})
    assert result.returncode == 1
    assert "installed=" not in result.stdout
    assert f"FATAL [libtest] could not install {dest}" in result.stderr
    assert "disk full or read-only" in result.stderr
    assert dest.read_bytes() == b"old content\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file"]  # the temp .gl-new copy is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_destination_is_fatal(tmp_path: Path, src: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run_lib(INSTALL, str(src), str(locked / "file"), "0644", cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1 and "installed=" not in result.stdout
    assert f"could not install {locked / 'file'}" in result.stderr
    assert list(locked.iterdir()) == []


def test_install_into_uncreatable_directory_is_fatal(tmp_path: Path, src: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be\n")
    dest = blocker / "sub" / "file"
    result = run_lib(INSTALL, str(src), str(dest), "0644", cwd=tmp_path)
    assert result.returncode == 1 and "installed=" not in result.stdout
    assert f"could not create the directory of {dest}" in result.stderr
    assert blocker.read_text() == "a file where a directory should be\n"


def test_phase_02_stops_at_a_failed_file_install_and_starts_nothing(
        run_phase: Callable[..., Any], sandbox_root: Path, tmp_path: Path) -> None:
    """A caller (lib/k3s_install.sh _k3s_put): no truncated k3s binary lands, nothing is started."""
    release = make_release(tmp_path / "release", "v1.28.3+k3s2").parent
    values = {"K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(free_port()), "HEALTH_TIMEOUT": "30"}
    try:
        result = run_phase("02_install_k3s", "--json", "--role", "single", overrides=values,
                            env={"PATH": failing_install_path(tmp_path)})
        assert result.returncode == 1, result.stderr
        binary = sandbox_root / "usr/local/bin/k3s"
        assert f"could not install {binary}" in result.stderr and "disk full" in result.stderr
        assert not binary.exists() and list(binary.parent.iterdir()) == []
        assert standin_pid(sandbox_root) is None
        # --json callers still get one JSON object, with the failure as a failed check
        assert result.report["status"] == "fail" and result.report["phase"] == "02_install_k3s"
        assert f"could not install {binary}" in result.check("02_install_k3s")["message"]
    finally:
        stop_standin(sandbox_root)


def test_tmpdir_with_quotes_in_tmpdir_runs_no_command_and_is_removed(tmp_path: Path) -> None:
    evil = tmp_path / "t'; touch PWNED; '"
    evil.mkdir()
    result = run_lib('gl_tmpdir work; printf "%s\\n" "${work}"; [[ -d "${work}" ]]', cwd=tmp_path,
                     env={"TMPDIR": str(evil)})
    assert result.returncode == 0, result.stderr
    made = Path(result.stdout.strip())
    assert made.parent == evil and made.name.startswith("gl-libtest.")
    assert not made.exists(), "the temp dir is removed on exit"
    assert list(evil.iterdir()) == []
    assert not list(tmp_path.rglob("PWNED")) and not (tmp_path / "PWNED").exists()
    assert "command not found" not in result.stderr


def test_json_quote_escapes_every_control_character(tmp_path: Path) -> None:
    """ESC, BEL, form feed, ...: every control character leaves as \\u00XX, so the object stays JSON."""
    import json

    text = "".join(chr(c) for c in range(1, 32)) + "\x7f end \\ \" quote"
    result = run_lib('gl_json_quote q "$1"; printf "%s" "${q}"', text, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(ord(ch) >= 32 and ch != "\x7f" for ch in result.stdout), repr(result.stdout)
    assert json.loads(result.stdout) == text  # strict: raw control characters would be refused


def test_json_quote_keeps_plain_and_unicode_text(tmp_path: Path) -> None:
    import json

    text = "plain: 中文 ok [/] {x} $HOME `cmd`"
    result = run_lib('gl_json_str "$1"', text, cwd=tmp_path)
    assert json.loads(result.stdout) == text


ROLE_PHASES = ("01_pre_install_check", "02_install_k3s", "02_init_control_plane")
NOROLE_PHASES = ("03_deploy_gl_backend", "04_health_check", "05_deploy_gl_backend", "06_health_check")


@pytest.mark.parametrize("script", ROLE_PHASES + NOROLE_PHASES)
@pytest.mark.parametrize("case", ["unknown argument before --json", "bad role", "missing settings"])
def test_json_callers_get_one_object_on_bad_input(run_phase: Callable[..., Any], sandbox_root: Path,
                                                  tmp_path: Path, script: str, case: str) -> None:
    role = ["--role", "single"] if script in ROLE_PHASES else []
    env = None
    if case == "unknown argument before --json":
        args, needle = ["--frobnicate", *role, "--json"], "--frobnicate"
    elif case == "bad role":
        args, needle = ["--role", "master", "--json"], "master" if role else "unknown argument '--role'"
    else:
        args, needle = [*role, "--json"], "nope.env"
        env = {"GL_ENV_FILE": str(tmp_path / "nope.env")}
    run = run_phase(script, *args, env=env)
    assert run.returncode == 2, run.stderr
    report = run.report  # the whole of stdout is one JSON object
    assert (report["phase"], report["status"], report["changed"], report["k3s_mode"]) == (script, "fail", False, "none")
    assert needle in run.check("bad-input")["message"]
    assert list(sandbox_root.iterdir()) == []


def test_unexpected_end_still_prints_one_object(tmp_path: Path) -> None:
    """set -e ends the phase at a failing command: --json callers still get their one object."""
    import json

    result = run_lib('GL_JSON=1; echo "step"  >&2; false; echo never', cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["status"] == "fail" and "'false' failed" in report["checks"][0]["message"]


def test_result_object_survives_a_banner_without_newline(run_phase: Callable[..., Any]) -> None:
    """The object is printed on a line of its own, so a login banner glued in front cannot spoil it."""
    from gldeploy import results

    run = run_phase("01_pre_install_check", "--role", "single", "--json")
    assert run.stdout.startswith("\n{")
    read = results.from_script("01_pre_install_check", "h", "single", run.returncode,
                               "Welcome to h (no newline)" + run.stdout, run.stderr, 0.1)
    assert read.checks == run.report["checks"] and read.status == run.report["status"]


# --- one settings authority: the phases trust settings.env / the baked block -------------------------
# every bash file of the product: the phases, the tools, the bastion phases and their libraries
MY_SCRIPTS = sorted(str(p.relative_to(REPO / "scripts")) for p in (REPO / "scripts").rglob("*.sh"))


# the numbered phases and their libraries: bad input there is about arguments and host files only
PHASE_SCRIPTS = [n for n in MY_SCRIPTS if n[:2].isdigit() or n.startswith("lib/")]
HOST_FILE_CHECKS = ("lib/k3s_install.sh", "lib/cni.sh", "04_install_cni.sh",  # die_input on host files or
                    "lib/k3s_join.sh")  # on arguments (--plugin, --server-url), naming the key they stand for


@pytest.mark.parametrize("name", MY_SCRIPTS)
def test_no_phase_re_defaults_or_re_checks_a_setting(name: str) -> None:
    """gldeploy.settings decides every key once; a `${KEY:-default}` or a die_input about a key in bash
    is a second rule (they drifted: 04 allowed upper-case host names, 01 guessed the role)."""
    import re

    from gldeploy import settings

    text = (REPO / "scripts" / name).read_text()
    keys = "|".join(sorted(settings.KEYS, key=len, reverse=True))
    defaults = re.findall(rf"\$\{{({keys})(?::?[-=])", text)
    assert not defaults, f"{name} re-defaults {sorted(set(defaults))}"
    if name not in PHASE_SCRIPTS or name in HOST_FILE_CHECKS:
        return  # tools and host-file checks may name a key in a message about this host or an argument
    checks = [line.strip() for line in text.splitlines()
              if "die_input" in line and re.search(rf"\b({keys})\b", line)]
    assert not checks, f"{name} re-checks settings: {checks}"


def test_bash_roles_are_the_sequence_table_roles() -> None:
    """lib/common.sh's GL_ROLES (what --role accepts) is gldeploy.sequences.ROLES, in order."""
    import re

    from gldeploy import sequences
    text = (Path(__file__).resolve().parents[2] / "scripts" / "lib" / "common.sh").read_text()
    match = re.search(r'^GL_ROLES="([^"]*)"', text, re.M)
    assert match and tuple(match.group(1).split()) == sequences.ROLES
