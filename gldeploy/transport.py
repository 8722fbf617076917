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
INTERRUPT_GRACE = 10  # seconds a command gets to stop after Ctrl-C before it is killed
BUNDLE_MARKER = ".gl-bundle"  # written into WORK_DIR by _EXTRACT; only a marked WORK_DIR is replaced
REFUSED = 3  # exit code of _EXTRACT when WORK_DIR holds files gldeploy did not put there
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
    killed_locally: bool = False  # this side's backstop fired (the host never ended the command)


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
    """Say so when timeout(1) on the host stopped the phase: exit 124 (TERM was enough), or when it
    needed the KILL that followed (timeout kills itself with the group: 137 through a shell, -9
    when this side is its parent)."""
    if timeout is None or result.killed_locally or result.rc not in (TIMED_OUT, 128 + 9, -9):
        return result
    return Result(result.rc, result.stdout, result.stderr + f"\ntimed out after {timeout:g} s on {where}: the "
                  f"phase and its processes were stopped (raise HEALTH_TIMEOUT/ROLLOUT_TIMEOUT if the host "
                  f"is just slow)\n")


def _stop_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the command's whole process group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)
    if sig == signal.SIGKILL:
        proc.wait()


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
    readers: list[threading.Thread] = []
    try:  # from here on a Ctrl-C stops the command too
        assert proc.stdout is not None and proc.stderr is not None
        readers += [
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
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc, signal.SIGKILL)
        for reader in readers:
            reader.join(timeout=5)  # a process that escaped the group may hold the pipes: do not hang
        return Result(TIMED_OUT, "".join(out), "".join(err) + f"\nno answer after {timeout:g} s: {argv[0]} "
                      f"and its local processes were killed (is the host or the connection hung?)\n",
                      killed_locally=True)
    except BaseException:
        # Ctrl-C at any point after the start: the command runs in its own session, so the terminal's
        # SIGINT did not reach it; pass it on, then kill what has not stopped
        _stop_group(proc, signal.SIGINT)
        try:
            proc.wait(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            _stop_group(proc, signal.SIGKILL)
        raise
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
        """Replace dest's contents by src's (see _EXTRACT), keeping file modes."""
        result = _execute([*self._sudo(), "sh", "-c", _EXTRACT, "sh", dest], self.echo, "[local] ",
                          _tar_stream(Path(src)), timeout=PUT_TIMEOUT)
        _check_put(result, "local", dest)

    def close(self) -> None:
        """Nothing to release for the local transport."""


# Extraction on the host: the tar is unpacked beside WORK_DIR ("$1.gl-new", private umask, modes from
# the archive), then WORK_DIR's contents are replaced by it. WORK_DIR itself stays (it may be a mount
# point or a symlink); it is only emptied when it is empty or holds the marker an earlier shipment
# wrote, so a WORK_DIR such as /opt is refused (exit 3) instead of wiped. The marker is written before
# anything is removed: a shipment cut short leaves it, and the next one completes the replacement.
_EXTRACT = r"""set -eu
umask 077
d=$1 new=$1.gl-new m=@MARKER@
rm -rf -- "$new"
mkdir -p -- "$new" "$d"
tar -x -p --no-same-owner -f - -C "$new"
if [ -n "$(ls -A -- "$d")" ] && [ ! -e "$d/$m" ]; then
  rm -rf -- "$new"
  echo "refusing to replace $d: it holds files gldeploy did not put there (no $m); set WORK_DIR to an empty or dedicated directory" >&2
  exit 3
fi
chmod 700 -- "$d"
echo "written by gldeploy: replaced whole on every deploy; keep nothing else here" > "$d/$m"
find -H "$d" -mindepth 1 -maxdepth 1 ! -name "$m" -exec rm -rf -- {} +
find "$new" -mindepth 1 -maxdepth 1 ! -name "$m" -exec mv -f -- {} "$d/" \;
rm -rf -- "$new"
""".replace("@MARKER@", BUNDLE_MARKER)


def _check_put(result: Result, host: str, dest: str) -> None:
    if result.rc == REFUSED:
        raise DeployError(f"{host}: {result.stderr.strip().splitlines()[-1]}", exit_code=2)
    if result.rc != 0:
        raise DeployError(f"{host}: copying the bundle to {dest} failed (exit {result.rc}): "
                          f"{result.stderr.strip()[-500:]}")


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
        """Stream src as tar to the host and replace dest's contents by it (see _EXTRACT)."""
        remote = self._remote(["sh", "-c", _EXTRACT, "sh", dest])
        result = _execute(self.ssh_argv(remote, control_path=self._control_path()), self.echo,
                          f"[{self.host}] ", _tar_stream(Path(src)), timeout=PUT_TIMEOUT)
        _check_put(result, self.host, dest)

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
