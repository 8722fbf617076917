"""gldeploy.proc.run: the one local process runner (bounded, whole group stopped, output captured)."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import IO

import pytest

from gldeploy import proc
from gldeploy.errors import DeployError
from tests.fixtures.processes import running


def _marker(tag: str) -> str:
    return f"gl-proc-{tag}-{uuid.uuid4().hex}"  # unique per run: a leftover of another run cannot match


def test_output_exit_code_and_stderr_lines_as_they_come() -> None:
    lines: list[str] = []
    outs: list[str] = []
    done = proc.run(["sh", "-c", "echo out; echo one >&2; echo two >&2; exit 3"], timeout=10,
                    on_stdout=outs.append, on_stderr=lines.append)
    assert (done.rc, done.stdout, done.stderr, done.timed_out) == (3, "out\n", "one\ntwo\n", False)
    assert lines == ["one", "two"] and outs == ["out"] and not done.ok and done.argv[0] == "sh"


def test_input_env_and_cwd(tmp_path: Path) -> None:
    done = proc.run(["sh", "-c", 'cat; echo "$GL_V"; pwd'], timeout=10, input=b"from stdin\n",
                    env={"GL_V": "it's", "PATH": os.environ["PATH"]}, cwd=tmp_path)
    assert done.stdout == f"from stdin\nit's\n{tmp_path}\n" and done.ok


def test_check_names_the_command_its_exit_and_its_last_words() -> None:
    with pytest.raises(DeployError, match=r"virsh-probe failed \(exit 4\): .*no such domain"):
        proc.run(["sh", "-c", "echo 'error: no such domain' >&2; exit 4"], timeout=10, check=True,
                 what="virsh-probe")


def test_a_missing_program_is_a_deploy_error() -> None:
    with pytest.raises(DeployError, match="'gl-no-such-program' not found"):
        proc.run(["gl-no-such-program"], timeout=10)


def test_the_bound_stops_the_whole_process_group() -> None:
    marker = _marker("bound")
    started = time.monotonic()
    done = proc.run(["bash", "-c", f"exec -a {marker}-bg sleep 60 & exec -a {marker} sleep 60"], timeout=0.5)
    assert time.monotonic() - started < 10
    assert done.timed_out and done.rc == proc.TIMED_OUT
    time.sleep(0.3)
    assert not running(marker)
    with pytest.raises(DeployError, match="still running after 0.5 s"):
        proc.run(["sleep", "30"], timeout=0.5, check=True)


def test_a_child_left_holding_the_output_does_not_outlive_the_bound() -> None:
    """The command ends at once but leaves a child with its stdout: run() returns at the bound (not
    when the child ends) and the child is stopped with the group."""
    marker = _marker("left-behind")
    started = time.monotonic()
    done = proc.run(["bash", "-c", f"(exec -a {marker} sleep 60) & echo started"], timeout=1)
    assert time.monotonic() - started < 10
    assert done.timed_out and done.stdout == "started\n"
    time.sleep(0.3)
    assert not running(marker)


def test_the_bound_holds_while_stdin_is_being_fed() -> None:
    """A command that never reads its stdin must not hold run() past the bound while the writer
    blocks on a full pipe (the bundle stream to a hung host)."""
    def endless(pipe: IO[bytes]) -> None:
        while True:
            pipe.write(b"x" * 65536)

    started = time.monotonic()
    done = proc.run(["sleep", "30"], timeout=0.5, input=endless)
    assert time.monotonic() - started < 10 and done.timed_out


def test_a_held_stdin_is_open_and_empty_until_the_command_ends() -> None:
    held = proc.run(["bash", "-c", "read -r -t 1 x; echo $?"], timeout=10, hold_stdin=True)
    assert int(held.stdout) > 128  # read timed out: stdin open, nothing sent
    closed = proc.run(["bash", "-c", "read -r -t 1 x; echo $?"], timeout=10)
    assert closed.stdout == "1\n"  # /dev/null: end of input at once


def test_ctrl_c_stops_the_group_and_is_raised() -> None:
    marker = _marker("ctrl-c")
    started: list[bool] = []

    def interrupt_once_running() -> None:
        deadline = time.monotonic() + 10
        while not running(marker):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        started.append(True)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal would
    try:
        threading.Thread(target=interrupt_once_running, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            proc.run(["bash", "-c", f"exec -a {marker}-bg sleep 60 & exec -a {marker} sleep 60"], timeout=30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started, "the child never ran"
    time.sleep(0.3)
    assert not running(marker)
