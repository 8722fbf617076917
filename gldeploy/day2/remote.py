"""Run a day-2 tool script on hosts over the usual transport, one host at a time, and collect results."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from .. import bundle, results
from ..errors import DeployError
from ..sequences import Role
from ..settings import Settings
from ..transport import Transport, for_host

TIMEOUT = 900.0


def tool_dir(settings: Settings) -> str:
    """Where the tools go on a host: beside WORK_DIR, so the deployed bundle stays as it is."""
    return (settings.work_dir.rstrip("/") or "/var/lib/gl-deploy") + "-day2"


def argv(dest: str, tool: str, args: Sequence[str]) -> list[str]:
    """The command run on a host: always --json, the tool's own arguments after it."""
    return ["bash", f"{dest}/{tool}.sh", "--json", *args]


def link(settings: Settings, host: str) -> Transport:
    return for_host(host, user=settings.ssh_user, ssh_config=settings.ssh_config, key=settings.ssh_key)


def run_tool(settings: Settings, tool: str, hosts: Sequence[tuple[str, Role]],
             args_for: Callable[[str], Sequence[str]], *, stop_on_failure: bool = False,
             after: Callable[[Transport, str, results.PhaseResult], None] | None = None) -> list[results.PhaseResult]:
    """Ship the tools (bundle without k3s artifacts) to each host in order, run `tool`, report.

    stop_on_failure: the hosts after a failed one are not touched (rolling operations); they are
    reported "not run" with the reason, so a cluster left at mixed versions says why."""
    dest = tool_dir(settings)
    outcome: list[results.PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="gl-day2-") as tmp:
        staged = Path(tmp) / "bundle"
        bundle.build_bundle(settings, staged, (), baked=False, staging=bundle.Staging(k3s_artifacts=False))
        for host, role in hosts:
            started = time.monotonic()
            conn = link(settings, host)
            try:
                conn.put_dir(staged, dest)
                res = conn.run(argv(dest, tool, args_for(host)), {"GL_BUNDLE_DIR": dest}, timeout=TIMEOUT)
                result = results.from_script(tool, host, role, res.rc, res.stdout, res.stderr,
                                             time.monotonic() - started)
                if after is not None and result.status != "fail":
                    after(conn, host, result)
            except DeployError as exc:
                result = results.PhaseResult(tool, host, role, "fail", None, time.monotonic() - started,
                                             message=str(exc))
            finally:
                conn.close()
            outcome.append(result)
            if stop_on_failure and result.status == "fail":
                outcome += _not_run(tool, host, hosts[len(outcome):])
                break
    return outcome


def _not_run(tool: str, failed: str, rest: Sequence[tuple[str, Role]]) -> list[results.PhaseResult]:
    """The hosts a rolling operation did not reach, listed so mixed versions are never unexplained."""
    why = (f"not run: {tool} on {failed} failed, so this host was left as it was (its previous version); "
           f"fix {failed}, then run {tool} again (hosts already done say 'already at')")
    return [results.PhaseResult(tool, h, r, "not run", None, 0.0, message=why) for h, r in rest]
