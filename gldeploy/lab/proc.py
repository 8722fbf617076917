"""The lab's one way to run a process: an argv list (never a shell string), bounded by a timeout that
ends the whole process group, loud progress. Remote commands are argv lists too: `ssh_argv` joins
them with shlex.join for the remote shell, so every value arrives as one word, unharmed."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gldeploy.errors import DeployError

INTERRUPT_GRACE = 30.0  # seconds a child gets to clean up after Ctrl-C before its group is killed


class Timeout(DeployError):
    """A command ran past its bound (its process group has been killed)."""


def say(message: str) -> None:
    """Progress line for the operator (stderr, so stdout stays machine-readable)."""
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(argv: Sequence[str], *, timeout: float = 600, check: bool = True, capture: bool = True,
        env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
        input_text: str | None = None, what: str = "") -> subprocess.CompletedProcess[str]:
    """Run an argv list in its own process group with a timeout.

    Past the timeout the whole group is killed and `Timeout` raised; on Ctrl-C the group gets SIGINT,
    INTERRUPT_GRACE seconds to clean up, then SIGKILL, and KeyboardInterrupt goes on. A failure
    (check=True) raises DeployError naming the command and the last lines it wrote."""
    argv = [str(a) for a in argv]
    label = what or Path(argv[0]).name
    pipe = subprocess.PIPE if capture else None
    try:
        child = subprocess.Popen(argv, text=True, env=dict(env) if env is not None else None, cwd=cwd,
                                 stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                                 stdout=pipe, stderr=pipe, start_new_session=True)
    except FileNotFoundError:
        raise DeployError(f"{label}: command {argv[0]!r} not found; run `invoke lab.host-setup` "
                          f"to install the lab's packages") from None
    try:
        stdout, stderr = child.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(child.pid, signal.SIGKILL)
        child.communicate()
        raise Timeout(f"{label}: still running after {timeout:.0f} s, gave up") from None
    except KeyboardInterrupt:
        _signal_group(child.pid, signal.SIGINT)
        try:
            child.communicate(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()
        raise
    finally:
        if child.poll() is None:  # any other exception: nothing of it may outlive the call
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
    done = subprocess.CompletedProcess(argv, child.returncode, stdout or "", stderr or "")
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:] if capture else []
        raise DeployError(f"{label} failed (exit {done.returncode})"
                          + (f": {' | '.join(detail)}" if detail else ""))
    return done


def start(argv: Sequence[str]) -> subprocess.Popen[str]:
    """Start argv in the background in its own process group (stdout and stderr together); the
    caller measures something meanwhile and then calls `finish`."""
    return subprocess.Popen([str(a) for a in argv], text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(child: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    """Wait (bounded) for a `start`ed process: (exit code, output). Past the timeout, or on any
    exception, its whole group is killed; nothing of it outlives the call."""
    try:
        out, _ = child.communicate(timeout=timeout)
        return child.returncode, out or ""
    except subprocess.TimeoutExpired:
        return -9, f"still running after {timeout:.0f} s, killed"
    finally:
        if child.poll() is None:
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()


def ssh_argv(ssh_config: Path, host: str, remote: Sequence[str], *options: str) -> list[str]:
    """`ssh -F CONFIG [OPTIONS] HOST '<remote argv, shlex.join-ed>'` (argv list, one remote string)."""
    return ["ssh", "-F", str(ssh_config), *options, host, shlex.join(remote)]


def wait_for(probe: Callable[[], bool], *, timeout: float, interval: float = 1.0, what: str) -> float:
    """Poll `probe` until true; raise DeployError naming `what` after `timeout` seconds. Returns secs."""
    start = time.monotonic()
    while True:
        if probe():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise DeployError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def have(command: str) -> bool:
    """True when `command` is on PATH."""
    return shutil.which(command) is not None


def invoke_argv(task: str, env_file: Path, sets: list[str], *extra: str) -> list[str]:
    """`invoke <task> --env ... --set K=V ...` as the user would type it (argv list)."""
    argv = [sys.executable, "-m", "invoke", task, "--env", str(env_file)]
    for item in sets:
        argv += ["--set", item]
    return argv + list(extra)
