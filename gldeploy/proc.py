"""The one way gldeploy runs a local command: an argv list, bounded, stopped whole, output captured.

``run(argv, timeout=...)`` starts ``argv`` (never a shell string) in a session of its own and waits at
most ``timeout`` seconds. At the bound, or when the caller is interrupted (Ctrl-C, any exception), the
command's whole process group is stopped (SIGINT on interrupt, SIGKILL at the bound), so nothing it
started lives on. Both output streams are captured as text; stderr lines can also be streamed to a
callback as they come (progress). ``check=True`` turns a failure into a DeployError naming the command.

    from gldeploy import proc
    done = proc.run(["virsh", "list", "--name"], timeout=60, check=True)
    done.stdout.splitlines()
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from .errors import DeployError

TIMED_OUT = 124  # exit code of a command stopped at its bound (as timeout(1) gives)
INTERRUPT_GRACE = 10  # seconds an interrupted command gets to stop after SIGINT before SIGKILL
OUTPUT_GRACE = 5  # seconds to wait for output a killed command's escaped children may still hold

Writer = Callable[[IO[bytes]], None]  # streams the command's stdin (e.g. a tar); the pipe is closed after
LineSink = Callable[[str], None]  # gets each stderr line (without its newline) as it arrives


@dataclass(frozen=True)
class Completed:
    """Outcome of one command: exit code, captured output, and whether run() stopped it at its bound."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False  # run() killed it at `timeout` (rc is then TIMED_OUT)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def run(argv: Sequence[str], *, timeout: float | None, input: bytes | Writer | None = None,
        hold_stdin: bool = False, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
        check: bool = False, on_stdout: LineSink | None = None, on_stderr: LineSink | None = None,
        what: str = "") -> Completed:
    """Run `argv` and wait for it, at most `timeout` seconds (None: as long as it takes; only for
    commands bounded another way).

    input: bytes, or a Writer streaming into the pipe; None gives /dev/null, unless `hold_stdin`
        keeps an empty pipe open until the command ends (a remote watchdog takes its closing as
        "the client went away").
    env: the whole environment (None inherits this process's). cwd: working directory.
    check: raise DeployError (naming `what`, default argv[0]) on a non-zero exit or the bound.
    on_stdout/on_stderr: called with each line as it arrives (it is captured all the same), e.g. to
        show a long command's progress.
    A missing program raises DeployError; Ctrl-C stops the command's group and is re-raised.
    """
    label = what or os.path.basename(argv[0])
    piped = input is not None or hold_stdin
    try:
        child = subprocess.Popen(list(argv), stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                 env=dict(env) if env is not None else None, cwd=cwd)
    except FileNotFoundError:
        raise DeployError(f"{label}: command {argv[0]!r} not found on this machine") from None
    out: list[str] = []
    err: list[str] = []
    threads: list[threading.Thread] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    try:  # from here on an interrupt stops the command too
        assert child.stdout is not None and child.stderr is not None
        threads += [_start(_pump, child.stdout, out, on_stdout), _start(_pump, child.stderr, err, on_stderr)]
        if input is not None:
            assert child.stdin is not None
            threads.append(_start(_feed, child.stdin, input))
        rc = child.wait(timeout=_left(deadline))
        if input is None:
            _close(child.stdin)  # a held stdin ends with the command (an ssh master may share the pipes)
        for thread in threads:  # output a left-behind child still holds open counts against the bound
            thread.join(timeout=_left(deadline))
        if any(thread.is_alive() for thread in threads):
            raise subprocess.TimeoutExpired(list(argv), timeout or 0)
    except subprocess.TimeoutExpired:
        if input is None:
            _close(child.stdin)  # a held stdin; a Writer's pipe breaks when the group is killed
        _signal_group(child, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=OUTPUT_GRACE)  # an escaped process may hold the pipes: do not hang
        done = Completed(tuple(argv), TIMED_OUT, "".join(out), "".join(err), timed_out=True)
        if check:
            raise DeployError(f"{label}: still running after {timeout:g} s; stopped it and every process "
                              f"it started") from None
        return done
    except BaseException:
        # Ctrl-C (or any error here): the command is in its own session, so the terminal's SIGINT did
        # not reach it. Close its stdin (a remote watchdog stops the remote side), pass the interrupt
        # on, then kill what has not stopped.
        if input is None:
            _close(child.stdin)
        _signal_group(child, signal.SIGINT)
        try:
            child.wait(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
        raise
    done = Completed(tuple(argv), rc, "".join(out), "".join(err))
    if check and rc != 0:
        detail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise DeployError(f"{label} failed (exit {rc})" + (f": {detail}" if detail else ""))
    return done


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _start(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _pump(stream: IO[bytes], sink: list[str], on_line: LineSink | None) -> None:
    with io.TextIOWrapper(stream, errors="replace") as text:
        for line in text:
            sink.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))


def _feed(pipe: IO[bytes], input: bytes | Writer) -> None:
    try:
        if isinstance(input, bytes):
            pipe.write(input)
        else:
            input(pipe)
    except (BrokenPipeError, ValueError):
        pass  # the command stopped reading (or was stopped); its exit code and stderr tell why
    finally:
        _close(pipe)


def _close(pipe: IO[bytes] | None) -> None:
    if pipe is None:
        return
    try:
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the command's whole process group (it leads a session of its own)."""
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            child.send_signal(sig)
        except ProcessLookupError:
            pass
    if sig == signal.SIGKILL:
        child.wait()
