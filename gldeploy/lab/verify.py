"""What the lab runs and checks on its VMs: `invoke deploy` twice, the testinfra verifiers, and the
inventory they read. The steps that call these are in gldeploy/lab/runner.py."""
from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from gldeploy.errors import DeployError
from gldeploy.lab import nodes
from gldeploy.lab.k3s_source import K3sSource
from gldeploy.lab.proc import invoke_argv, run, say
from gldeploy.lab.registry import RegistryInfo
from gldeploy.lab.report import LabReport, Row
from gldeploy.lab.vagrant import ssh
from gldeploy.paths import REPO
from gldeploy.results import EXIT_WARNINGS

DEPLOY_TIMEOUT = 1200
TESTINFRA_TIMEOUT = 900


def overrides(ssh_config: Path, k3s_dir: Path, reg: RegistryInfo | None) -> list[str]:
    """The --set flags a platform operator would pass for this lab."""
    sets = [f"SSH_CONFIG={ssh_config}", "SSH_USER=vagrant", f"K3S_ARTIFACTS_DIR={k3s_dir}", "MIN_CPU=1",
            "MIN_MEMORY_MB=512", "MIN_DISK_GB=2"]
    if reg is not None:
        sets += [f"REGISTRY={reg.address}", f"REGISTRY_USER={reg.user}",
                 f"REGISTRY_PASSWORD_FILE={reg.password_file}", f"REGISTRY_CA_FILE={reg.ca_file}"]
    return sets


def run_deploy(report: LabReport, label: str, env_file: Path, sets: list[str], out: Path, *,
               task: str = "deploy", extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run `invoke <task>` (deploy, cluster.deploy, ...) as a subprocess (output streamed); add its
    rows; raise if it failed."""
    out.unlink(missing_ok=True)
    argv = invoke_argv(task, env_file, sets, *extra, "--sample-image", "--json-report", str(out))
    say(f"{label}: invoke {task} --env {env_file.name} {' '.join(extra)} ... --json-report {out.name}")
    proc = run(argv, cwd=REPO, timeout=DEPLOY_TIMEOUT, check=False, capture=False, what=f"{label}: invoke {task}")
    data = json.loads(out.read_text()) if out.exists() else {}
    report.add_deploy_report(label, data)
    if proc.returncode not in (0, EXIT_WARNINGS):
        raise DeployError(f"{label}: invoke {task} exited {proc.returncode}; see its table above")
    if not data:
        raise DeployError(f"{label}: invoke {task} wrote no JSON report at {out}")
    # exit 3 = every phase passed, some with warnings (e.g. 01 on a host that already runs k3s): the
    # warnings are in the report's rows; a failed phase under exit 3 would be a contradiction
    failed = [f"{r.get('phase')}@{r.get('host')}" for r in data.get("results", []) if r.get("status") == "fail"]
    if failed:
        raise DeployError(f"{label}: invoke {task} exited {proc.returncode} but reports failed phases: "
                          f"{', '.join(failed)}")
    modes = {r.get("k3s_mode", "none") for r in data.get("results", [])} - {"none"}
    if modes and modes != {report.k3s_mode}:
        raise DeployError(f"{label}: the phases report k3s mode {', '.join(sorted(modes))} but the lab "
                          f"staged {report.k3s_mode} artifacts")
    return data


def install_registry_client(ssh_config: Path, ip: str, reg: RegistryInfo) -> None:
    """Put the lab CA and a 0600 curl config with the registry credentials on the VM (via stdin)."""
    password = reg.password_file.read_text().strip()
    ssh(ssh_config, ip, ["bash", "-c", "umask 077; mkdir -p ~/.gl-lab; cat > ~/.gl-lab/ca.crt"],
        input_text=reg.ca_file.read_text())
    ssh(ssh_config, ip, ["bash", "-c", "umask 077; cat > ~/.gl-lab/registry.curlrc"],
        input_text=f'user = "{reg.user}:{password}"\n')


def run_testinfra(report: LabReport, lab: nodes.Lab, ssh_config: Path, inventory: Path, work: Path) -> None:
    """pytest tests/lab with testinfra hosts from the ssh_config; rows from its JUnit XML."""
    junit = work / "testinfra.xml"
    hosts = ",".join(f"ssh://{ip}" for ip in lab.ips)
    argv = [sys.executable, "-m", "pytest", "tests/lab", "-m", "lab", f"--hosts={hosts}",
            f"--ssh-config={ssh_config}", f"--junitxml={junit}", "-p", "no:cacheprovider", "-q", "-rs"]
    env = {**os.environ, "GL_LAB_INVENTORY": str(inventory)}
    say("testinfra: pytest tests/lab ...")
    proc = run(argv, cwd=REPO, env=env, timeout=TESTINFRA_TIMEOUT, check=False, capture=False,
               what="testinfra")
    report.rows.extend(junit_rows(junit))
    if proc.returncode != 0:
        raise DeployError(f"testinfra verifiers failed (pytest exit {proc.returncode}); see above")


def junit_rows(junit: Path) -> list[Row]:
    """One row per test case of a JUnit XML file."""
    if not junit.exists():
        return []
    rows: list[Row] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        status, reason = "pass", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = "skipped" if tag == "skipped" else "fail"
                reason = (node.get("message") or "").splitlines()[0][:160] if node.get("message") else tag
        name = case.get("name", "?")
        func, _, params = name.partition("[")
        params, host = params.rstrip("]"), "-"
        if params.startswith("ssh://"):
            host, _, params = params.removeprefix("ssh://").partition("-")
        rows.append(Row("testinfra", f"{func}[{params}]" if params else func, host, status,
                        round(float(case.get("time", 0.0)), 1), reason))
    return rows


def write_inventory(work: Path, lab: nodes.Lab, ssh_config: Path, source: K3sSource, reg: RegistryInfo,
                    ref: str, digest: str, env_file: Path, extra: dict[str, Any] | None = None) -> Path:
    """The JSON the testinfra verifiers read (GL_LAB_INVENTORY): nodes, mode, expectations."""
    path = work / "inventory.json"
    path.write_text(json.dumps({
        "lab": lab.name, "ssh_config": str(ssh_config), "env_file": str(env_file),
        "nodes": [{"name": n.name, "ip": n.ip, "role": n.role} for n in lab.nodes],
        "k3s_mode": source.mode, "k3s_dir": str(source.directory),
        "registry": {"address": reg.address, "image_ref": ref, "digest": digest, "user": reg.user,
                     "ca_file": str(reg.ca_file), "password_file": str(reg.password_file)},
        "deploy_reports": [str(work / "deploy-1.json"), str(work / "deploy-2.json")],
        "offline_dir": str(work / "offline"),
        **(extra or {}),
    }, indent=2) + "\n")
    return path
