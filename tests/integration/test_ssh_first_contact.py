"""First contact over a real sshd: each way ssh or sudo refuses is named, with what to do about it.

Each case is produced for real (an empty or wrong known_hosts, a closed port, a port that never
answers, a sudo that wants a password or a tty, no sudo at all) and shipping the bundle, the first
thing a deploy does on a host, must say what happened and the next step, not just "exit 255".
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from gldeploy.errors import DeployError
from gldeploy.transport import Local, Ssh
from tests.fixtures.k3s_standin.testing import free_port

pytestmark = pytest.mark.integration


def _ship(config: Path, tmp_path: Path, *, sudo: bool | None = None, connect_timeout: int = 15) -> str:
    """put_dir to `testhost`; the DeployError's message (the test fails if shipping worked)."""
    src = tmp_path / "bundle"
    src.mkdir(exist_ok=True)
    (src / "01.sh").write_text("true\n")
    link = Ssh("testhost", "root", ssh_config=str(config), echo=None, sudo=sudo,
               connect_timeout=connect_timeout)
    try:
        with pytest.raises(DeployError) as err:
            link.put_dir(src, str(tmp_path / "remote"))
    finally:
        link.close()
    assert not (tmp_path / "remote").exists()
    return str(err.value)


def _client_only(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "client_config"
    config.write_text(f"Host testhost\n  HostName 127.0.0.1\n  Port {port}\n  BatchMode yes\n"
                      f"  UserKnownHostsFile {tmp_path}/known_hosts\n  StrictHostKeyChecking yes\n")
    return config


def test_an_unknown_host_key_says_how_to_accept_it_safely(sshd_factory: Callable[..., Path],
                                                          tmp_path: Path) -> None:
    message = _ship(sshd_factory(known_hosts=""), tmp_path)
    assert "testhost: ssh failed (exit 255) while copying the bundle" in message
    assert "not known yet" in message and "ssh-keyscan" in message and "ssh-keygen -lf" in message
    assert "host key is known for" in message  # ssh's own words are kept, short


def test_a_changed_host_key_says_to_check_then_remove_the_old_one(sshd_factory: Callable[..., Path],
                                                                  tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    config = sshd_factory()
    port = config.read_text().split("Port ")[1].split()[0]
    (config.parent / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    message = _ship(config, tmp_path)
    assert "is not the one in known_hosts" in message and "ssh-keygen -R testhost" in message
    assert "not known yet" not in message


def test_a_closed_port_says_to_check_address_port_and_sshd(tmp_path: Path) -> None:
    message = _ship(_client_only(tmp_path, free_port()), tmp_path)
    assert "nothing accepts ssh connections" in message and "Connection refused" in message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP but never says a word (as a black-holing middlebox or a wrong service)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_silent_port_says_it_did_not_answer_in_time(silent_port: int, tmp_path: Path) -> None:
    message = _ship(_client_only(tmp_path, silent_port), tmp_path, connect_timeout=2)
    assert "did not answer on its ssh port within 2 s" in message and "firewall" in message


def _sudo_shim(tmp_path: Path, words: str, rc: int) -> Path:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sudo").write_text(f"#!/bin/sh\necho '{words}' >&2\nexit {rc}\n")
    (shim / "sudo").chmod(0o755)
    return shim


@pytest.mark.parametrize(("words", "advice"), [
    ("sudo: a password is required", "asks root for a password"),
    ("sudo: sorry, you must have a tty to run sudo", "`Defaults:root !requiretty`"),
])
def test_a_sudo_that_cannot_run_unattended_says_how_to_fix_it(sshd_factory: Callable[..., Path],
                                                              tmp_path: Path, words: str, advice: str) -> None:
    shim = _sudo_shim(tmp_path, words, 1)
    config = sshd_factory(server_extra=f"SetEnv PATH={shim}:/usr/local/bin:/usr/bin:/bin\n")
    message = _ship(config, tmp_path, sudo=True)
    assert "testhost: sudo refused (exit 1) while copying the bundle" in message
    assert advice in message and "NOPASSWD" in message and "SSH_USER=root" in message
    assert words in message


def test_a_missing_sudo_says_to_install_it_or_use_root(sshd_factory: Callable[..., Path],
                                                       tmp_path: Path) -> None:
    empty = tmp_path / "no-sudo-here"
    empty.mkdir()
    config = sshd_factory(server_extra=f"SetEnv PATH={empty}\n")  # wherever sudo is, not on this PATH
    message = _ship(config, tmp_path, sudo=True)
    assert "sudo is not installed on testhost" in message and "SSH_USER=root" in message


def test_a_failing_command_is_not_mistaken_for_sudo(sshd_factory: Callable[..., Path], tmp_path: Path) -> None:
    """Advice only for sudo's own refusal: a command that ran through sudo and exits 1 failed itself."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sudo").write_text('#!/bin/sh\n[ "$1 $2" = "-n --" ] || exit 99\nshift 2\nexec "$@"\n')
    (shim / "sudo").chmod(0o755)
    config = sshd_factory(server_extra=f"SetEnv PATH={shim}:/usr/local/bin:/usr/bin:/bin\n")
    link = Ssh("testhost", "root", ssh_config=str(config), echo=None, sudo=True)
    try:
        result = link.run(["sh", "-c", "echo 'sudo: a password is required' >&2; echo 'check failed' >&2; "
                                       "exit 1"])
    finally:
        link.close()
    assert result.rc == 1 and result.stderr.endswith("check failed\n")


def test_local_sudo_wanting_a_password_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shim = _sudo_shim(tmp_path, "sudo: a password is required", 1)
    monkeypatch.setenv("PATH", f"{shim}:/usr/bin:/bin")
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # as an operator's own account
    with pytest.raises(DeployError, match="local: sudo refused .* password-less sudo .* run gldeploy as root"):
        Local(echo=None).put_dir(tmp_path, str(tmp_path / "remote"))


def test_a_key_the_host_does_not_accept_says_to_check_user_and_key(sshd_factory: Callable[..., Path],
                                                                   tmp_path: Path) -> None:
    config = sshd_factory()
    (config.parent / "authorized_keys").write_text("")  # the host knows no key of ours
    message = _ship(config, tmp_path)
    assert "refused root's key" in message and "SSH_KEY" in message and "Permission denied" in message
