"""Ssh transport against a real sshd on a free loopback port (throwaway host and client keys)."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from gldeploy.errors import DeployError
from gldeploy.transport import Ssh
from tests.fixtures.k3s_standin.testing import free_port
from tests.fixtures.processes import running

pytestmark = pytest.mark.integration


def test_put_dir_and_run_over_real_sshd(sshd: Path, tmp_path: Path) -> None:
    src = tmp_path / "bundle"
    (src / "lib").mkdir(parents=True)
    (src / "secrets").mkdir(mode=0o700)
    (src / "01_check.sh").write_text("#!/usr/bin/env bash\necho \"out:$GL_X:$1\"; echo progress >&2\n")
    (src / "01_check.sh").chmod(0o755)
    (src / "lib" / "common.sh").write_text("# lib\n")
    (src / "secrets" / "k3s-token").write_text("s3cret\n")
    (src / "secrets" / "k3s-token").chmod(0o600)
    (src / "secrets").chmod(0o700)
    dest = tmp_path / "remote dir"  # a space: the remote command must be quoted correctly
    seen: list[str] = []
    link = Ssh("testhost", "root", ssh_config=str(sshd), echo=seen.append)
    try:
        link.put_dir(src, str(dest))
        assert stat.S_IMODE(dest.stat().st_mode) == 0o700
        assert stat.S_IMODE((dest / "01_check.sh").stat().st_mode) == 0o755
        assert stat.S_IMODE((dest / "secrets").stat().st_mode) == 0o700
        assert stat.S_IMODE((dest / "secrets" / "k3s-token").stat().st_mode) == 0o600
        assert (dest / "secrets" / "k3s-token").read_text() == "s3cret\n"
        assert (dest / "lib" / "common.sh").read_text() == "# lib\n"

        result = link.run(["bash", str(dest / "01_check.sh"), "a b; $(touch x)"], env={"GL_X": "it's"})
        assert result.rc == 0
        assert result.stdout == "out:it's:a b; $(touch x)\n"
        assert "[testhost] progress" in seen  # stderr streamed with the host prefix

        failing = link.run(["sh", "-c", "echo nope >&2; exit 7"])
        assert (failing.rc, failing.stderr) == (7, "nope\n")

        link.put_dir(src, str(dest))  # a second copy over the first works and keeps modes
        assert stat.S_IMODE((dest / "secrets" / "k3s-token").stat().st_mode) == 0o600
        control_dir = link._control_dir
        assert control_dir is not None and stat.S_IMODE(os.stat(control_dir).st_mode) == 0o700
    finally:
        link.close()
    assert not os.path.exists(control_dir)


def test_unreachable_host_is_a_clear_deploy_error(sshd: Path) -> None:
    config = sshd.parent / "bad_config"
    config.write_text(f"Host badhost\n  HostName 127.0.0.1\n  Port {free_port()}\n  ConnectTimeout 2\n")
    link = Ssh("badhost", "root", ssh_config=str(config), echo=None)
    try:
        with pytest.raises(DeployError, match="ssh failed"):
            link.run(["true"])
    finally:
        link.close()


def test_a_timed_out_remote_phase_is_stopped_with_everything_it_started(sshd: Path, tmp_path: Path) -> None:
    """The phase runs under timeout(1) on the host: at the bound its whole process group is stopped,
    background children included, and the result is 124 with a sentence saying so."""
    marker = f"gl-timeout-probe-{tmp_path.name}"
    script = f"exec -a {marker}-child sleep 300 & exec -a {marker}-main sleep 300"
    link = Ssh("testhost", "root", ssh_config=str(sshd), echo=None)
    try:
        started = time.monotonic()
        result = link.run(["bash", "-c", script], timeout=1)
        took = time.monotonic() - started
    finally:
        link.close()
    assert result.rc == 124 and "timed out after 1 s on testhost" in result.stderr
    assert took < 20, f"not bounded: {took:.0f} s"
    deadline = time.monotonic() + 10
    while running(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(marker), "a process of the timed-out phase is still running on the host"


def test_put_dir_replaces_the_bundle_so_nothing_stale_stays(sshd: Path, tmp_path: Path) -> None:
    old, new, dest = tmp_path / "old", tmp_path / "new", tmp_path / "bundle"
    (old / "artifacts/images").mkdir(parents=True)
    (old / "artifacts/images/execution-backend-v1.0.oci.tar").write_text("old image")
    (old / "secrets").mkdir()
    (old / "secrets/registry-password").write_text("old")
    (new / "artifacts/images").mkdir(parents=True)
    (new / "artifacts/images/execution-backend-v1.1.oci.tar").write_text("new image")
    link = Ssh("testhost", "root", ssh_config=str(sshd), echo=None)
    try:
        link.put_dir(old, str(dest))
        link.put_dir(new, str(dest))
    finally:
        link.close()
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [".gl-bundle", "artifacts/images/execution-backend-v1.1.oci.tar"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert not (tmp_path / "bundle.gl-new").exists()


def _remote_phase(marker: str) -> list[str]:
    """A long 'phase' with a background child; its processes' names start with `marker`."""
    return ["bash", "-c", f"exec -a {marker}-child sleep 300 & exec -a {marker}-main sleep 300"]


def _when_running(pattern: str, action: Callable[[], None]) -> list[bool]:
    """Run `action` in a thread once a process matching `pattern` runs (so a test cannot pass
    before the remote phase even started); the returned list gets True when it did."""
    started: list[bool] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while not running(pattern):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        started.append(True)
        action()

    threading.Thread(target=watch, daemon=True).start()
    return started


def _gone_within(pattern: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(pattern):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_leftovers(marker: str) -> None:
    """Remove what a failing run left (only processes carrying this run's unique marker, by pid)."""
    found = subprocess.run(["pgrep", "-f", f"^{marker}"], capture_output=True, text=True).stdout.split()
    for pid in found:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_ctrl_c_stops_the_remote_phase_and_its_children(sshd: Path) -> None:
    """Without a pty sshd never signals the remote command: the phase must still stop, with every
    process it started, within seconds of the operator's Ctrl-C (not at its own bound)."""
    marker = f"gl-remote-ctrl-c-{uuid.uuid4().hex}"
    link = Ssh("testhost", "root", ssh_config=str(sshd), echo=None)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # act as a terminal would
    try:
        started = _when_running(f"^{marker}", lambda: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            link.run(_remote_phase(marker), timeout=600)
        signal.signal(signal.SIGINT, previous)
        assert started, "the remote phase never ran"
        assert _gone_within(f"^{marker}", 5), "the remote phase still runs after Ctrl-C"
    finally:
        signal.signal(signal.SIGINT, previous)
        _kill_leftovers(marker)
        link.close()


def test_the_remote_phase_stops_when_the_ssh_client_dies(sshd: Path) -> None:
    """The ssh client killed outright (no chance to say anything): the channel closes, the remote
    watchdog sees its stdin end and stops the phase's process group."""
    marker = f"gl-remote-client-killed-{uuid.uuid4().hex}"
    link = Ssh("testhost", "root", ssh_config=str(sshd), echo=None)
    outcome: list[object] = []

    def kill_client() -> None:
        client = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", marker], capture_output=True,
                                text=True).stdout.split()
        assert len(client) == 1, client
        os.kill(int(client[0]), signal.SIGKILL)

    def deploy() -> None:
        try:
            outcome.append(link.run(_remote_phase(marker), timeout=600))
        except Exception as exc:  # noqa: BLE001  (whatever it is, the test looks at the host)
            outcome.append(exc)

    try:
        started = _when_running(f"^{marker}", kill_client)
        runner = threading.Thread(target=deploy, daemon=True)
        runner.start()
        runner.join(timeout=60)
        assert started, "the remote phase never ran"
        assert not runner.is_alive() and outcome, "run() did not return after its ssh client died"
        assert _gone_within(f"^{marker}", 5), "the remote phase still runs after its ssh client died"
    finally:
        _kill_leftovers(marker)
        link.close()


def test_a_remote_phase_that_ends_keeps_its_exit_code_and_output(sshd: Path) -> None:
    link = Ssh("testhost", "root", ssh_config=str(sshd), echo=None)
    try:
        result = link.run(["bash", "-c", "read -r x || echo \"stdin is empty: $x\"; echo warn >&2; exit 5"],
                          timeout=60)
    finally:
        link.close()
    assert (result.rc, result.stdout, result.stderr) == (5, "stdin is empty: \n", "warn\n")
