"""The lab judges libvirt's daemons by what answers, not by files a killed daemon leaves behind."""
from __future__ import annotations

import os
import socket
from pathlib import Path

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
    assert not host._alive(pidfile)
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    own = tmp_path / f"gl-lab-{comm}.pid"
    own.write_text(f"{os.getpid()}\n")
    assert host._alive(own)
    pidfile.write_text("not a pid\n")
    assert not host._alive(pidfile)


def test_watchdog_interrupts_a_call_that_overruns_its_bound() -> None:
    import subprocess
    import time

    from gldeploy.lab.vagrant import Watchdog
    start = time.monotonic()
    with Watchdog(0.5) as dog:
        proc = subprocess.run(["sleep", "30"])
    assert dog.fired and proc.returncode == -2  # SIGINT, as a Ctrl-C would send
    assert time.monotonic() - start < 10


def test_watchdog_stays_quiet_when_the_call_finishes_in_time() -> None:
    import subprocess

    from gldeploy.lab.vagrant import Watchdog, child_pids
    with Watchdog(30) as dog:
        proc = subprocess.Popen(["sleep", "0.2"])
        assert proc.pid in child_pids()
        proc.wait()
    assert not dog.fired and proc.returncode == 0
