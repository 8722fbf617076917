"""`invoke site.deploy` and `invoke site.checklist`: the air-gapped site's services on the bastion
(sequences.BASTION), the site membership of every node, and the dependency checklist (checklist.sh)
run on the bastion and every node, each item pass/fail with its fix."""
from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke import Collection, Context
from rich.console import Console

from gldeploy import bundle, paths, results, sequences
from gldeploy.errors import EXIT_WARNINGS, ConfigError, DeployError, guarded
from gldeploy.settings import Settings
from gldeploy.site import stage
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, load_settings, resolve_env
from gldeploy.transport import for_host

TIMEOUT = 1800.0


def site_dir(settings: Settings) -> str:
    return (settings.work_dir.rstrip("/") or "/var/lib/gl-deploy") + "-site"


def stage_for(settings: Settings, dest: Path, role: sequences.SiteRole) -> None:
    """The site bundle of a bastion or node: tools, lib/, settings.env, secrets, scripts/bastion/, site/."""
    stage.check(settings, role)  # bad input before anything is written
    bundle.build_bundle(settings, dest, (), baked=False, staging=bundle.Staging(k3s_artifacts=False))
    for p in sequences.BASTION:
        shutil.copy2(paths.SCRIPTS_DIR / "bastion" / p.script, dest / p.script)
    stage.stage(settings, dest, role)


def _hosts(settings: Settings) -> list[tuple[str, sequences.SiteRole]]:
    if not settings.bastion_ip:
        raise ConfigError(f"{settings.origin('BASTION_IP')}: BASTION_IP is empty; the site services run on a "
                          f"bastion: set BASTION_IP=<its address>")
    return [(settings.bastion_ip, "bastion"), *((h, "node") for h in (*settings.control_plane_ips,
                                                                        *settings.worker_ips))]


def _report(outcome: list[results.PhaseResult], json_report: str, env: str, what: str) -> None:
    console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 120))
    results.print_table(outcome, console)
    if json_report:
        path = results.write_report(json_report, outcome, {"env_file": str(resolve_env(env)), "phases": [what]})
        console.print(f"JSON report: {path}", markup=False)
    code = results.exit_code(outcome)
    if code == EXIT_WARNINGS:
        raise DeployError(f"{what}: warnings only, see the table above", exit_code=code)
    if code != 0:
        raise DeployError(f"{what}: failed, see the table above (docs/airgap.md has each fix)", exit_code=code)
    console.print(f"{what}: done", markup=False)


def _run(settings: Settings, env: str, set_: Any, dry_run: bool, json_report: str, what: str,
         commands: dict[sequences.SiteRole, list[tuple[str, list[str]]]], hosts: str = "") -> None:
    planned = _hosts(settings)
    if hosts:
        wanted = set(hosts.split(","))
        planned = [(h, r) for h, r in planned if h in wanted]
    dest = site_dir(settings)
    if dry_run:
        for role in sequences.SITE_ROLES:
            stage.check(settings, role)
        for h, role in planned:
            for name, argv in commands[role]:
                args = [a.replace("{address}", h) for a in argv]
                print(f"{h} ({role}): {name}: $ {shlex.join(['bash', f'{dest}/{args[0]}', *args[1:]])}")
        return
    outcome: list[results.PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="gl-site-") as tmp:
        staged: dict[sequences.SiteRole, Path] = {}
        for role in sequences.SITE_ROLES:
            staged[role] = Path(tmp) / role
            stage_for(settings, staged[role], role)
        for h, role in planned:
            link = for_host(h, user=settings.ssh_user, ssh_config=settings.ssh_config, key=settings.ssh_key)
            try:
                link.put_dir(staged[role], dest)
                for name, argv in commands[role]:
                    started = time.monotonic()
                    args = [a.replace("{address}", h) for a in argv]
                    res = link.run(["bash", f"{dest}/{args[0]}", *args[1:]], {"GL_BUNDLE_DIR": dest}, TIMEOUT)
                    outcome.append(results.from_script(name, h, role, res.rc, res.stdout, res.stderr,
                                                       time.monotonic() - started))
                    if res.rc not in (0, EXIT_WARNINGS) and name != "checklist":
                        break
            except DeployError as exc:
                outcome.append(results.PhaseResult(what, h, role, "fail", None, 0.0, message=str(exc)))
            finally:
                link.close()
            if role == "bastion" and any(r.status == "fail" for r in outcome) and what == "site.deploy":
                break  # the nodes need the bastion's services
    _report(outcome, json_report, env, what)


HELP = {k: COMMON_HELP[k] for k in ("env", "set", "dry_run", "json_report")}


@gl_task(name="deploy", help={**HELP, "hosts": "Only these hosts (comma list) of BASTION_IP and the nodes"},
         iterable=["set_"])
@guarded
def deploy(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
           json_report: str = "") -> None:
    """Install the site services on the bastion from the bundle, then make every node a site member."""
    loaded = load_settings(env, set_ or [])
    commands: dict[sequences.SiteRole, list[tuple[str, list[str]]]] = {"bastion": [], "node": []}
    for p in sequences.BASTION:
        commands[p.on].append((p.name, [p.script, "--json"]))
    _run(loaded, env, set_, dry_run, json_report, "site.deploy", commands, hosts)


@gl_task(name="checklist", help={**HELP, "hosts": "Only these hosts (comma list) of BASTION_IP and the nodes"},
         iterable=["set_"])
@guarded
def checklist(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
              json_report: str = "") -> None:
    """The site's dependency checklist on the bastion and every node (read-only); each item with its fix."""
    loaded = load_settings(env, set_ or [])
    commands: dict[sequences.SiteRole, list[tuple[str, list[str]]]] = {
        "bastion": [("checklist", ["checklist.sh", "--json", "--role", "bastion"])],
        "node": [("checklist", ["checklist.sh", "--json", "--role", "node", "--address", "{address}"])]}
    _run(loaded, env, set_, dry_run, json_report, "site.checklist", commands, hosts)


ns = Collection("site")
ns.add_task(deploy)
ns.add_task(checklist)
