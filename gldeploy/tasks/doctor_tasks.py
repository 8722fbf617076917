"""`invoke doctor`: ship doctor.sh (with lib/ and settings.env) to each host over the usual transport,
run it there read-only, and report per host; servers whose cluster-wide k3s settings differ are named.

doctor is not a numbered phase: it goes to its own directory beside WORK_DIR (``<WORK_DIR>-doctor``),
so the deployed bundle in WORK_DIR is left as it is.
"""
from __future__ import annotations

import re
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke import Context
from rich.console import Console

from gldeploy import bundle, doctor, plan, results
from gldeploy.errors import EXIT_WARNINGS, ConfigError, DeployError, guarded
from gldeploy.sequences import ROLES, SERVER_ROLES, Role
from gldeploy.settings import Settings
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, load_settings, resolve_env
from gldeploy.transport import for_host

_SUM = re.compile(r"cluster-wide keys sha256 ([0-9a-f]{12})")


def doctor_dir(settings: Settings) -> str:
    return (settings.work_dir.rstrip("/") or "/var/lib/gl-deploy") + "-doctor"


def _roles(settings: Settings, hosts: list[str], role: str) -> dict[str, Role]:
    if role:
        chosen = next((r for r in ROLES if r == role), None)
        if chosen is None:
            raise ConfigError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
        return {h: chosen for h in hosts}
    return {h: plan.role_of(settings, h) for h in hosts}


def drift_between(outcome: list[results.PhaseResult]) -> results.PhaseResult | None:
    """A finding when servers report different cluster-wide k3s keys (config-drift's sha256)."""
    sums: dict[str, str] = {}
    for res in outcome:
        if res.role not in SERVER_ROLES:
            continue
        for check in res.checks:
            found = _SUM.search(str(check.get("message", ""))) if check.get("name") == "config-drift" else None
            if found:
                sums[res.host] = found.group(1)
    if len(set(sums.values())) <= 1:
        return None
    detail = ", ".join(f"{h}: {s}" for h, s in sorted(sums.items()))
    check = {"name": "config-drift-between-servers", "status": "fail",
             "message": f"servers disagree on cluster-wide k3s keys ({detail})",
             "fix": "compare them: doctor.sh --compare <other server's /etc/rancher/k3s/config.yaml>; "
                    "run the install phase again on the drifted server"}
    return results.PhaseResult("doctor", "cluster", "-", "fail", 1, 0.0, checks=[check], message=check["message"])


@gl_task(name="doctor", help={**{k: v for k, v in COMMON_HELP.items() if k not in ("sample_image",)},
               "hosts": "Comma list of hosts or ssh aliases, or 'local' (default: CONTROL_PLANE_IPS and WORKER_IPS)",
               "bundle": "Also write a support archive on each host into this directory (path on the host)",
               "since": "Hours of logs in the support archive (default 6)"},
         iterable=["set_"])
@guarded
def doctor_task(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", role: str = "",
                dry_run: bool = False, json_report: str = "", bundle_: str = "", since: int = 0) -> None:
    """Diagnose the hosts read-only: each finding with symptom, cause and fix; exit code = worst finding."""
    loaded = load_settings(env, set_ or [])
    targets = plan.parse_hosts(hosts) if hosts else [*loaded.control_plane_ips, *loaded.worker_ips]
    roles = _roles(loaded, targets, role)
    dest = doctor_dir(loaded)
    links = {h: for_host(h, user=loaded.ssh_user, ssh_config=loaded.ssh_config, key=loaded.ssh_key) for h in targets}
    console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 120))
    timeout = 120.0
    try:
        if dry_run:
            bundle.check_inputs(loaded)
            for h in targets:
                argv = links[h].command(doctor.argv(dest, roles[h], bundle_out=bundle_, since=since),
                                        {"GL_BUNDLE_DIR": dest}, timeout)
                console.print(f"{h}: copy doctor.sh, lib/, settings.env -> {dest}; $ {shlex.join(argv)}", markup=False)
            return
        outcome: list[results.PhaseResult] = []
        with tempfile.TemporaryDirectory(prefix="gl-doctor-") as tmp:
            staged = Path(tmp) / "bundle"
            bundle.build_bundle(loaded, staged, (), baked=False, staging=bundle.Staging(k3s_artifacts=False))
            for h in targets:
                started = time.monotonic()
                try:
                    links[h].put_dir(staged, dest)
                    res = links[h].run(doctor.argv(dest, roles[h], bundle_out=bundle_, since=since),
                                       {"GL_BUNDLE_DIR": dest}, timeout=timeout)
                except DeployError as exc:
                    outcome.append(results.PhaseResult("doctor", h, roles[h], "fail", None,
                                                       time.monotonic() - started, message=str(exc)))
                    continue
                outcome.append(results.from_script("doctor", h, roles[h], res.rc, res.stdout, res.stderr,
                                                   time.monotonic() - started))
        drift = drift_between(outcome)
        if drift is not None:
            outcome.append(drift)
    finally:
        for link in links.values():
            link.close()
    results.print_table(outcome, console)
    if json_report:
        path = results.write_report(json_report, outcome, {"env_file": str(resolve_env(env)), "phases": ["doctor"]})
        console.print(f"JSON report: {path}", markup=False)
    code = results.exit_code(outcome)
    if code != 0:
        raise DeployError("doctor found problems: see the table above (docs/troubleshooting.md has each fix)"
                          if code != EXIT_WARNINGS else "doctor: warnings only, see the table above", exit_code=code)
    console.print("doctor: every check passed or was skipped", markup=False)


TASKS = (doctor_task,)
