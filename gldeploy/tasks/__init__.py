"""invoke collections of GL-Native Deploy, and the plumbing the phase tasks share.

Tasks stay thin: load settings, build the plan, print it (--dry-run) or execute it, report.
Every task is declared with ``gl_task``: one table of short flags for the whole toolkit, and ``-h``
always means help.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from invoke import Task, task
from rich.console import Console

from gldeploy import bundle, paths, plan, results, sequences, settings
from gldeploy.errors import EXIT_WARNINGS, DeployError

# the only short flags: the same letter means the same option in every task; -h stays help
SHORT_FLAGS = {"env": "e", "set_": "s", "dry_run": "n", "role": "r", "out": "o", "json_report": "j",
               "lab": "l", "accel": "a", "keep": "k"}


class GlTask(Task[Any]):
    """An invoke task whose short flags come from SHORT_FLAGS instead of invoke's first-free-letter
    rule (which gave --hosts the -h of help and the same option different letters in two tasks)."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Any]:
        """invoke's get_arguments consumes help= as it goes; keep it, so asking twice (--help, then a
        run, or two tests) gives the same help texts."""
        saved = dict(self.help)
        try:
            return list(super().get_arguments(ignore_unknown_help))
        finally:
            self.help = saved

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        flag = SHORT_FLAGS.get(name)
        opts["names"] = [opts["names"][0]] + ([flag] if flag and flag not in taken_names else [])
        return opts


def gl_task(**kwargs: Any) -> Callable[[Callable[..., Any]], Task[Any]]:
    """invoke's @task with the toolkit's short flags (GlTask)."""
    return task(klass=GlTask, auto_shortflags=False, **kwargs)

DEFAULT_ENV = "env/single.env"

COMMON_HELP = {
    "env": f"Env file with the settings (default {DEFAULT_ENV})",
    "set": "Override one setting as KEY=VALUE; repeatable; beats the env file and GL_<KEY> environment",
    "hosts": "Comma list of hosts or ssh aliases, or 'local' for this machine (default CONTROL_PLANE_IPS, "
             "plus WORKER_IPS for phases that run there)",
    "dry_run": "Print the plan per host (transport, bundle dir, exact commands) and touch nothing",
    "json_report": "Also write the results (per phase and host) as JSON to this file",
    "role": "Role of every targeted host: single, first-server, server or agent (default: from the settings)",
    "sample_image": "Build the sample backend image and ship it in the bundle (artifacts/images)",
}


def resolve_env(env: str) -> Path:
    """An env file path: as given, or (when relative and missing here) relative to the checkout."""
    path = Path(env)
    if not path.is_absolute() and not path.exists() and (paths.REPO / path).exists():
        return paths.REPO / path
    return path


def load_settings(env: str, overrides: Iterable[str]) -> settings.Settings:
    """Settings with the documented precedence: defaults < env file < GL_* environment < --set.
    Warnings of the settings (e.g. a GL_ variable that is a near-miss of a key) go to stderr."""
    loaded = settings.load(resolve_env(env or DEFAULT_ENV), overrides=list(overrides or ()))
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def run_phases(phases: Sequence[str], *, env: str, set_: Iterable[str], hosts: str, dry_run: bool,
               json_report: str, role: str, sample_image: bool,
               of_roles: Sequence[sequences.Role] = ()) -> None:
    """Plan, then print (--dry-run) or execute, report and raise DeployError on failure.

    of_roles: without --hosts, target only the hosts the settings give these roles."""
    loaded = load_settings(env, set_)
    targets = plan.parse_hosts(hosts) if hosts else (plan.hosts_of(loaded, of_roles) if of_roles else None)
    built = plan.build(loaded, phases, hosts=targets, role=role or None)
    console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 120))
    links = plan.transports(loaded, built)
    try:
        if dry_run:  # a real run validates while staging the bundle, before any host is touched
            # bad input, also for --dry-run
            bundle.check_inputs(loaded, {s.role for s in built.steps}, bundle.needs_of(built.phases))
            for line in plan.describe(loaded, built, links):
                console.print(line, markup=False)
            return
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        outcome = plan.execute(loaded, built, links, sample_image=sample_image,
                               progress=lambda msg: console.print(msg, markup=False))
    finally:
        for link in links.values():
            link.close()
    results.print_table(outcome, console)
    if json_report:
        path = results.write_report(json_report, outcome, {"env_file": str(resolve_env(env)),
                                                           "phases": list(phases), "started": started})
        console.print(f"JSON report: {path}", markup=False)
    code = results.exit_code(outcome)
    if code not in (0, EXIT_WARNINGS):
        bad = [f"{r.phase}@{r.host}" for r in outcome if r.status == "fail"]
        raise DeployError(f"{len(bad)} phase(s) failed: {', '.join(bad)}; see the table above", exit_code=code)
    warned = sum(r.status == "warn" for r in outcome)
    if warned:  # exit 3, as the scripts do: passed, but the warnings are worth reading
        raise DeployError(f"done, with {warned} warning(s): see the table above", exit_code=EXIT_WARNINGS)
    console.print("done", markup=False)
