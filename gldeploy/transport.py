"""Run commands and ship directories on a host: this machine (Local) or over OpenSSH (Ssh).

Both transports share one interface: ``put_dir(src, dest)``, ``run(argv, env=None, timeout=None)``
and ``command(argv, env=None, timeout=None)`` (the exact local argv ``run`` would execute, for
``--dry-run``). Commands are argv lists; environment values travel as ``env K=V`` arguments, so they
must never be secrets (secrets are files in the bundle). The pieces: gldeploy.proc runs local
processes, gldeploy.hostcmd builds host commands and ships the bundle, gldeploy.ssh is the OpenSSH
transport and gldeploy.firstcontact explains why ssh or sudo refused.
"""
from __future__ import annotations

import getpass
import os
import subprocess  # noqa: F401  (tests/unit/test_tasks.py patches gldeploy.transport.subprocess)
from pathlib import Path
from typing import Mapping, Sequence

from . import firstcontact
from .errors import DeployError
from .hostcmd import (
    PUT_TIMEOUT,
    TIMED_OUT,
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
from .ssh import Ssh

__all__ = ["TIMED_OUT", "Local", "Result", "Ssh", "Transport", "bounded", "env_args", "for_host",
           "validate_host"]


class Local:
    """This machine: commands run directly (with sudo when not root)."""

    name = "local"

    def __init__(self, echo: Echo | None = stderr_echo) -> None:
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
        result = execute(self.command(argv, env, timeout), self.echo, "[local] ", timeout=local_bound(timeout))
        self._check_sudo(result, "running a command")
        return note_timeout(result, timeout, "this machine")

    def put_dir(self, src: Path, dest: str) -> None:
        """Replace dest's contents by src's (see hostcmd.EXTRACT), keeping file modes."""
        result = execute([*self._sudo(), *extract_argv(dest)], self.echo, "[local] ",
                         input=tar_stream(Path(src)), timeout=PUT_TIMEOUT)
        self._check_sudo(result, f"copying the bundle to {dest}")
        check_put(result, "local", dest)

    def _check_sudo(self, result: Result, doing: str) -> None:
        advice = firstcontact.diagnose(result.rc, result.stderr, host="this machine", user=getpass.getuser(),
                                       sudo=bool(self._sudo()),
                                       instead="run gldeploy as root")
        if advice is not None:
            raise DeployError(f"local: sudo refused (exit {result.rc}) while {doing}: {advice} "
                              f"[sudo said: {firstcontact.last_words(result.stderr)}]")

    def close(self) -> None:
        """Nothing to release for the local transport."""


Transport = Local | Ssh


def for_host(host: str, *, user: str, ssh_config: str = "", key: str = "",
             echo: Echo | None = stderr_echo) -> Transport:
    """`local` means this machine; anything else is an ssh host, address or ssh_config alias."""
    if host == "local":
        return Local(echo=echo)
    return Ssh(host, user, ssh_config or None, key or None, echo=echo)
