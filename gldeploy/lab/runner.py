"""`invoke lab.run`: from nothing (box cached) to a verified lab, measured, then destroyed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from gldeploy import backend
from gldeploy import settings as settings_lib
from gldeploy.errors import DeployError
from gldeploy.lab import box as boxlib
from gldeploy.lab import host, k3s_source, nodes, offline, site
from gldeploy.lab.children import term_as_interrupt
from gldeploy.lab.ntp import SntpServer
from gldeploy.lab.registry import LabRegistry, push_sample_image
from gldeploy.lab.report import LabReport, MemorySampler, Row, host_memory_used_mib
from gldeploy.lab.vagrant import DEFAULT_BOOT_TIMEOUT, LabVMs, ssh
from gldeploy.lab.proc import invoke_argv, run, say
from gldeploy.paths import CACHE_DIR, REPO

REPORTS = REPO / "reports"
DEPLOY_TIMEOUT = 1200
TESTINFRA_TIMEOUT = 900


def state_dir(lab: str) -> Path:
    """Per-lab scratch dir (gitignored): ssh_config, deploy JSON, registry, inventory."""
    path = CACHE_DIR / "lab" / lab
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def overrides(ssh_config: Path, k3s_dir: Path, reg: Any) -> list[str]:
    """The --set flags a platform operator would pass for this lab."""
    sets = [f"SSH_CONFIG={ssh_config}", "SSH_USER=vagrant", f"K3S_ARTIFACTS_DIR={k3s_dir}", "MIN_CPU=1",
            "MIN_MEMORY_MB=512", "MIN_DISK_GB=2"]
    if reg is not None:
        sets += [f"REGISTRY={reg.address}", f"REGISTRY_USER={reg.user}",
                 f"REGISTRY_PASSWORD_FILE={reg.password_file}", f"REGISTRY_CA_FILE={reg.ca_file}"]
    return sets


def run_deploy(report: LabReport, label: str, env_file: Path, sets: list[str], out: Path) -> dict[str, Any]:
    """Run `invoke deploy` as a subprocess (output streamed); add its rows; raise if it failed."""
    out.unlink(missing_ok=True)
    argv = invoke_argv("deploy", env_file, sets, "--sample-image", "--json-report", str(out))
    say(f"{label}: invoke deploy --env {env_file.name} ... --json-report {out.name}")
    proc = run(argv, cwd=REPO, timeout=DEPLOY_TIMEOUT, check=False, capture=False, what=f"{label}: invoke deploy")
    data = json.loads(out.read_text()) if out.exists() else {}
    report.add_deploy_report(label, data)
    if proc.returncode != 0:
        raise DeployError(f"{label}: invoke deploy exited {proc.returncode}; see its table above")
    if not data:
        raise DeployError(f"{label}: invoke deploy wrote no JSON report at {out}")
    modes = {r.get("k3s_mode", "none") for r in data.get("results", [])} - {"none"}
    if modes and modes != {report.k3s_mode}:
        raise DeployError(f"{label}: the phases report k3s mode {', '.join(sorted(modes))} but the lab "
                          f"staged {report.k3s_mode} artifacts")
    return data


def install_registry_client(ssh_config: Path, ip: str, reg: Any) -> None:
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
    env = {**_environ(), "GL_LAB_INVENTORY": str(inventory)}
    say("testinfra: pytest tests/lab ...")
    proc = run(argv, cwd=REPO, env=env, timeout=TESTINFRA_TIMEOUT, check=False, capture=False,
               what="testinfra")
    report.rows.extend(junit_rows(junit))
    if proc.returncode != 0:
        raise DeployError(f"testinfra verifiers failed (pytest exit {proc.returncode}); see above")


def junit_rows(junit: Path) -> list[Row]:
    """One row per test case of a JUnit XML file."""
    import xml.etree.ElementTree as ET
    if not junit.exists():
        return []
    rows = []
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


def _environ() -> dict[str, str]:
    import os
    return dict(os.environ)


def run_lab(lab_name: str, *, keep: bool = False, artifacts: str = "", box_name: str = "",
            download: bool = True, accel_override: str = "", boot_timeout: int = DEFAULT_BOOT_TIMEOUT) -> LabReport:
    """The whole lab run; always destroys the VMs (unless keep) and writes the report."""
    term_as_interrupt()  # a SIGTERM (CI timeout) unwinds like Ctrl-C: VMs destroyed, report written
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    lab = nodes.load(lab_name)
    loaded = settings_lib.load(lab.env_file)  # same GL_* environment the invoke children see
    work = state_dir(lab_name)
    report = LabReport(lab_name, "?", "", "?")
    registry = LabRegistry(work / "registry", host.PRIVATE_HOST_IP)
    ntp = SntpServer(host.PRIVATE_HOST_IP)
    vms: LabVMs | None = None
    with MemorySampler() as mem:
        try:
            with report.step("host set-up"):
                accel = host.setup(accel_override=accel_override)
            report.accel = "KVM" if accel.kvm else "TCG"
            report.extra["accel_reason"] = accel.reason
            with report.step("k3s artifacts"):
                source = k3s_source.choose(artifacts, loaded, allow_download=download)
            report.k3s_mode, report.k3s_reason = source.mode, source.reason
            banner = "REAL k3s" if source.mode == "real" else "k3s STAND-IN (not Kubernetes)"
            console.rule(f"lab {lab_name}: {banner} {loaded.k3s_version} | {report.accel}")
            console.print(f"k3s: {source.reason}; artifacts {source.directory}", markup=False)
            console.print(f"VMs: {accel.reason}", markup=False)
            name = box_name or boxlib.DEFAULT_BOX
            vms = LabVMs(lab, box=name, accel=accel, boot_timeout=boot_timeout)
            with report.step("destroy leftovers"):
                vms.destroy()
            mem.baseline = mem.peak = host_memory_used_mib()
            with report.step("box"):
                if name == boxlib.DEFAULT_BOX:
                    res = boxlib.ensure_box(name)
                    report.extra["box"] = {"name": name, "built": res.built, "size_mb": round(res.size_bytes / 1e6),
                                           "key": res.key, "seconds": round(res.seconds, 1)}
            with report.step("vagrant up"):
                vms.up()
            ssh_config = work / "ssh-config"
            with report.step("ssh ready"):
                vms.ready(ssh_config)
            with report.step("site route/DNS/NTP"):
                ntp.start()
                site.prepare(ssh_config, lab, host.PRIVATE_HOST_IP)
            with report.step("lab registry + sample image"):
                reg = registry.start()
                sets = overrides(ssh_config, source.directory, reg)
                # the reference the backend Deployment uses (REGISTRY/BACKEND_IMAGE:BACKEND_VERSION)
                deployed_ref = backend.image_ref(settings_lib.load(lab.env_file, overrides=sets))
                ref, digest = push_sample_image(reg, deployed_ref, loaded.backend_version, work / "image")
                for ip in lab.ips:
                    install_registry_client(ssh_config, ip, reg)
            with report.step("deploy (1st)"):
                run_deploy(report, "deploy 1", lab.env_file, sets, work / "deploy-1.json")
            with report.step("deploy (2nd, idempotency)"):
                second = run_deploy(report, "deploy 2", lab.env_file, sets, work / "deploy-2.json")
            report.extra["second_run_changed"] = [f"{r['phase']}@{r['host']}" for r in second["results"]
                                                  if r.get("changed")]
            with report.step("offline scripts"):
                offline.run_offline(report, lab, lab.env_file, sets, ssh_config, work / "offline")
            inventory = write_inventory(work, lab, ssh_config, source, reg, ref, digest, lab.env_file)
            with report.step("testinfra"):
                run_testinfra(report, lab, ssh_config, inventory, work)
            report.result = "pass"
        except KeyboardInterrupt:
            report.result, report.error = "interrupted", "interrupted by Ctrl-C"
        except DeployError as exc:
            report.result, report.error = "fail", str(exc)
            report.extra["exit_code"] = exc.exit_code
        finally:
            cleanup(report, [registry.stop, ntp.stop, lambda: close_ssh_masters(work / "ssh-config", lab)])
            if vms is not None and not keep:
                with report.step("destroy"):
                    cleanup(report, [vms.destroy])
            elif keep:
                say(f"--keep: VMs left running; ssh -F {work / 'ssh-config'} {lab.ips[0]}")
    report.extra["host_ram_peak_mib"] = mem.peak
    report.extra["host_ram_baseline_mib"] = mem.baseline
    path = report.write(REPORTS)
    report.print(console)
    console.print(f"report: {path}", markup=False)
    return report


def cleanup(report: LabReport, steps: list[Callable[[], object]]) -> None:
    """Run every cleanup step even when one fails; a failure fails the run (a VM may be left) but
    never hides the error that came first, and the report is still written."""
    for step in steps:
        try:
            step()
        except (DeployError, OSError, subprocess.SubprocessError) as exc:
            say(f"cleanup step failed: {exc}")
            report.extra.setdefault("cleanup_errors", []).append(str(exc))
            if report.result == "pass":
                report.result, report.error = "fail", f"cleanup failed: {exc}"


def close_ssh_masters(ssh_config: Path, lab: nodes.Lab) -> None:
    """End the OpenSSH ControlMaster processes the lab's ssh_config started."""
    if ssh_config.exists():
        for ip in lab.ips:
            subprocess.run(["ssh", "-F", str(ssh_config), "-O", "exit", ip], capture_output=True, timeout=30)


def write_inventory(work: Path, lab: nodes.Lab, ssh_config: Path, source: k3s_source.K3sSource, reg: Any,
                    ref: str, digest: str, env_file: Path) -> Path:
    """The JSON the testinfra verifiers read (GL_LAB_INVENTORY): nodes, mode, expectations."""
    path = work / "inventory.json"
    path.write_text(json.dumps({
        "lab": lab.name, "ssh_config": str(ssh_config), "env_file": str(env_file),
        "nodes": [{"name": n.name, "ip": n.ip, "role": n.role} for n in lab.nodes],
        "k3s_mode": source.mode, "k3s_dir": str(source.directory),
        "registry": {"address": reg.address, "image_ref": ref, "digest": digest},
        "deploy_reports": [str(work / "deploy-1.json"), str(work / "deploy-2.json")],
        "offline_dir": str(work / "offline"),
    }, indent=2) + "\n")
    return path
