"""Bounded, interruptible child processes for the lab (vagrant, mmdebstrap).

Both clean up after themselves on SIGINT (vagrant destroys a half-made VM and its half-uploaded
box volume; mmdebstrap unmounts what it mounted) but only if they are given the time: on Ctrl-C,
Python's subprocess kills a child 0.25 s later. `Guard` holds the interrupt back until the child has
finished cleaning up, passes SIGTERM on as SIGINT, bounds the call, and kills what is still alive
CLEANUP_GRACE seconds after the SIGINT.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

CLEANUP_GRACE = 90  # seconds a child gets to clean up after SIGINT before it is killed


def child_pids() -> list[int]:
    """PIDs of this process's direct children (from /proc)."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(stat.parent.name))
    return found


def signal_children(sig: int) -> None:
    """Send `sig` to every direct child."""
    for pid in child_pids():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def term_as_interrupt() -> None:
    """Make SIGTERM (a CI timeout, `kill`) unwind like Ctrl-C, so cleanup in `finally` runs."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


class Guard:
    """Around one blocking call that runs a child process:
    - after `seconds` (when given) the children get SIGINT, as on Ctrl-C, and `fired` is set;
    - Ctrl-C or SIGTERM to this process is held back (SIGTERM is passed on as SIGINT) and raised as
      KeyboardInterrupt when the call returns, after the child has cleaned up;
    - children still alive CLEANUP_GRACE seconds after a SIGINT are killed."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds, self.fired, self.interrupted = seconds, False, False
        self._timers: list[threading.Timer] = []
        self._saved: dict[int, Any] = {}
        self._lock = threading.RLock()  # re-entrant: a signal handler may run while __exit__ holds it
        self._closed = False  # after __exit__ no timer may signal anything (children started later)

    def _later(self, delay: float, action: Any, *args: Any) -> None:
        timer = threading.Timer(delay, self._guarded, args=(action, *args))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.append(timer)
        timer.start()

    def _guarded(self, action: Any, *args: Any) -> None:
        with self._lock:
            if self._closed:
                return
            action(*args)

    def _bound_reached(self) -> None:
        self.fired = True
        signal_children(signal.SIGINT)
        self._later(CLEANUP_GRACE, signal_children, signal.SIGKILL)  # the lock is re-entrant

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.interrupted and signum == signal.SIGTERM:
            signal_children(signal.SIGINT)  # Ctrl-C reaches the whole process group; SIGTERM only us
        if not self.interrupted:
            self._later(CLEANUP_GRACE, signal_children, signal.SIGKILL)
        self.interrupted = True

    def __enter__(self) -> Guard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._on_signal)
        if self.seconds is not None:
            self._later(self.seconds, self._bound_reached)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        with self._lock:  # waits for a timer action in progress; none runs after this
            self._closed = True
            timers = list(self._timers)
        for timer in timers:
            timer.cancel()
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self.interrupted and exc_type is not KeyboardInterrupt:
            raise KeyboardInterrupt
