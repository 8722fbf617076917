"""Ssh transport against a real sshd on a free loopback port (throwaway host and client keys)."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures.k3s_standin.testing import free_port
from tests.fixtures.processes import running
from tests.fixtures.sshd import SSHD, keys, known_host_line, require_sshd, sshd_config

from gldeploy.errors import DeployError
from gldeploy.transport import Ssh

pytestmark = pytest.mark.integration

@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Path]:
    """Start sshd on 127.0.0.1:<free port>; yield an ssh_config whose Host `testhost` reaches it."""
    require_sshd()
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    keys(d)
    port = free_port()
    server_config = sshd_config(d, "loopback", port, listen="127.0.0.1")
    (d / "known_hosts").write_text(known_host_line(d, f"[127.0.0.1]:{port}"))
    config = d / "ssh_config"
    config.write_text(f"Host testhost\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {d}/client_key\n"
                      f"  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(server_config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"sshd did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
    try:
        yield config
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
