"""The plan: ordered (phase, host, role) steps, printable as --dry-run, executed phase by phase.

Which hosts a phase runs on follows from the host's role: ``01`` everywhere, ``02`` on servers,
``03``/``04`` on the first server (single node: the one server). A failing phase stops the later
phases on that host; other hosts go on.
"""
from __future__ import annotations

import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import bundle, results
from .errors import ConfigError, DeployError
from .settings import Settings
from .transport import Transport, for_host, validate_host

ROLES = ("single", "first-server", "server", "agent")


@dataclass(frozen=True)
class Phase:
    """A phase script and where it runs: all | servers | first-server."""

    script: str
    runs_on: str
    takes_role: bool
    needs_artifacts: bool = False


PHASES = {p.script: p for p in (
    Phase("01_pre_install_check", "all", True),
    Phase("02_install_k3s", "servers", True, needs_artifacts=True),
    Phase("02_init_control_plane", "first-server", True, needs_artifacts=True),
    Phase("03_deploy_gl_backend", "first-server", False),
    Phase("04_health_check", "first-server", False),
)}

SINGLE_NODE = ("01_pre_install_check", "02_install_k3s", "03_deploy_gl_backend", "04_health_check")


@dataclass(frozen=True)
class Step:
    """One phase on one host in one role."""

    phase: str
    host: str
    role: str


@dataclass(frozen=True)
class Plan:
    """Ordered steps (phase-major) plus the facts --dry-run prints."""

    steps: tuple[Step, ...]
    hosts: tuple[str, ...]
    bundle_dir: str
    needs_artifacts: bool

    def argv(self, step: Step) -> list[str]:
        """The exact command run on the host for a step."""
        cmd = ["bash", f"{self.bundle_dir}/{step.phase}.sh", "--json"]
        return cmd + (["--role", step.role] if PHASES[step.phase].takes_role else [])

    def env(self) -> dict[str, str]:
        return {"GL_BUNDLE_DIR": self.bundle_dir}


def parse_hosts(value: str) -> list[str]:
    """--hosts: a comma list of addresses/ssh aliases, or `local` for this machine."""
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    if not hosts:
        raise ConfigError("--hosts is empty; give a comma list such as 192.168.56.10 or `local`")
    return [validate_host(h) for h in hosts]


def default_role(settings: Settings, host: str) -> str:
    """The role a host has in the settings; hosts not listed (or `local`) act as the first server."""
    first = "single" if settings.topology == "single" else "first-server"
    if host in settings.worker_ips:
        return "agent"
    if host in settings.control_plane_ips[1:]:
        return "server"
    return first


def _runs_on(phase: Phase, role: str) -> bool:
    if phase.runs_on == "all":
        return True
    if phase.runs_on == "servers":
        return role != "agent"
    return role in ("single", "first-server")


def build(settings: Settings, phases: Sequence[str], *, hosts: Sequence[str] | None = None,
          role: str | None = None, include_workers: bool = True) -> Plan:
    """Steps for phases over hosts (default: CONTROL_PLANE_IPS, plus WORKER_IPS where a phase runs)."""
    if role is not None and role not in ROLES:
        raise ConfigError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    if settings.topology == "ha" and "02_install_k3s" in phases:
        raise ConfigError(f"{settings.origin('TOPOLOGY')}: TOPOLOGY=ha installs k3s with "
                          f"`invoke cluster.init --role first-server`; install-k3s/deploy are for single node")
    explicit = hosts is not None
    targets = list(hosts) if explicit else [*settings.control_plane_ips,
                                            *(settings.worker_ips if include_workers else ())]
    steps = []
    for name in phases:
        phase = PHASES[name]
        for host in targets:
            host_role = role or default_role(settings, host)
            if _runs_on(phase, host_role):
                steps.append(Step(name, host, host_role))
    if not steps:
        raise ConfigError(f"nothing to run: no host in {', '.join(targets)} runs {', '.join(phases)}")
    used = tuple(dict.fromkeys(s.host for s in steps))
    return Plan(tuple(steps), used, settings.work_dir.rstrip("/") or "/",
                any(PHASES[s.phase].needs_artifacts for s in steps))


def transports(settings: Settings, plan: Plan, echo: Callable[[str], None] | None = None) -> dict[str, Transport]:
    """One transport per host: `local` or OpenSSH with SSH_USER/SSH_KEY/SSH_CONFIG."""
    kwargs = {"echo": echo} if echo is not None else {}
    return {h: for_host(h, user=settings.ssh_user, ssh_config=settings.ssh_config, key=settings.ssh_key,
                        **kwargs) for h in plan.hosts}


def describe(settings: Settings, plan: Plan, links: dict[str, Transport]) -> list[str]:
    """The --dry-run text: per host its transport, bundle dir and the exact remote commands."""
    lines = [f"plan: {len(plan.steps)} step(s) on {len(plan.hosts)} host(s); nothing is executed (--dry-run)"]
    for host in plan.hosts:
        link = links[host]
        lines.append(f"host {host}: transport {link.describe()}, bundle {plan.bundle_dir}")
        lines.append(f"  {host}: copy bundle -> {plan.bundle_dir} (replaced whole; mode 0700; settings.env and "
                     f"secrets 0600)")
        for step in (s for s in plan.steps if s.host == host):
            argv = link.command(plan.argv(step), plan.env(), step_timeout(settings))
            lines.append(f"  {host}: {step.phase} [{step.role}] $ {shlex.join(argv)}")
    if plan.needs_artifacts:
        lines.append(f"k3s {settings.k3s_version} artifacts are staged into the bundle "
                     f"({settings.k3s_artifacts_dir or settings.k3s_release_url})")
    return lines


def step_timeout(settings: Settings) -> float:
    """Upper bound for one phase on one host: its own bounded waits plus a margin for slow hosts."""
    return float(settings.health_timeout + settings.rollout_timeout + 600)


def execute(settings: Settings, plan: Plan, links: dict[str, Transport], *, sample_image: bool = False,
            with_artifacts: bool | None = None,
            progress: Callable[[str], None] = print) -> list[results.PhaseResult]:
    """Stage the bundle locally (fails before any host is touched), ship it, run the steps.

    with_artifacts: stage k3s artifacts; default: when a planned phase installs k3s.
    """
    out: list[results.PhaseResult] = []
    failed: dict[str, str] = {}
    shipped: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="gl-bundle-") as tmp:
        staged = Path(tmp) / "bundle"
        info = bundle.build_bundle(settings, staged, baked=False,
                                   with_artifacts=plan.needs_artifacts if with_artifacts is None else with_artifacts,
                                   sample_image=sample_image)
        progress(f"bundle staged ({len(info.files)} files, k3s artifacts: {info.k3s_mode})")
        for step in plan.steps:
            if step.host in failed:
                out.append(results.not_run(step.phase, step.host, step.role, f"{failed[step.host]} failed"))
                continue
            link = links[step.host]
            started = time.monotonic()
            try:
                if step.host not in shipped:
                    progress(f"{step.host}: copying bundle to {plan.bundle_dir}")
                    link.put_dir(staged, plan.bundle_dir)
                    shipped.add(step.host)
                progress(f"{step.host}: {step.phase} ({step.role})")
                res = link.run(plan.argv(step), plan.env(), timeout=step_timeout(settings))
            except DeployError as exc:  # unreachable host etc.: that host stops, the others go on
                result = results.PhaseResult(step.phase, step.host, step.role, "fail", None,
                                             time.monotonic() - started, message=str(exc))
            else:
                result = results.from_script(step.phase, step.host, step.role, res.rc, res.stdout,
                                             res.stderr, time.monotonic() - started)
            out.append(result)
            if not result.ok:
                failed[step.host] = step.phase
    return out
