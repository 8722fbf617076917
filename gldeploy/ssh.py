"""A host over OpenSSH: BatchMode, ControlMaster in a private dir, optional ssh_config/key.

The remote command is one ``shlex.join``-ed string. A phase runs under a watchdog on the host
(WATCHDOG): without a pty, sshd does not signal a command when the client goes away, so a Ctrl-C
here would leave the phase changing the host until its own bound. The watchdog runs the phase in
a process group of its own and stops that group when its stdin closes, which happens when this
side closes it, or when the ssh client or the connection dies.
"""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from . import firstcontact, proc
from .errors import DeployError
from .hostcmd import (
    PUT_TIMEOUT,
    Echo,
    Result,
    bounded,
    check_put,
    env_args,
    execute,
    extract_argv,
    local_bound,
    note_timeout,
    stderr_echo,
    tar_stream,
    validate_host,
)

CONNECT_TIMEOUT = 15  # seconds for the TCP/SSH handshake
ALIVE_INTERVAL, ALIVE_COUNT = 15, 4  # a silent dead connection is given up after about 60 s
WATCHDOG_GRACE = 10  # seconds the phase gets after SIGTERM (client gone) before SIGKILL
SSH_FAILED = 255  # ssh's own exit code (connection, authentication, host key)

# bash -c WATCHDOG gl-watchdog ARGV...: ARGV runs in a session (and process group) of its own with
# /dev/null as stdin; a watcher reads the real stdin (the ssh channel; nothing is ever sent on it)
# and, at its end, sends the group SIGTERM, then SIGKILL after WATCHDOG_GRACE s. The exit code is
# ARGV's. Values reach it as arguments ("$@"), never pasted into the script.
WATCHDOG = "; ".join((  # one line, so --dry-run shows one line per step
    "exec 3<&0 </dev/null",
    'setsid -- "$@" & p=$!',
    '{ while read -r _; do :; done; kill -TERM -- "-$p" 2>/dev/null || exit 0',
    f'for _ in $(seq {WATCHDOG_GRACE}); do sleep 1; kill -0 -- "-$p" 2>/dev/null || exit 0; done',
    'kill -KILL -- "-$p" 2>/dev/null; } <&3 >/dev/null 2>&1 & w=$!',
    "exec 3<&-",
    'wait "$p"; r=$?; kill "$w" 2>/dev/null; exit "$r"',
))
WATCHDOG_NAME = "gl-watchdog"  # $0 of the watchdog shell (shows in ps on the host)


def watched(argv: Sequence[str]) -> list[str]:
    """argv under the remote watchdog: its process group is stopped when the client goes away."""
    return ["bash", "-c", WATCHDOG, WATCHDOG_NAME, *argv]


class Ssh:
    """A host over OpenSSH: BatchMode, ControlMaster in a private dir, optional ssh_config/key.

    sudo: run commands through `sudo -n` (None: unless user is root).
    """

    name = "ssh"

    def __init__(self, host: str, user: str, ssh_config: str | None = None, key: str | None = None,
                 *, echo: Echo | None = stderr_echo, connect_timeout: int = CONNECT_TIMEOUT,
                 sudo: bool | None = None) -> None:
        self.host = validate_host(host)
        self.user = user
        self.ssh_config = ssh_config or None
        self.key = key or None
        self.echo = echo
        self.connect_timeout = connect_timeout
        self.sudo = user != "root" if sudo is None else sudo
        self._control_dir: str | None = None

    def describe(self) -> str:
        extra = f" (-F {self.ssh_config})" if self.ssh_config else ""
        return f"ssh {self.user}@{self.host}{extra}"

    def _control_path(self) -> str:
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="gl-ssh-", dir="/tmp")  # 0700 by mkdtemp
        return os.path.join(self._control_dir, "%C")

    def _options(self, control_path: str | None) -> list[str]:
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        return argv + ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                       "-o", f"ServerAliveInterval={ALIVE_INTERVAL}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
                       "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path or '<private>/%C'}",
                       "-o", "ControlPersist=60", "-l", self.user]

    def ssh_argv(self, remote: str, *, control_path: str | None = None) -> list[str]:
        """The local ssh argv that runs the remote command string `remote`."""
        return [*self._options(control_path), self.host, "--", remote]

    def _remote(self, argv: Sequence[str]) -> str:
        sudo = ["sudo", "-n", "--"] if self.sudo else []
        return shlex.join([*sudo, *argv])

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                timeout: float | None = None) -> list[str]:
        """The exact local argv `run` executes (for --dry-run)."""
        return self.ssh_argv(self._remote(watched([*env_args(env), *bounded(argv, timeout)])))

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        """Run argv on the host (under timeout(1) when `timeout` is given, always under the watchdog);
        stdin stays an open, empty pipe until it ends: closing it stops the remote process group."""
        remote = self._remote(watched([*env_args(env), *bounded(argv, timeout)]))
        result = execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                         f"[{self.host}] ", timeout=local_bound(timeout), hold_stdin=True)
        self._first_contact(result)
        if result.rc == SSH_FAILED:
            raise DeployError(f"{self.host}: ssh failed (exit 255): {firstcontact.last_words(result.stderr)}; "
                              f"check the host is reachable, SSH_USER/SSH_KEY/SSH_CONFIG, and its host key")
        return note_timeout(result, timeout, self.host)

    def put_dir(self, src: Path, dest: str) -> None:
        """Stream src as tar to the host and replace dest's contents by it (see hostcmd.EXTRACT)."""
        remote = self._remote(extract_argv(dest))
        result = execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                         f"[{self.host}] ", input=tar_stream(Path(src)), timeout=PUT_TIMEOUT)
        self._first_contact(result, f"copying the bundle to {dest}")
        check_put(result, self.host, dest)

    def _first_contact(self, result: Result, doing: str = "running a command") -> None:
        """Raise with advice when ssh or sudo (not the command) refused: host key, port, login, sudo."""
        advice = firstcontact.diagnose(result.rc, result.stderr, host=self.host, user=self.user,
                                       sudo=self.sudo, timeout=f"{self.connect_timeout} s")
        if advice is None:
            return
        via = "ssh failed" if result.rc == SSH_FAILED else "sudo refused"
        raise DeployError(f"{self.host}: {via} (exit {result.rc}) while {doing}: {advice} "
                          f"[{via.split()[0]} said: {firstcontact.last_words(result.stderr)}]")

    def close(self) -> None:
        """Stop the control master (if any) and remove the private socket directory."""
        if self._control_dir is None:
            return
        proc.run([*self._options(self._control_path()), "-O", "exit", self.host], timeout=30)
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None
