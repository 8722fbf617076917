"""The lab's one way to run a process: argv only, bounded, the whole process group ended on timeout;
remote commands are an argv joined with shlex.join for the remote shell."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gldeploy.errors import DeployError
from gldeploy.lab import proc

NASTY = ["a value with spaces", "it's \"quoted\"", "$(touch /tmp/gl-lab-pwned)", "`id`", "x; rm -rf ~",
         "*", "$HOME", "tab\there", "new\nline", ""]


@pytest.mark.parametrize("value", NASTY)
def test_local_argv_passes_a_value_unharmed(value: str) -> None:
    assert proc.run(["printf", "%s", value]).stdout == value


@pytest.mark.parametrize("value", NASTY)
def test_remote_command_reaches_the_remote_argv_unharmed(value: str, tmp_path: Path) -> None:
    """sshd hands the remote command string to the user's shell (`sh -c STRING`): what arrives in
    the remote program's argv is exactly what the lab passed."""
    argv = proc.ssh_argv(tmp_path / "ssh-config", "192.168.56.10", ["printf", "%s|", value, "second"])
    assert argv[:4] == ["ssh", "-F", str(tmp_path / "ssh-config"), "192.168.56.10"]
    assert len(argv) == 5  # one remote command string, built by shlex.join
    assert proc.run(["sh", "-c", argv[4]]).stdout == f"{value}|second|"
    assert not Path("/tmp/gl-lab-pwned").exists()


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A grandchild (here a backgrounded sleep that keeps the pipes open) is ended too, and the
    bound is kept even though the pipes stay open."""
    pidfile = tmp_path / "grandchild.pid"
    start = time.monotonic()
    with pytest.raises(proc.Timeout, match="still running after 1 s"):
        proc.run(["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1, what="sleeper")
    assert time.monotonic() - start < 10
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_failure_names_the_command_and_its_last_output() -> None:
    with pytest.raises(DeployError, match=r"probe failed \(exit 3\): boom"):
        proc.run(["bash", "-c", "echo boom >&2; exit 3"], what="probe")


def test_check_false_returns_the_exit_code() -> None:
    assert proc.run(["bash", "-c", "exit 4"], check=False).returncode == 4


def test_missing_command_says_how_to_install_it() -> None:
    with pytest.raises(DeployError, match="not found.*lab.host-setup"):
        proc.run(["gl-lab-no-such-command"])


def test_input_text_reaches_stdin() -> None:
    assert proc.run(["cat"], input_text="secret\n").stdout == "secret\n"


def test_no_shell_strings_anywhere_in_the_lab() -> None:
    """Only proc.py starts processes (the registry daemon aside: a long-lived server)."""
    lab = Path(proc.__file__).parent
    offenders = [f"{p.name}:{n}" for p in sorted(lab.glob("*.py")) if p.name not in ("proc.py", "registry.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if "subprocess.run(" in line or "subprocess.Popen(" in line or "os.system(" in line
                 or "shell=True" in line]
    assert offenders == []


def test_env_is_added_to_the_environment_when_asked() -> None:
    out = proc.run(["sh", "-c", 'printf %s "$GL_X"'], env={**os.environ, "GL_X": "1 2"}).stdout
    assert out == "1 2"


def test_started_process_is_finished_or_killed_with_its_group() -> None:
    rc, out = proc.finish(proc.start(["sh", "-c", "echo hi; exit 4"]), 10)
    assert (rc, out) == (4, "hi\n")
    child = proc.start(["sh", "-c", "sleep 30 & sleep 30"])
    rc, out = proc.finish(child, 0.5)
    assert rc == -9 and "killed" in out
    deadline = time.monotonic() + 10  # the whole group is gone (orphans reaped by init)
    while time.monotonic() < deadline:
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a process of the started group outlived finish()")
