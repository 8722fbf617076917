"""The plan: ordered (phase, host, role) steps, printable as --dry-run, executed phase by phase.

The phases and where each runs come from the sequence table (``sequences.py``): a host's role
decides which phases it takes. Within a phase, hosts run together unless the phase says one at a
time (servers joining etcd). A failing phase stops the later phases on that host; other hosts go on.
"""
from __future__ import annotations

import os
import shlex
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import bundle, loadbalancer, results, sequences
from .errors import ConfigError, DeployError
from .sequences import Phase, Role
from .settings import Settings
from .transport import Transport, for_host, validate_host

# the step between groups that reads the first server's join token for the joining hosts: its
# stdout is the token (never logged: transports echo stderr only), staged 0600 in their bundle
FETCH_TOKEN = "fetch-join-token"
SERVER_TOKEN = "/var/lib/rancher/k3s/server/token"
TOKEN_IN_BUNDLE = bundle.SECRET_FILES["K3S_TOKEN_FILE"]  # secrets/k3s-token
DRIFT_CHECK, DIGEST_CHECK = "config-drift", "config-digest"


@dataclass(frozen=True)
class Step:
    """One phase on one host in one role (or the FETCH_TOKEN step on the first server)."""

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
    server_url: str = ""            # https://API_VIP:LB_PORT: what joining hosts dial ({server_url})
    token_from: str | None = None   # the first server, when the join token is read from it (FETCH_TOKEN)

    @property
    def needs_artifacts(self) -> bool:
        return "k3s" in bundle.needs_of(self.phases)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def argv(self, step: Step) -> list[str]:
        """The exact command run on the host for a step: the role is always explicit; the phase's
        argument templates for that role (sequences.Phase.args) are filled in."""
        if step.phase == FETCH_TOKEN:
            return ["cat", SERVER_TOKEN]
        phase = self.phase(step.phase)
        cmd = ["bash", f"{self.bundle_dir}/{step.phase}.sh", "--json"]
        cmd += ["--role", step.role] if phase.takes_role else []
        values = {"server_url": self.server_url, "token_file": f"{self.bundle_dir}/{TOKEN_IN_BUNDLE}"}
        return cmd + [arg.format(**values) for arg in phase.args_for(step.role)]

    def joiners(self) -> set[str]:
        """Hosts that join the cluster with the join token in some planned phase."""
        return {s.host for s in self.steps if s.phase != FETCH_TOKEN and s.role in self.phase(s.phase).joins}

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
        if self.token_from is not None:  # read the token right before the first group that joins
            first = next(i for i, g in enumerate(out)
                         if any(s.role in self.phase(s.phase).joins for s in g))
            out.insert(first, [Step(FETCH_TOKEN, self.token_from, "first-server")])
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
    if settings.topology == "ha" and host in settings.lb_ips and host not in settings.control_plane_ips:
        return "lb"
    return "single" if settings.topology == "single" else "first-server"


def everyone(settings: Settings) -> list[str]:
    """Every host the settings name, in LB_IPS (their VIP comes first), CONTROL_PLANE_IPS, WORKER_IPS
    order, each once."""
    lbs = settings.lb_ips if settings.topology == "ha" else ()
    return list(dict.fromkeys([*lbs, *settings.control_plane_ips, *settings.worker_ips]))


def _token_is_full(settings: Settings) -> bool:
    """K3S_TOKEN_FILE holds a full K10<ca-hash>::server:<secret> token (joiners can pin the CA with it);
    otherwise the joiners get the first server's token (FETCH_TOKEN)."""
    if not settings.k3s_token_file:
        return False
    try:
        return Path(settings.k3s_token_file).expanduser().read_text().strip().startswith("K10")
    except (OSError, UnicodeDecodeError):
        return False  # bundle.check_inputs names the problem before anything runs


def hosts_of(settings: Settings, roles: Sequence[Role]) -> list[str]:
    """The hosts the settings give one of these roles, in LB_IPS, CONTROL_PLANE_IPS, WORKER_IPS order."""
    found = [h for h in everyone(settings) if role_of(settings, h) in roles]
    if not found:
        raise ConfigError(f"no host in LB_IPS/CONTROL_PLANE_IPS/WORKER_IPS has the role {' or '.join(roles)}; "
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
    targets = everyone(settings) if hosts is None else list(hosts)
    host_roles: dict[str, Role] = {h: role_of(settings, h) for h in targets}
    if role is not None:
        host_roles = {h: next(r for r in roles if r == role) for h in targets}
    steps = [Step(phase.name, host, host_roles[host])
             for phase in ordered for host in targets if phase.runs_on(host_roles[host])]
    if not steps:
        raise ConfigError(f"nothing to run: no host in {', '.join(targets)} runs {', '.join(phases)}")
    used = tuple(dict.fromkeys(s.host for s in steps))
    made = Plan(tuple(steps), used, settings.work_dir.rstrip("/") or "/", ordered,
                server_url=loadbalancer.endpoint(settings) if topology == "ha" else "")
    if made.joiners() and not _token_is_full(settings):
        source = next((s.host for s in steps if s.role == "first-server"), settings.first_server)
        made = Plan(made.steps, tuple(dict.fromkeys([*used, source])), made.bundle_dir, ordered,
                    server_url=made.server_url, token_from=source)
    return made


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
    if plan.token_from is not None:
        lines.append(f"join token: read from {plan.token_from} ({SERVER_TOKEN}, over the transport's stdout, never "
                     f"logged) after it is installed; staged 0600 as {plan.bundle_dir}/{TOKEN_IN_BUNDLE} on "
                     f"{', '.join(sorted(plan.joiners()))}")
    if plan.server_url:
        lines.append(f"API endpoint (joins, kubeconfigs): {plan.server_url}")
    for host in plan.hosts:
        link = links[host]
        lines.append(f"host {host}: transport {link.describe()}, bundle {plan.bundle_dir}")
        if any(s.host == host for s in plan.steps):
            lines.append(f"  {host}: copy bundle -> {plan.bundle_dir} (replaced whole; mode 0700; settings.env and "
                         f"secrets 0600)")
        for step in (s for g in plan.groups() for s in g if s.host == host):
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
    group (plan.groups(): hosts of a group run at the same time), then compare the servers' config
    digests (config_drift).

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
                if step.phase == FETCH_TOKEN:
                    return _fetch_token(plan, step, link, staged, shipped, settings, started)
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
                if step.phase == FETCH_TOKEN and not done[step.host].ok:
                    failed.update({h: FETCH_TOKEN for h in plan.joiners() if h not in failed})
                elif not done[step.host].ok:
                    failed[step.host] = step.phase
    drift = config_drift(out)
    return out + ([drift] if drift is not None else [])


def _fetch_token(plan: Plan, step: Step, link: Transport, staged: Path, shipped: set[str], settings: Settings,
                 started: float) -> results.PhaseResult:
    """Read the first server's full K10 token (stdout of the transport, never argv or logs) and stage it
    0600 in the bundle; hosts that already hold the bundle get it again before their next step."""
    res = link.run(plan.argv(step), None, timeout=60)
    token = res.stdout.strip()
    if res.rc != 0 or not token.startswith("K10") or "\n" in token:
        why = f"exit {res.rc}" if res.rc != 0 else "it does not hold a K10<ca-hash>::server:<secret> token"
        return results.PhaseResult(FETCH_TOKEN, step.host, step.role, "fail", res.rc, time.monotonic() - started,
                                   message=f"could not read the join token {SERVER_TOKEN} on {step.host} ({why}); "
                                           f"the joining hosts were not touched. Is k3s installed there "
                                           f"(02_init_control_plane --role first-server)?")
    secrets = staged / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    dest = staged / TOKEN_IN_BUNDLE
    dest.unlink(missing_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    shipped.difference_update(plan.joiners())  # they receive the bundle again, now with the token
    return results.PhaseResult(FETCH_TOKEN, step.host, step.role, "pass", 0, time.monotonic() - started,
                               message=f"join token read from {step.host}:{SERVER_TOKEN} (not shown) and staged "
                                       f"0600 as {TOKEN_IN_BUNDLE} for {', '.join(sorted(plan.joiners()))}")


def config_drift(outcome: Sequence[results.PhaseResult]) -> results.PhaseResult | None:
    """A failed `config-drift` result when the servers' 06 reports carry different config digests
    (the settings every server must share, lib/k3s_files.sh k3s_cluster_digest); None when they agree
    or fewer than two servers reported one."""
    digests: dict[str, str] = {}
    for res in outcome:
        for check in res.checks:
            if check.get("name") == DIGEST_CHECK and check.get("status") == "pass":
                digests[res.host] = str(check.get("message", "")).split()[0]
    if len(set(digests.values())) < 2:
        return None
    groups: dict[str, list[str]] = {}
    for host, digest in digests.items():
        groups.setdefault(digest, []).append(host)
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    majority = ranked[0][1]
    odd = [h for _, hosts in ranked[1:] for h in hosts]
    text = "; ".join(f"{', '.join(hosts)}: {digest}" for digest, hosts in ranked)
    message = (f"servers {', '.join(odd)} differ from {', '.join(majority)} in the settings every server must "
               f"share (cluster/service CIDR, cluster DNS/domain, flannel backend, disables, network policy, "
               f"secrets encryption, egress selector, CNI, token): {text}")
    fix = ("compare /etc/rancher/k3s/config.yaml on those servers with the others; run 02_init_control_plane "
           "there again with the same settings (invoke cluster.deploy rewrites it)")
    check = {"name": DRIFT_CHECK, "status": "fail", "message": message, "fix": fix}
    return results.PhaseResult("06_health_check", "cluster", "cluster", "fail", None, 0.0, checks=[check],
                                message=message)
