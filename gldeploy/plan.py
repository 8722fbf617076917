"""The plan: ordered (phase, host, role) steps, printable as --dry-run, executed phase by phase.

The phases and where each runs come from the sequence table (``sequences.py``): a host's role
decides which phases it takes. Within a phase, hosts run together unless the phase says one at a
time (servers joining etcd). A failing phase stops the later phases on that host; other hosts go on.
"""
from __future__ import annotations

import shlex
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import bundle, results, sequences
from .errors import ConfigError, DeployError
from .sequences import Phase, Role
from .settings import Settings
from .transport import Transport, for_host, validate_host


@dataclass(frozen=True)
class Step:
    """One phase on one host in one role."""

    phase: str
    host: str
    role: Role


@dataclass(frozen=True)
class Plan:
    """Ordered steps (phase-major) plus the facts --dry-run prints."""

    steps: tuple[Step, ...]
    hosts: tuple[str, ...]
    bundle_dir: str
    phases: tuple[Phase, ...]

    @property
    def needs_artifacts(self) -> bool:
        return "k3s" in bundle.needs_of(self.phases)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def argv(self, step: Step) -> list[str]:
        """The exact command run on the host for a step: the role is always explicit."""
        cmd = ["bash", f"{self.bundle_dir}/{step.phase}.sh", "--json"]
        return cmd + (["--role", step.role] if self.phase(step.phase).takes_role else [])

    def env(self) -> dict[str, str]:
        return {"GL_BUNDLE_DIR": self.bundle_dir}

    def groups(self) -> list[list[Step]]:
        """Steps in execution order, grouped: the steps of a group may run at the same time."""
        out: list[list[Step]] = []
        for phase in self.phases:
            steps = [s for s in self.steps if s.phase == phase.name]
            if phase.one_at_a_time:
                out.extend([s] for s in steps)
            elif steps:
                out.append(steps)
        return out


def parse_hosts(value: str) -> list[str]:
    """--hosts: a comma list of addresses/ssh aliases, or `local` for this machine."""
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    if not hosts:
        raise ConfigError("--hosts is empty; give a comma list such as 192.168.56.10 or `local`")
    return [validate_host(h) for h in hosts]


def role_of(settings: Settings, host: str) -> Role:
    """The one default-role rule: a host's role follows from where the settings list it. Hosts not
    listed (or `local`) act as the first server (single node: the one server)."""
    if host in settings.worker_ips:
        return "agent"
    if host in settings.control_plane_ips[1:]:
        return "server"
    return "single" if settings.topology == "single" else "first-server"


def hosts_of(settings: Settings, roles: Sequence[Role]) -> list[str]:
    """The hosts the settings give one of these roles, in CONTROL_PLANE_IPS, WORKER_IPS order."""
    everyone = [*settings.control_plane_ips, *settings.worker_ips]
    found = [h for h in everyone if role_of(settings, h) in roles]
    if not found:
        raise ConfigError(f"no host in CONTROL_PLANE_IPS/WORKER_IPS has the role {' or '.join(roles)}; "
                          f"list them there or name them with --hosts")
    return found


def build(settings: Settings, phases: Sequence[str], *, hosts: Sequence[str] | None = None,
          role: str | None = None) -> Plan:
    """Steps for phases over hosts (default: CONTROL_PLANE_IPS, plus WORKER_IPS where a phase runs)."""
    topology = settings.topology
    roles = sequences.roles_of(topology)
    if role is not None and role not in roles:
        raise ConfigError(f"--role {role!r}: TOPOLOGY={topology} hosts take one of {', '.join(roles)}"
                          + (" (HA cluster roles come with TOPOLOGY=ha)" if role in sequences.ROLES else ""))
    chosen = []
    for name in phases:
        try:
            chosen.append(sequences.phase(topology, name))
        except KeyError:
            hint = (" install k3s on a cluster with `invoke cluster.init --role first-server` or "
                    "`invoke cluster.deploy`" if topology == "ha" else " use `invoke deploy` for a single node")
            raise ConfigError(f"{settings.origin('TOPOLOGY')}: TOPOLOGY={topology} has no phase {name}; "
                              f"its sequence is {', '.join(sequences.names(topology))};{hint}") from None
    ordered = tuple(p for p in sequences.sequence(topology) if p in chosen)
    targets = [*settings.control_plane_ips, *settings.worker_ips] if hosts is None else list(hosts)
    host_roles: dict[str, Role] = {h: role_of(settings, h) for h in targets}
    if role is not None:
        host_roles = {h: next(r for r in roles if r == role) for h in targets}
    steps = [Step(phase.name, host, host_roles[host])
             for phase in ordered for host in targets if phase.runs_on(host_roles[host])]
    if not steps:
        raise ConfigError(f"nothing to run: no host in {', '.join(targets)} runs {', '.join(phases)}")
    used = tuple(dict.fromkeys(s.host for s in steps))
    return Plan(tuple(steps), used, settings.work_dir.rstrip("/") or "/", ordered)


def transports(settings: Settings, plan: Plan, echo: Callable[[str], None] | None = None) -> dict[str, Transport]:
    """One transport per host: `local` or OpenSSH with SSH_USER/SSH_KEY/SSH_CONFIG."""
    kwargs = {"echo": echo} if echo is not None else {}
    return {h: for_host(h, user=settings.ssh_user, ssh_config=settings.ssh_config, key=settings.ssh_key,
                        **kwargs) for h in plan.hosts}


def describe(settings: Settings, plan: Plan, links: dict[str, Transport]) -> list[str]:
    """The --dry-run text: per host its transport, bundle dir and the exact remote commands."""
    lines = [f"plan: {len(plan.steps)} step(s) on {len(plan.hosts)} host(s); nothing is executed (--dry-run)"]
    order = [f"{p.name} ({'one host at a time' if p.one_at_a_time else 'hosts together'})"
             for p in plan.phases if any(s.phase == p.name for s in plan.steps)]
    lines.append(f"order ({settings.topology}): " + " -> ".join(order))
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
    """Stage the bundle locally (fails before any host is touched), ship it, run the steps group by
    group (plan.groups(): hosts of a group run at the same time).

    with_artifacts: stage k3s artifacts; default: when a planned phase installs k3s.
    """
    out: list[results.PhaseResult] = []
    failed: dict[str, str] = {}
    shipped: set[str] = set()
    staging = bundle.Staging(k3s_artifacts=plan.needs_artifacts if with_artifacts is None else with_artifacts,
                             sample_image=sample_image)
    with tempfile.TemporaryDirectory(prefix="gl-bundle-") as tmp:
        staged = Path(tmp) / "bundle"
        info = bundle.build_bundle(settings, staged, plan.phases, baked=False, staging=staging,
                                   roles={s.role for s in plan.steps})
        progress(f"bundle staged ({len(info.files)} files, k3s artifacts: {info.k3s_mode})")

        def run_step(step: Step) -> results.PhaseResult:
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
                return results.PhaseResult(step.phase, step.host, step.role, "fail", None,
                                           time.monotonic() - started, message=str(exc))
            return results.from_script(step.phase, step.host, step.role, res.rc, res.stdout,
                                       res.stderr, time.monotonic() - started)

        for group in plan.groups():
            runnable = [s for s in group if s.host not in failed]
            with ThreadPoolExecutor(max_workers=max(1, len(runnable))) as pool:
                done = dict(zip([s.host for s in runnable], pool.map(run_step, runnable)))
            for step in group:  # report in plan order, whatever finished first
                if step.host not in done:
                    out.append(results.not_run(step.phase, step.host, step.role, f"{failed[step.host]} failed"))
                    continue
                out.append(done[step.host])
                if not done[step.host].ok:
                    failed[step.host] = step.phase
    return out
