"""What both transports share: the argv a host runs (env, bound), running it, shipping the bundle.

A command for a host is an argv list: ``env K=V`` arguments (never secrets: those are 0600 files in
the bundle), then timeout(1) bounding it on the host, then the command. ``execute`` runs the local
side of it through gldeploy.proc with a backstop a little beyond the host's own bound.
"""
from __future__ import annotations

import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from . import proc
from .errors import ConfigError, DeployError

Echo = Callable[[str], None]

TIMED_OUT = proc.TIMED_OUT  # exit code of a command killed by its timeout (as timeout(1) gives)
KILL_GRACE = 10  # seconds a timed-out command gets after SIGTERM before SIGKILL (timeout -k)
LOCAL_GRACE = 30  # extra seconds this side waits for the target's own timeout before killing locally
PUT_TIMEOUT = 3600  # seconds for shipping a bundle (k3s and its image tarballs: a few hundred MB)
BUNDLE_MARKER = ".gl-bundle"  # written into WORK_DIR by EXTRACT; only a marked WORK_DIR is replaced
REFUSED = 3  # exit code of EXTRACT when WORK_DIR holds files gldeploy did not put there
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def stderr_echo(line: str) -> None:
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


def local_bound(timeout: float | None) -> float | None:
    """This side's backstop for a command the host bounds with `timeout`."""
    return None if timeout is None else timeout + KILL_GRACE + LOCAL_GRACE


def note_timeout(result: Result, timeout: float | None, where: str) -> Result:
    """Say so when timeout(1) on the host stopped the phase: exit 124 (TERM was enough), or when it
    needed the KILL that followed (timeout kills itself with the group: 137 through a shell, -9
    when this side is its parent)."""
    if timeout is None or result.killed_locally or result.rc not in (TIMED_OUT, 128 + 9, -9):
        return result
    return Result(result.rc, result.stdout, result.stderr + f"\ntimed out after {timeout:g} s on {where}: the "
                  f"phase and its processes were stopped (raise HEALTH_TIMEOUT/ROLLOUT_TIMEOUT if the host "
                  f"is just slow)\n")


def execute(argv: Sequence[str], echo: Echo | None, prefix: str, *, timeout: float | None,
            input: proc.Writer | None = None, hold_stdin: bool = False) -> Result:
    """Run argv locally (gldeploy.proc): stderr lines go to echo with `prefix` as they come; at
    `timeout` the local process group is killed and the result says the host did not answer."""
    on_line = None if echo is None else (lambda line: echo(f"{prefix}{line}"))
    done = proc.run(argv, timeout=timeout, input=input, hold_stdin=hold_stdin, on_stderr=on_line)
    if done.timed_out:
        return Result(TIMED_OUT, done.stdout, done.stderr + f"\nno answer after {timeout:g} s: {argv[0]} "
                      f"and its local processes were killed (is the host or the connection hung?)\n",
                      killed_locally=True)
    return Result(done.rc, done.stdout, done.stderr)


def tar_stream(src: Path) -> proc.Writer:
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


# Extraction on the host: the tar is unpacked beside WORK_DIR ("$1.gl-new", private umask, modes from
# the archive), then WORK_DIR's contents are replaced by it. WORK_DIR itself stays (it may be a mount
# point or a symlink); it is only emptied when it is empty or holds the marker an earlier shipment
# wrote, so a WORK_DIR such as /opt is refused (exit 3) instead of wiped. The marker is written before
# anything is removed: a shipment cut short leaves it, and the next one completes the replacement.
EXTRACT = r"""set -eu
umask 077
d=$1 new=$1.gl-new m=@MARKER@
rm -rf -- "$new"
mkdir -p -- "$new" "$d"
tar -x -p --no-same-owner -f - -C "$new"
if [ -n "$(ls -A -- "$d")" ] && [ ! -e "$d/$m" ]; then
  rm -rf -- "$new"
  echo "refusing to replace $d: it holds files gldeploy did not put there (no $m);" \
    "set WORK_DIR to an empty or dedicated directory" >&2
  exit 3
fi
chmod 700 -- "$d"
echo "written by gldeploy: replaced whole on every deploy; keep nothing else here" > "$d/$m"
find -H "$d" -mindepth 1 -maxdepth 1 ! -name "$m" -exec rm -rf -- {} +
find "$new" -mindepth 1 -maxdepth 1 ! -name "$m" -exec mv -f -- {} "$d/" \;
rm -rf -- "$new"
""".replace("@MARKER@", BUNDLE_MARKER)


def extract_argv(dest: str) -> list[str]:
    """The argv that unpacks a tar on stdin into dest (see EXTRACT)."""
    return ["sh", "-c", EXTRACT, "sh", dest]


def check_put(result: Result, host: str, dest: str) -> None:
    if result.rc == REFUSED:
        raise DeployError(f"{host}: {result.stderr.strip().splitlines()[-1]}", exit_code=2)
    if result.rc != 0:
        raise DeployError(f"{host}: copying the bundle to {dest} failed (exit {result.rc}): "
                          f"{result.stderr.strip()[-500:]}")
