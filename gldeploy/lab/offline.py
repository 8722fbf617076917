"""Prove the offline path in the lab: render standalone scripts, uninstall k3s, run them with bash only."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Mapping, Sequence

from gldeploy import results, sequences
from gldeploy.errors import ConfigError, DeployError
from gldeploy.lab.nodes import Lab, Node
from gldeploy.lab.proc import invoke_argv, run, say, ssh_argv
from gldeploy.lab.report import LabReport, Row
from gldeploy.lab.vagrant import ssh
from gldeploy.paths import REPO

REMOTE_DIR = "/tmp/gl-offline"
SCRIPT_TIMEOUT = 1500


def render(env_file: Path, sets: list[str], out: Path) -> None:
    """`invoke scripts.render --env ... --set ... --out DIR --with-artifacts --sample-image`."""
    shutil.rmtree(out, ignore_errors=True)
    argv = invoke_argv("scripts.render", env_file, sets, "--out", str(out), "--with-artifacts",
                       "--sample-image")
    say("offline: invoke scripts.render --with-artifacts ...")
    run(argv, cwd=REPO, timeout=600, what="invoke scripts.render")


def phase_row(phase: str, host: str, rc: int, stdout: str, stderr: str, seconds: float) -> Row:
    """A report row from one standalone script run, read exactly as the invoke path reads it."""
    result = results.from_script(phase, host, "", rc, stdout, stderr, seconds)
    data = results.json_object(stdout) or {}
    return Row("offline", phase, str(data.get("host", host)), result.status, round(seconds, 1),
               result.message[:200])


def topology_of(value: str) -> sequences.Topology:
    """The settings' TOPOLOGY as a sequences.Topology (the table's keys are the only valid ones)."""
    for topology in sequences.TOPOLOGIES:
        if topology == value:
            return topology
    raise ConfigError(f"TOPOLOGY={value!r}: expected one of {', '.join(sequences.TOPOLOGIES)}")


def rendered_phases(out: Path, topology: sequences.Topology) -> tuple[sequences.Phase, ...]:
    """The topology's phases from the sequences table, each checked to be rendered in `out`."""
    phases = sequences.sequence(topology)
    missing = [p.script for p in phases if not (out / p.script).is_file()]
    if missing:
        raise DeployError(f"offline: `invoke scripts.render` left {', '.join(missing)} out of {out}; the "
                          f"{topology} sequence runs {', '.join(sequences.names(topology))} (gldeploy/sequences.py)")
    return phases


def node_role(role: str, topology: sequences.Topology) -> sequences.Role:
    """The phase role of a lab node (the node table's role, as README.txt tells the operator)."""
    for known in sequences.roles_of(topology):
        if known == role:
            return known
    raise ConfigError(f"lab node role {role!r} is not a {topology} role ({', '.join(sequences.roles_of(topology))})")


def uninstall_on(node: Node) -> str:
    """The uninstall script the install leaves on a lab node: k3s' name for its role's service
    (sequences.uninstall_of: k3s-agent-uninstall.sh on an agent, k3s-uninstall.sh on a server)."""
    for role in sequences.ROLES:
        if role == node.role:
            return sequences.uninstall_of(role)
    raise ConfigError(f"lab node {node.name}: role {node.role!r} is not one of {', '.join(sequences.ROLES)}")


def phase_args(phase: sequences.Phase, role: sequences.Role, values: Mapping[str, str]) -> list[str]:
    """The phase's extra arguments for a role (sequences.Phase.args templates, e.g. an HA join's
    --server-url {server_url} --token-file {token_file}), filled in as the deploy plan fills them."""
    args_for = getattr(phase, "args_for", None)  # the HA join arguments of the sequences table
    templates = args_for(role) if callable(args_for) else ()
    try:
        return [str(a).format(**values) for a in templates]
    except KeyError as exc:
        raise DeployError(f"offline: {phase.script} --role {role} needs {exc} (the lab gives none)") from None


def run_offline(report: LabReport, lab: Lab, env_file: Path, sets: list[str], ssh_config: Path,
                out: Path, topology: sequences.Topology, targets: Sequence[Node] | None = None,
                arg_values: Mapping[str, str] | None = None) -> None:
    """Render, then on each target node (default: every node): the uninstall script of its role
    (k3s-uninstall.sh, on an agent k3s-agent-uninstall.sh), copy the dir, sha256sum -c, run the scripts
    of its role with bash only (with the phase's role arguments, filled from arg_values)."""
    render(env_file, sets, out)
    phases = rendered_phases(out, topology)
    for node in (lab.nodes if targets is None else targets):
        ip = node.ip
        role = node_role(node.role, topology)
        uninstall = sequences.uninstall_of(role)
        if ssh(ssh_config, ip, ["sudo", "test", "-x", uninstall], check=False).returncode != 0:
            raise DeployError(f"offline: {uninstall} is missing on {node.name} ({role}); the install phase "
                              f"should leave it (as the k3s installer does)")
        say(f"offline: {node.name}: {Path(uninstall).name}, copy {out.name}/, run {len(phases)} scripts")
        ssh(ssh_config, ip, ["sudo", uninstall], timeout=300)
        ssh(ssh_config, ip, ["sudo", "rm", "-rf", REMOTE_DIR])
        run(["scp", "-q", "-r", "-F", str(ssh_config), str(out), f"{ip}:{REMOTE_DIR}"], timeout=600,
            what="scp offline dir")
        ssh(ssh_config, ip, ["env", "-C", REMOTE_DIR, "sha256sum", "--quiet", "-c", "SHA256SUMS"], timeout=300)
        for phase in (p for p in phases if p.runs_on(role)):
            start = time.monotonic()
            argv = ["sudo", "bash", f"{REMOTE_DIR}/{phase.script}", *(["--role", role] if phase.takes_role else []),
                    "--json", *phase_args(phase, role, arg_values or {})]
            script = run(ssh_argv(ssh_config, ip, argv), timeout=SCRIPT_TIMEOUT, check=False,
                         what=f"offline: {phase.script} on {node.name}")
            row = phase_row(phase.name, node.name, script.returncode, script.stdout, script.stderr,
                            time.monotonic() - start)
            report.rows.append(row)
            if row.status == "fail":
                raise DeployError(f"offline: {phase.script} failed on {node.name}: {row.reason}")
