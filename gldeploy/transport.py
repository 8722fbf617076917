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

TIMED_OUT = 124  # exit code of a command killed by its timeout
CONNECT_TIMEOUT = 15  # seconds for the TCP/SSH handshake; commands themselves are bounded by the scripts
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


def _pump(stream: IO[str], sink: list[str], echo: Echo | None, prefix: str) -> None:
    for line in stream:
        sink.append(line)
        if echo is not None:
            echo(f"{prefix}{line.rstrip()}")
    stream.close()


def _execute(argv: Sequence[str], echo: Echo | None, prefix: str,
             stdin_writer: Callable[[IO[bytes]], None] | None = None, timeout: float | None = None) -> Result:
    """Run argv locally; stream stderr lines (prefixed) to echo while capturing both streams.

    With `timeout` (seconds) the command is killed when it runs longer and the result says so
    (exit 124, like timeout(1)): every wait of a deploy is bounded, a hung host included.
    """
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin_writer else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise DeployError(f"{argv[0]}: command not found on this machine") from None
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(io.TextIOWrapper(proc.stdout, errors="replace"), out, None, "")),
        threading.Thread(target=_pump, args=(io.TextIOWrapper(proc.stderr, errors="replace"), err, echo,
                                             prefix)),
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
        proc.kill()
        proc.wait()
        for reader in readers:
            reader.join()
        return Result(TIMED_OUT, "".join(out), "".join(err) + f"\ntimed out after {timeout:.0f} s: {argv[0]} "
                      f"killed (raise HEALTH_TIMEOUT/ROLLOUT_TIMEOUT if the host is just slow)\n")
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

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        return [*self._sudo(), *env_args(env), *argv]

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        return _execute(self.command(argv, env), self.echo, "[local] ", timeout=timeout)

    def put_dir(self, src: Path, dest: str) -> None:
        """Copy src's contents into dest (created 0700), keeping file modes."""
        if self._sudo():
            result = _execute([*self._sudo(), "sh", "-c", _EXTRACT, "sh", dest], self.echo, "[local] ",
                              _tar_stream(Path(src)))
            if result.rc != 0:
                raise DeployError(f"local: copying the bundle to {dest} failed: {result.stderr.strip()}")
            return
        target = Path(dest)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.chmod(0o700)
        shutil.copytree(src, target, dirs_exist_ok=True, copy_function=shutil.copy2)
        target.chmod(0o700)  # copytree copied the source directory's mode

    def close(self) -> None:
        """Nothing to release for the local transport."""


# remote extraction: private umask, dest 0700, modes from the archive
_EXTRACT = ('umask 077 && mkdir -p -- "$1" && chmod 700 -- "$1" && '
            'tar -x -p --no-same-owner -f - -C "$1"')


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
                 "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path or '<private>/%C'}",
                 "-o", "ControlPersist=60", "-l", self.user, self.host, "--", remote]
        return argv

    def _remote(self, argv: Sequence[str]) -> str:
        sudo = [] if self.user == "root" else ["sudo", "-n", "--"]
        return shlex.join([*sudo, *argv])

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        return self.ssh_argv(self._remote([*env_args(env), *argv]))

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        remote = self._remote([*env_args(env), *argv])
        result = _execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                          f"[{self.host}] ", timeout=timeout)
        if result.rc == 255:
            raise DeployError(f"{self.host}: ssh failed (exit 255): {result.stderr.strip()[-500:]}; check "
                              f"the host is reachable, SSH_USER/SSH_KEY/SSH_CONFIG, and its host key")
        return result

    def put_dir(self, src: Path, dest: str) -> None:
        """Stream src as tar into `sudo tar -x` at dest (created 0700), keeping modes."""
        remote = self._remote(["sh", "-c", _EXTRACT, "sh", dest])
        result = _execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                          f"[{self.host}] ", _tar_stream(Path(src)))
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
