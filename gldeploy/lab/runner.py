"""`invoke lab.run` and `invoke lab.up`: the lab as a list of named steps, each timed in the report.

LAB_STEPS takes a cached box to a verified lab; BRING_UP is the part `lab.up` runs (VMs up, SSH ready).
Both run through `run_steps`, so each step exists once."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from rich.console import Console

from gldeploy import backend
from gldeploy import settings as settings_lib
from gldeploy.errors import DeployError
from gldeploy.lab import airgap_steps, day2_steps, host, k3s_source, nodes, offline, site
from gldeploy.lab import box as boxlib
from gldeploy.lab.children import term_as_interrupt
from gldeploy.lab.ntp import SntpServer
from gldeploy.lab.proc import run, say
from gldeploy.lab.registry import LabRegistry, RegistryInfo, push_sample_image
from gldeploy.lab.report import LabReport, MemorySampler, host_memory_used_mib
from gldeploy.lab.vagrant import DEFAULT_BOOT_TIMEOUT, LabVMs
from gldeploy.lab.verify import install_registry_client, overrides, run_deploy, run_testinfra, write_inventory
from gldeploy.loadbalancer import LBConfig
from gldeploy.paths import CACHE_DIR, REPO

if TYPE_CHECKING:
    from gldeploy.lab.drill import Drill

REPORTS = REPO / "reports"
T = TypeVar("T")


def state_dir(lab: str) -> Path:
    """Per-lab scratch dir (gitignored): ssh_config, deploy JSON, registry, inventory."""
    path = CACHE_DIR / "lab" / lab
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@dataclass(frozen=True)
class Options:
    """What the operator asked for (the invoke flags, already checked)."""

    lab: str
    box: str = boxlib.DEFAULT_BOX
    accel: str = ""
    boot_timeout: int = DEFAULT_BOOT_TIMEOUT
    artifacts: str = ""
    download: bool = True
    standin: Path | None = None
    drill_rounds: int = 5  # cluster lab: trials per failover fault kind


@dataclass
class LabRun:
    """One lab run: the options, the report, and what each step made for the steps after it."""

    options: Options
    table: nodes.Lab
    report: LabReport
    work: Path
    console: Console
    accel: host.Accel | None = None
    source: k3s_source.K3sSource | None = None
    vms: LabVMs | None = None
    mem: MemorySampler | None = None
    registry: LabRegistry | None = None
    ntp: SntpServer | None = None
    reg: RegistryInfo | None = None
    sets: list[str] = field(default_factory=list)
    image: tuple[str, str] = ("", "")  # reference and manifest digest of the pushed sample image
    airgap: airgap_steps.State | None = None  # the air-gap lab's table, bundle and site files
    lb: LBConfig | None = None  # cluster lab: the API VIP as the deploy configures it
    ca_file: Path | None = None  # cluster lab: the cluster's server CA (verified probes of the VIP)
    offline_nodes: list[nodes.Node] = field(default_factory=list)
    drill: Drill | None = None

    @classmethod
    def start(cls, options: Options) -> LabRun:
        table = nodes.load(options.lab)
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
        return cls(options, table, LabReport(options.lab, "?", "", "?"), state_dir(options.lab), console)

    @property
    def ssh_config(self) -> Path:
        return self.work / "ssh-config"


def need(value: T | None, what: str) -> T:
    """A value an earlier step makes; a step run out of order is a programming error, said plainly."""
    if value is None:
        raise DeployError(f"lab step order: {what} is not there yet (the step making it did not run)")
    return value


def step_host_setup(r: LabRun) -> None:
    r.accel = host.setup(accel_override=r.options.accel)
    r.report.accel = "KVM" if r.accel.kvm else "TCG"
    r.report.extra["accel_reason"] = r.accel.reason


def step_k3s_artifacts(r: LabRun) -> None:
    loaded = settings_lib.load(r.table.env_file)  # same GL_* environment the invoke children see
    source = k3s_source.choose(r.options.artifacts, loaded, standin=r.options.standin,
                               allow_download=r.options.download)
    r.source = source
    r.report.k3s_mode, r.report.k3s_reason = source.mode, source.reason
    banner = "REAL k3s" if source.mode == "real" else "k3s STAND-IN (not Kubernetes)"
    r.console.rule(f"lab {r.options.lab}: {banner} {loaded.k3s_version} | {r.report.accel}")
    r.console.print(f"k3s: {source.reason}; artifacts {source.directory}", markup=False)
    r.console.print(f"VMs: {need(r.accel, 'the acceleration decision').reason}", markup=False)


def step_destroy_leftovers(r: LabRun) -> None:
    r.vms = LabVMs(r.table, box=r.options.box, accel=need(r.accel, "the acceleration decision"),
                   boot_timeout=r.options.boot_timeout)
    r.vms.destroy()  # leftovers of a killed run would make vagrant refuse the domain names
    if r.mem is not None:
        r.mem.baseline = r.mem.peak = host_memory_used_mib()


def step_box(r: LabRun) -> None:
    if r.options.box == boxlib.DEFAULT_BOX:
        res = boxlib.ensure_box(r.options.box)
        r.report.extra["box"] = {"name": res.name, "built": res.built, "size_mb": round(res.size_bytes / 1e6),
                                 "key": res.key, "seconds": round(res.seconds, 1)}


def step_vagrant_up(r: LabRun) -> None:
    need(r.vms, "the lab's VMs").up()


def step_ssh_ready(r: LabRun) -> None:
    need(r.vms, "the lab's VMs").ready(r.ssh_config)


def step_site(r: LabRun) -> None:
    r.ntp = SntpServer(host.PRIVATE_HOST_IP)
    r.ntp.start()
    site.prepare(r.ssh_config, r.table, host.PRIVATE_HOST_IP)


def step_registry(r: LabRun) -> None:
    source = need(r.source, "the k3s artifacts")
    r.registry = LabRegistry(r.work / "registry", host.PRIVATE_HOST_IP)
    r.reg = r.registry.start()
    r.sets = overrides(r.ssh_config, source.directory, r.reg)
    # the reference the backend Deployment uses (REGISTRY/BACKEND_IMAGE:BACKEND_VERSION)
    deployed = settings_lib.load(r.table.env_file, overrides=r.sets)
    r.image = push_sample_image(r.reg, backend.image_ref(deployed), deployed.backend_version, r.work / "image")
    for ip in r.table.ips:
        install_registry_client(r.ssh_config, ip, r.reg)


def step_deploy_1(r: LabRun) -> None:
    run_deploy(r.report, "deploy 1", r.table.env_file, r.sets, r.work / "deploy-1.json")


def step_deploy_2(r: LabRun) -> None:
    second = run_deploy(r.report, "deploy 2", r.table.env_file, r.sets, r.work / "deploy-2.json")
    r.report.extra["second_run_changed"] = [f"{x['phase']}@{x['host']}" for x in second["results"]
                                            if x.get("changed")]


def step_offline(r: LabRun) -> None:
    topology = offline.topology_of(settings_lib.load(r.table.env_file, overrides=r.sets).topology)
    offline.run_offline(r.report, r.table, r.table.env_file, r.sets, r.ssh_config, r.work / "offline", topology)


def step_testinfra(r: LabRun) -> None:
    inventory = write_inventory(r.work, r.table, r.ssh_config, need(r.source, "the k3s artifacts"),
                                need(r.reg, "the lab registry"), *r.image, r.table.env_file)
    run_testinfra(r.report, r.table, r.ssh_config, inventory, r.work)


Step = tuple[str, Callable[[LabRun], None]]
HOST_SETUP: Step = ("host set-up", step_host_setup)
BRING_UP: tuple[Step, ...] = (HOST_SETUP, ("destroy leftovers", step_destroy_leftovers), ("box", step_box),
                              ("vagrant up", step_vagrant_up), ("ssh ready", step_ssh_ready))
LAB_STEPS: tuple[Step, ...] = (
    HOST_SETUP, ("k3s artifacts", step_k3s_artifacts), *BRING_UP[1:],
    ("site route/DNS/NTP", step_site), ("lab registry + sample image", step_registry),
    ("deploy (1st)", step_deploy_1), ("deploy (2nd, idempotency)", step_deploy_2),
    ("offline scripts", step_offline), ("testinfra", step_testinfra))


# the air-gap lab (vagrant/labs/airgap.yml): bastion + node, no route out; steps in gldeploy/lab/airgap_steps.py
AIRGAP_STEPS: tuple[Step, ...] = (
    HOST_SETUP, ("air-gap network", airgap_steps.step_network), ("k3s artifacts", step_k3s_artifacts),
    ("wait for other labs", airgap_steps.step_wait_other_labs), ("box", airgap_steps.step_box),
    ("destroy leftovers", airgap_steps.step_destroy_leftovers), ("bundle build (host)", airgap_steps.step_bundle),
    ("vagrant up", step_vagrant_up), ("ssh ready", step_ssh_ready), ("air-gap routes", airgap_steps.step_routes),
    ("bundle copy + verify", airgap_steps.step_copy_verify), ("bastion install", airgap_steps.step_bastion),
    ("node install (offline scripts)", airgap_steps.step_node), ("testinfra (air-gap)", airgap_steps.step_testinfra))
# the day-2 lab (vagrant/labs/day2.yml, the single node): the single lab's bring-up and deploy; the host
# snapshot is taken once the site is prepared (route/DNS/NTP, registry client) and before any phase runs
DAY2_STEPS: tuple[Step, ...] = (
    HOST_SETUP, ("k3s artifacts", step_k3s_artifacts), *BRING_UP[1:],
    ("site route/DNS/NTP", step_site), ("lab registry + sample image", step_registry),
    ("host snapshot (before)", day2_steps.step_snapshot_before),
    ("deploy (1st)", step_deploy_1), ("deploy (2nd, idempotency)", step_deploy_2),
    ("doctor (healthy)", day2_steps.step_doctor_healthy), ("doctor fault drill", day2_steps.step_fault_drill),
    ("backup + restore", day2_steps.step_backup_restore), ("uninstall", day2_steps.step_uninstall),
    ("host snapshot (after)", day2_steps.step_snapshot_after))
STEPS_OF: dict[str, tuple[Step, ...]] = {"airgap": AIRGAP_STEPS, "day2": DAY2_STEPS}


def cluster_steps() -> tuple[Step, ...]:
    """LAB_STEPS of an HA lab: the same bring-up, then the cluster steps (gldeploy/lab/cluster_steps.py)."""
    from gldeploy.lab import cluster_steps as cs
    return (HOST_SETUP, ("k3s artifacts", step_k3s_artifacts), *BRING_UP[1:],
            ("site route/DNS/NTP", step_site), ("lab registry + sample image", step_registry),
            ("cluster secrets", cs.step_secrets), ("deploy (1st)", cs.step_deploy_1),
            ("deploy (2nd, idempotency)", cs.step_deploy_2), ("VIP answers", cs.step_vip),
            ("join timing", cs.step_join_timing), ("offline scripts (worker)", cs.step_offline),
            ("testinfra", cs.step_testinfra), ("failover drill", cs.step_failover),
            ("health-check rotation", cs.step_rotation), ("lb node reset", cs.step_lb_reset))


def steps_for(table: nodes.Lab) -> tuple[Step, ...]:
    """The lab's steps: a table with a VIP is an HA lab (cluster_steps), otherwise LAB_STEPS."""
    return cluster_steps() if table.vip else LAB_STEPS


def run_steps(r: LabRun, steps: tuple[Step, ...]) -> None:
    """Each step in order, timed under its name in the report (the time is kept when it raises)."""
    for name, action in steps:
        with r.report.step(name):
            action(r)


def bring_up(options: Options) -> LabRun:
    """`lab.up`: BRING_UP; on failure or Ctrl-C the lab's VMs are destroyed and the error goes on."""
    term_as_interrupt()
    r = LabRun.start(options)
    try:
        run_steps(r, BRING_UP)
    except (DeployError, KeyboardInterrupt):
        if r.vms is not None:
            say("bring-up failed: destroying the lab's VMs")
            r.vms.destroy()
        raise
    return r


def run_lab(options: Options, *, keep: bool = False) -> LabReport:
    """The whole lab run (LAB_STEPS); always destroys the VMs (unless keep) and writes the report."""
    term_as_interrupt()  # a SIGTERM (CI timeout) unwinds like Ctrl-C: VMs destroyed, report written
    r = LabRun.start(options)
    report = r.report
    with MemorySampler() as mem:
        r.mem = mem
        try:
            run_steps(r, STEPS_OF.get(options.lab) or steps_for(r.table))
            report.result = "pass"
        except KeyboardInterrupt:
            report.result, report.error = "interrupted", "interrupted by Ctrl-C"
        except DeployError as exc:
            report.result, report.error = "fail", str(exc)
            report.extra["exit_code"] = exc.exit_code
        finally:
            stops = [s.stop for s in (r.registry, r.ntp) if s is not None]
            cleanup(report, [*stops, lambda: close_ssh_masters(r.ssh_config, r.table)])
            if r.vms is not None and not keep:
                with report.step("destroy"):
                    cleanup(report, [r.vms.destroy])
            elif keep:
                say(f"--keep: VMs left running; ssh -F {r.ssh_config} {r.table.ips[0]}")
    report.extra["host_ram_peak_mib"] = mem.peak
    report.extra["host_ram_baseline_mib"] = mem.baseline
    path = report.write(REPORTS)
    report.print(r.console)
    r.console.print(f"report: {path}", markup=False)
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
            run(["ssh", "-F", str(ssh_config), "-O", "exit", ip], timeout=30, check=False,
                what=f"ssh -O exit {ip}")
