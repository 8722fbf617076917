"""Day-2 tasks: `backup.create`, `backup.restore`, `certs.check`, `certs.rotate`, `upgrade`, `rollback`.

Each ships the tool scripts (sequences.TOOLS) to the hosts beside WORK_DIR and runs one of them there;
see gldeploy.day2 and docs/day2.md."""
from __future__ import annotations

import shlex
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from invoke import Collection, Context
from rich.console import Console

from gldeploy import plan, results
from gldeploy.day2 import fetch, remote
from gldeploy.errors import EXIT_WARNINGS, ConfigError, DeployError, guarded
from gldeploy.secretfile import read_private
from gldeploy.sequences import SERVER_ROLES, Role
from gldeploy.settings import Settings
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, load_settings
from gldeploy.transport import Transport

_HELP = {"env": COMMON_HELP["env"], "set": COMMON_HELP["set"], "dry_run": COMMON_HELP["dry_run"],
         "hosts": "Comma list of hosts or ssh aliases, or 'local' (default: from the settings)",
         "role": COMMON_HELP["role"]}
ORDER: tuple[Role, ...] = ("single", "first-server", "server", "agent")  # rolling order: servers, then agents


def targets(loaded: Settings, hosts: str, role: str, roles: Sequence[Role]) -> list[tuple[str, Role]]:
    """(host, role) pairs in rolling order: the given hosts, or the settings' hosts of these roles."""
    if hosts:
        chosen = [plan.parse_hosts(hosts)]
        pairs = [(h, plan.role_of(loaded, h) if not role else _role(role)) for h in chosen[0]]
    else:
        everyone = [*loaded.control_plane_ips, *loaded.worker_ips]
        pairs = [(h, r) for r in ORDER if r in roles for h in everyone if plan.role_of(loaded, h) == r]
        if not pairs:
            raise ConfigError(f"no host in CONTROL_PLANE_IPS/WORKER_IPS has the role {' or '.join(roles)}; "
                              f"list them there or name them with --hosts")
    return sorted(pairs, key=lambda p: ORDER.index(p[1]))


def _role(value: str) -> Role:
    for r in ORDER:
        if r == value:
            return r
    raise ConfigError(f"--role {value!r}: expected one of {', '.join(ORDER)}")


def _report(outcome: list[results.PhaseResult], what: str) -> None:
    console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 120))
    results.print_table(outcome, console)
    code = results.exit_code(outcome)
    if code not in (0, EXIT_WARNINGS):
        raise DeployError(f"{what} failed: see the table above", exit_code=code)
    if code == EXIT_WARNINGS:
        raise DeployError(f"{what}: done, with warnings (see the table above)", exit_code=code)
    console.print(f"{what}: done", markup=False)


def _dry(loaded: Settings, tool: str, pairs: Sequence[tuple[str, Role]], args: Sequence[str]) -> None:
    dest = remote.tool_dir(loaded)
    for host, role in pairs:
        print(f"{host} ({role}): copy the tools -> {dest}; $ {shlex.join(remote.argv(dest, tool, args))}")


@gl_task(help={**_HELP, "out": "Local directory the backups are copied into (checked against their sums)",
               "keep": "Also keep only the newest N backups of each host on the host"}, iterable=["set_"])
@guarded
def create(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
           out: str = "backups", keep: int = 0, dry_run: bool = False) -> None:
    """Back up the servers (datastore, token, config, CA), copy each backup here and verify its sums."""
    loaded = load_settings(env, set_ or [])
    pairs = [p for p in targets(loaded, hosts, role, ("single", "first-server")) if p[1] in SERVER_ROLES]
    name = f"gl-backup-{{host}}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    on_host = f"{remote.tool_dir(loaded)}-backups"

    def args(host: str) -> list[str]:
        keeping = ["--keep", str(keep)] if keep else []
        return ["--out", on_host, "--name", name.format(host=host.replace("/", "_")), *keeping]

    if dry_run:
        _dry(loaded, "backup", pairs, args("HOST"))
        return

    def copy_off(conn: Transport, host: str, result: results.PhaseResult) -> None:
        local = Path(out) / name.format(host=host.replace("/", "_"))
        manifest = fetch.fetch(conn, f"{on_host}/{local.name}", local)
        result.message = f"copied to {local} and verified ({len(manifest.get('files', []))} files, sha256)"  # type: ignore[arg-type]

    _report(remote.run_tool(loaded, "backup", pairs, args, after=copy_off), "backup")


@gl_task(help={**_HELP, "from_": "Backup directory (local; checked, then shipped to the host)",
               "token_file": "The old cluster's token (0600), when the backup carries none"}, iterable=["set_"])
@guarded
def restore(c: Context, from_: str, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
            token_file: str = "", dry_run: bool = False) -> None:
    """Restore a backup onto the first server (same node or a new machine installed with its new settings)."""
    loaded = load_settings(env, set_ or [])
    manifest = fetch.verify(Path(from_))  # refuse a damaged copy before any host is touched
    pairs = targets(loaded, hosts, role, ("single", "first-server"))[:1]
    on_host = f"{remote.tool_dir(loaded)}-restore"
    args = ["--from", f"{on_host}/backup"] + (["--token-file", f"{on_host}/token"] if token_file else [])
    if dry_run:
        _dry(loaded, "restore", pairs, args)
        return
    with tempfile.TemporaryDirectory(prefix="gl-restore-") as tmp:
        staged = Path(tmp)
        shutil.copytree(from_, staged / "backup")
        if token_file:  # read as a private file (0600, not empty), shipped 0600 beside the backup
            (staged / "token").write_bytes(read_private(token_file, what=f"--token-file {token_file}", where="restore"))
            (staged / "token").chmod(0o600)
        for host, _ in pairs:
            conn = remote.link(loaded, host)
            try:
                conn.put_dir(staged, on_host)
            finally:
                conn.close()
    print(f"restoring the {manifest.get('kind')} backup of {manifest.get('host')} ({manifest.get('created')})")
    _report(remote.run_tool(loaded, "restore", pairs, lambda _h: args), "restore")


@gl_task(help={**_HELP, "threshold": "Warn when fewer days remain (default 120: k3s' renewal window)"},
         iterable=["set_"])
@guarded
def check(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
          threshold: int = -1, dry_run: bool = False) -> None:
    """Certificate expiry report of every node (k3s' certificates, the internal CA); read-only."""
    loaded = load_settings(env, set_ or [])
    pairs = targets(loaded, hosts, role, ORDER)
    args = ["--threshold", str(threshold)] if threshold >= 0 else []
    if dry_run:
        _dry(loaded, "certs", pairs, args)
        return
    _report(remote.run_tool(loaded, "certs", pairs, lambda _h: args), "certs.check")


@gl_task(help=_HELP, iterable=["set_"])
@guarded
def rotate(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
           dry_run: bool = False) -> None:
    """Rotate the leaf certificates by k3s' procedure, one node at a time (servers, then agents)."""
    loaded = load_settings(env, set_ or [])
    pairs = targets(loaded, hosts, role, ORDER)
    if dry_run:
        _dry(loaded, "certs", pairs, ["--rotate"])
        return
    _report(remote.run_tool(loaded, "certs", pairs, lambda _h: ["--rotate"], stop_on_failure=True), "certs.rotate")


@gl_task(name="upgrade", help={**_HELP, "to": "The k3s release to upgrade to, e.g. v1.29.4+k3s1",
                               "artifacts": "Directory on the hosts holding that release (else downloaded)",
                               "allow_downgrade": "Allow --to older than the installed release"},
         iterable=["set_"])
@guarded
def upgrade_task(c: Context, to: str, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
                 artifacts: str = "", allow_downgrade: bool = False, dry_run: bool = False) -> None:
    """Rolling upgrade, a server at a time then the agents; backup before, rollback on failure."""
    loaded = load_settings(env, set_ or [])
    pairs = targets(loaded, hosts, role, ORDER)
    args = ["--to", to, *(["--artifacts", artifacts] if artifacts else []),
            *(["--allow-downgrade"] if allow_downgrade else [])]
    if dry_run:
        _dry(loaded, "upgrade", pairs, args)
        return
    _report(remote.run_tool(loaded, "upgrade", pairs, lambda _h: args, stop_on_failure=True), "upgrade")


@gl_task(name="rollback", help=_HELP, iterable=["set_"])
@guarded
def rollback_task(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
                  dry_run: bool = False) -> None:
    """Roll the last upgrade back (previous binary, config and datastore): agents first, then servers."""
    loaded = load_settings(env, set_ or [])
    pairs = list(reversed(targets(loaded, hosts, role, ORDER)))
    if dry_run:
        _dry(loaded, "upgrade", pairs, ["--rollback"])
        return
    _report(remote.run_tool(loaded, "upgrade", pairs, lambda _h: ["--rollback"]), "rollback")


backup_ns = Collection("backup")
backup_ns.add_task(create)
backup_ns.add_task(restore)
certs_ns = Collection("certs")
certs_ns.add_task(check)
certs_ns.add_task(rotate)
TASKS = (upgrade_task, rollback_task)
