"""Run commands and ship directories on a host: this machine (Local) or over OpenSSH (Ssh).

Both transports share one interface: ``put_dir(src, dest)``, ``run(argv, env=None)`` and
``command(argv, env=None)`` (the exact local argv ``run`` would execute, for ``--dry-run``).
Commands are argv lists; a remote command is one ``shlex.join``-ed string. Environment values
travel as ``env K=V`` arguments, so they must never be secrets (secrets are files in the bundle).
"""
from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from .errors import ConfigError, DeployError

Echo = Callable[[str], None]

TIMED_OUT = 124  # exit code of a command killed by its timeout (as timeout(1) gives)
CONNECT_TIMEOUT = 15  # seconds for the TCP/SSH handshake
ALIVE_INTERVAL, ALIVE_COUNT = 15, 4  # a silent dead connection is given up after about 60 s
KILL_GRACE = 10  # seconds a timed-out command gets after SIGTERM before SIGKILL (timeout -k)
LOCAL_GRACE = 30  # extra seconds this side waits for the target's own timeout before killing locally
PUT_TIMEOUT = 3600  # seconds for shipping a bundle (k3s and its image tarballs: a few hundred MB)
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _stderr_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Result:
    """Outcome of one command: exit code and captured output."""

    rc: int
    stdout: str
    stderr: str


def env_args(env: Mapping[str, str] | None) -> list[str]:
    """`env K=V ...` prefix for an argv; refuses secret-looking names (secrets travel as files)."""
    if not env:
        return []
    out = ["env"]
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"environment name {name!r} is not a valid shell variable name")
        if _SECRET_NAME.search(name):
            raise ConfigError(f"refusing to pass {name} on a command line: secrets travel as 0600 files "
                              f"in the bundle, never as arguments")
        out.append(f"{name}={value}")
    return out


def validate_host(host: str) -> str:
    """Check a host name/address/ssh alias is safe to hand to ssh (no options, no spaces)."""
    if not host or host.startswith("-") or any(c.isspace() or c in "'\"`$;&|<>\\" for c in host):
        raise ConfigError(f"--hosts: {host!r} is not a host name, address or ssh alias; use e.g. "
                          f"--hosts 192.168.56.10,192.168.56.11 or --hosts local")
    return host


def bounded(argv: Sequence[str], timeout: float | None) -> list[str]:
    """argv under timeout(1) on the target: after `timeout` seconds the command and every process it
    started (its process group) get SIGTERM, then SIGKILL KILL_GRACE s later; exit 124."""
    if timeout is None:
        return list(argv)
    return ["timeout", "-k", str(KILL_GRACE), f"{timeout:g}", *argv]


def _local_bound(timeout: float | None) -> float | None:
    return None if timeout is None else timeout + KILL_GRACE + LOCAL_GRACE


def _note_timeout(result: Result, timeout: float | None, where: str) -> Result:
    if timeout is None or result.rc != TIMED_OUT:
        return result
    return Result(result.rc, result.stdout, result.stderr + f"\ntimed out after {timeout:g} s on {where}: the "
                  f"phase and its processes were stopped (raise HEALTH_TIMEOUT/ROLLOUT_TIMEOUT if the host "
                  f"is just slow)\n")


def _pump(stream: IO[str], sink: list[str], echo: Echo | None, prefix: str) -> None:
    for line in stream:
        sink.append(line)
        if echo is not None:
            echo(f"{prefix}{line.rstrip()}")
    stream.close()


def _execute(argv: Sequence[str], echo: Echo | None, prefix: str,
             stdin_writer: Callable[[IO[bytes]], None] | None = None, timeout: float | None = None) -> Result:
    """Run argv locally; stream stderr lines (prefixed) to echo while capturing both streams.

    With `timeout` (seconds) the command's whole process group is killed when it runs longer and the
    result says so (exit 124, like timeout(1)): every wait of a deploy is bounded, a hung host included.
    """
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin_writer else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise DeployError(f"{argv[0]}: command not found on this machine") from None
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(io.TextIOWrapper(proc.stdout, errors="replace"), out, None, ""),
                         daemon=True),
        threading.Thread(target=_pump, args=(io.TextIOWrapper(proc.stderr, errors="replace"), err, echo,
                                             prefix), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if stdin_writer is not None:
        assert proc.stdin is not None
        try:
            stdin_writer(proc.stdin)
        except BrokenPipeError:
            pass  # the remote side died; its exit code and stderr tell why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and everything it started
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()
        for reader in readers:
            reader.join(timeout=5)  # a process that escaped the group may hold the pipes: do not hang
        return Result(TIMED_OUT, "".join(out), "".join(err) + f"\ntimed out after {timeout:g} s: {argv[0]} "
                      f"and its processes killed (raise HEALTH_TIMEOUT/ROLLOUT_TIMEOUT if the host is just "
                      f"slow)\n")
    for reader in readers:
        reader.join()
    return Result(rc, "".join(out), "".join(err))


def _tar_stream(src: Path) -> Callable[[IO[bytes]], None]:
    """A writer streaming src's contents as a tar (modes kept, owner root, sorted, no mtimes drift)."""
    def write(pipe: IO[bytes]) -> None:
        def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info
        with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(src.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(src)), recursive=False, filter=owner)
    return write


class Local:
    """This machine: commands run directly (with sudo when not root)."""

    name = "local"

    def __init__(self, echo: Echo | None = _stderr_echo) -> None:
        self.echo = echo
        self.host = "local"

    def describe(self) -> str:
        return "local (this machine)"

    def _sudo(self) -> list[str]:
        return [] if os.geteuid() == 0 else ["sudo", "-n", "--"]

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                timeout: float | None = None) -> list[str]:
        return [*self._sudo(), *env_args(env), *bounded(argv, timeout)]

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        result = _execute(self.command(argv, env, timeout), self.echo, "[local] ",
                          timeout=_local_bound(timeout))
        return _note_timeout(result, timeout, "this machine")

    def put_dir(self, src: Path, dest: str) -> None:
        """Replace dest (0700) by src's contents, keeping file modes: nothing stale stays behind."""
        if self._sudo():
            result = _execute([*self._sudo(), "sh", "-c", _EXTRACT, "sh", dest], self.echo, "[local] ",
                              _tar_stream(Path(src)), timeout=PUT_TIMEOUT)
            if result.rc != 0:
                raise DeployError(f"local: copying the bundle to {dest} failed: {result.stderr.strip()}")
            return
        target = Path(dest)
        new, old = target.with_name(target.name + ".gl-new"), target.with_name(target.name + ".gl-old")
        for stale in (new, old):
            shutil.rmtree(stale, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, new, copy_function=shutil.copy2)
        new.chmod(0o700)  # copytree copied the source directory's mode
        if target.exists():
            target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        """Nothing to release for the local transport."""


# remote extraction into "$1.gl-new" (private umask, 0700, modes from the archive), then swapped in
# for "$1": the host's bundle is exactly what was shipped, no file of an earlier bundle stays behind
_EXTRACT = ('umask 077 && rm -rf -- "$1.gl-new" "$1.gl-old" && mkdir -p -- "$1.gl-new" && '
            'tar -x -p --no-same-owner -f - -C "$1.gl-new" && chmod 700 -- "$1.gl-new" && '
            '{ [ ! -e "$1" ] || mv -- "$1" "$1.gl-old"; } && mv -- "$1.gl-new" "$1" && rm -rf -- "$1.gl-old"')


class Ssh:
    """A host over OpenSSH: BatchMode, ControlMaster in a private dir, optional ssh_config/key."""

    name = "ssh"

    def __init__(self, host: str, user: str, ssh_config: str | None = None, key: str | None = None,
                 *, echo: Echo | None = _stderr_echo) -> None:
        self.host = validate_host(host)
        self.user = user
        self.ssh_config = ssh_config or None
        self.key = key or None
        self.echo = echo
        self._control_dir: str | None = None

    def describe(self) -> str:
        extra = f" (-F {self.ssh_config})" if self.ssh_config else ""
        return f"ssh {self.user}@{self.host}{extra}"

    def _control_path(self) -> str:
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="gl-ssh-", dir="/tmp")  # 0700 by mkdtemp
        return os.path.join(self._control_dir, "%C")

    def ssh_argv(self, remote: str, *, control_path: str | None = None) -> list[str]:
        """The local ssh argv that runs the remote command string `remote`."""
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                 "-o", f"ServerAliveInterval={ALIVE_INTERVAL}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
                 "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path or '<private>/%C'}",
                 "-o", "ControlPersist=60", "-l", self.user, self.host, "--", remote]
        return argv

    def _remote(self, argv: Sequence[str]) -> str:
        sudo = [] if self.user == "root" else ["sudo", "-n", "--"]
        return shlex.join([*sudo, *argv])

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                timeout: float | None = None) -> list[str]:
        return self.ssh_argv(self._remote([*env_args(env), *bounded(argv, timeout)]))

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        remote = self._remote([*env_args(env), *bounded(argv, timeout)])
        result = _execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                          f"[{self.host}] ", timeout=_local_bound(timeout))
        if result.rc == 255:
            raise DeployError(f"{self.host}: ssh failed (exit 255): {result.stderr.strip()[-500:]}; check "
                              f"the host is reachable, SSH_USER/SSH_KEY/SSH_CONFIG, and its host key")
        return _note_timeout(result, timeout, self.host)

    def put_dir(self, src: Path, dest: str) -> None:
        """Stream src as tar into `sudo tar -x`, replacing dest (0700): nothing stale stays behind."""
        remote = self._remote(["sh", "-c", _EXTRACT, "sh", dest])
        result = _execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                          f"[{self.host}] ", _tar_stream(Path(src)), timeout=PUT_TIMEOUT)
        if result.rc != 0:
            raise DeployError(f"{self.host}: copying the bundle to {dest} failed (exit {result.rc}): "
                              f"{result.stderr.strip()[-500:]}")

    def close(self) -> None:
        """Stop the control master (if any) and remove the private socket directory."""
        if self._control_dir is None:
            return
        subprocess.run(self.ssh_argv("true", control_path=self._control_path())[:-3] + ["-O", "exit",
                       self.host], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None


Transport = Local | Ssh


def for_host(host: str, *, user: str, ssh_config: str = "", key: str = "",
             echo: Echo | None = _stderr_echo) -> Transport:
    """`local` means this machine; anything else is an ssh host, address or ssh_config alias."""
    if host == "local":
        return Local(echo=echo)
    return Ssh(host, user, ssh_config or None, key or None, echo=echo)
