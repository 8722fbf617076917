"""The lab judges libvirt's daemons by what answers, not by files a killed daemon leaves behind."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from gldeploy.lab import host


def test_a_socket_file_nobody_listens_on_does_not_answer(tmp_path: Path) -> None:
    path = tmp_path / "virtlogd-sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        assert host.socket_answers(path)
    assert path.exists()  # the file stays after its listener is gone, as after a killed virtlogd
    assert not host.socket_answers(path)
    assert not host.socket_answers(tmp_path / "missing")


def test_a_pidfile_counts_only_when_its_pid_is_that_daemon(tmp_path: Path) -> None:
    pidfile = tmp_path / "gl-lab-virtlogd.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # alive, but python, not virtlogd (a reused PID)
    assert not host.pid_alive(pidfile)
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    own = tmp_path / f"gl-lab-{comm}.pid"
    own.write_text(f"{os.getpid()}\n")
    assert host.pid_alive(own)
    pidfile.write_text("not a pid\n")
    assert not host.pid_alive(pidfile)


def test_guard_interrupts_a_call_that_overruns_its_bound() -> None:
    import subprocess
    import time

    from gldeploy.lab.children import Guard
    start = time.monotonic()
    with Guard(0.5) as guard:
        proc = subprocess.run(["sleep", "30"])
    assert guard.fired and proc.returncode == -2  # SIGINT, as a Ctrl-C would send
    assert time.monotonic() - start < 10


def test_guard_stays_quiet_when_the_call_finishes_in_time() -> None:
    import subprocess

    from gldeploy.lab.children import Guard, child_pids
    with Guard(30) as guard:
        proc = subprocess.Popen(["sleep", "0.2"])
        assert proc.pid in child_pids()
        proc.wait()
    assert not guard.fired and proc.returncode == 0


def test_guard_lets_the_child_clean_up_on_sigterm_then_raises_keyboard_interrupt(tmp_path: Path) -> None:
    """SIGTERM to this process is passed on to the child as SIGINT; the child's own cleanup runs to
    the end (Python alone would kill it 0.25 s after a Ctrl-C); then KeyboardInterrupt is raised."""
    import signal
    import subprocess
    import threading

    import pytest

    from gldeploy.lab.children import Guard
    done = tmp_path / "cleaned-up"
    child = f"trap 'sleep 1; touch {done}; exit 130' INT; sleep 30 & wait"
    threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(KeyboardInterrupt):
        with Guard() as guard:
            proc = subprocess.run(["bash", "-c", child])
    assert guard.interrupted and proc.returncode == 130
    assert done.exists(), "the child's cleanup did not finish"
    assert signal.getsignal(signal.SIGTERM) is not guard._on_signal  # handlers restored


def test_a_guard_that_has_ended_signals_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound fires right before the call returns; the kill it schedules must not reach a child
    started after the guard ended (the lab registry, say)."""
    import subprocess
    import time

    from gldeploy.lab import children
    monkeypatch.setattr(children, "CLEANUP_GRACE", 0.3)
    with children.Guard(0.1) as guard:
        time.sleep(0.2)
    later = subprocess.Popen(["sleep", "5"])
    try:
        time.sleep(0.8)
        assert guard.fired and later.poll() is None, "a child started after the guard was signalled"
    finally:
        later.kill()
        later.wait()
