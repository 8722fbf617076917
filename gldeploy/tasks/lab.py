"""invoke tasks of the VM lab: `lab.host-setup`, `lab.up`, `lab.run`, `lab.destroy`."""
from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context

from gldeploy.errors import DeployError, guarded
from gldeploy.lab import box as boxlib
from gldeploy.lab import host, nodes
from gldeploy.lab.vagrant import DEFAULT_BOOT_TIMEOUT, LabVMs
from gldeploy.paths import REPO
from gldeploy.settings import lab_options
from gldeploy.tasks import gl_task

LAB_HELP = "Lab name: a node table vagrant/labs/<lab>.yml (default single)"
BOX_HELP = "Vagrant box (default: $GL_LAB_BOX or gldeploy/debian12, built locally by box.build)"
ACCEL_HELP = "kvm or tcg to override KVM detection (default: $GL_LAB_ACCEL or detected)"
# the k3s stand-in lives with the tests; the lab is given its path, it never imports test code
STANDIN = REPO / "tests" / "fixtures" / "k3s_standin" / "k3s"
STANDIN_HELP = ("k3s stand-in executable for `k3s stand-in` mode, used when neither --artifacts nor the "
                f"pinned download gives real k3s (default: {STANDIN.relative_to(REPO)})")
BOOT_HELP = (f"Seconds `vagrant up` may take for all the lab's VMs to boot and answer SSH (default: "
             f"$GL_LAB_BOOT_TIMEOUT or {DEFAULT_BOOT_TIMEOUT})")


def _box(box: str) -> str:
    return box or lab_options().box or boxlib.DEFAULT_BOX


def _accel(accel: str) -> str:
    value = accel or lab_options().accel
    if value not in ("", "kvm", "tcg"):
        raise DeployError(f"--accel {value!r}: expected kvm or tcg", exit_code=2)
    return value


def _boot_timeout(value: str, lab: str = "single") -> int:
    """--boot-timeout, else GL_LAB_BOOT_TIMEOUT, else the lab table's boot_timeout, else lab.yml's."""
    raw = value or lab_options().boot_timeout or str(nodes.load(lab).boot_timeout or DEFAULT_BOOT_TIMEOUT)
    if not raw.isdigit() or int(raw) < 1:
        raise DeployError(f"boot timeout {raw!r} (--boot-timeout or GL_LAB_BOOT_TIMEOUT): expected a whole "
                          f"number of seconds, e.g. {DEFAULT_BOOT_TIMEOUT}", exit_code=2)
    return int(raw)


@gl_task(name="host-setup", help={"no_install": "Do not apt-get install missing packages, only check",
                               "accel": ACCEL_HELP})
@guarded
def host_setup(c: Context, no_install: bool = False, accel: str = "") -> None:
    """Install lab packages, start libvirt (no systemd needed), define pool and networks, probe KVM."""
    result = host.setup(install=not no_install, accel_override=_accel(accel))
    print(f"libvirt ready (qemu:///system), pool default, networks {host.MGMT_NET} + {host.PRIVATE_NET}; "
          f"{result.reason}")


@gl_task(help={"lab": LAB_HELP, "box": BOX_HELP, "accel": ACCEL_HELP, "boot_timeout": BOOT_HELP})
@guarded
def up(c: Context, lab: str = "single", box: str = "", accel: str = "", boot_timeout: str = "") -> None:
    """Bring a lab's VMs up and write its ssh_config (hosts keyed by private IP); no phases run."""
    from gldeploy.lab.runner import Options, bring_up
    nodes.load(lab)  # a bad lab name is bad input before anything starts
    r = bring_up(Options(lab, box=_box(box), accel=_accel(accel), boot_timeout=_boot_timeout(boot_timeout, lab)))
    driver = r.accel.driver if r.accel else "?"
    print(f"lab {lab} up in {r.report.steps.get('vagrant up', 0):.0f} s ({driver}); "
          f"ssh -F {r.ssh_config} {r.table.ips[0]}")


@gl_task(help={"lab": LAB_HELP, "keep": "Leave the VMs running afterwards (default: destroy them)",
            "artifacts": "Directory laid out like a k3s release (real k3s, or a stand-in release)",
            "box": BOX_HELP, "no_download": "Do not try the pinned k3s download (use the stand-in)",
            "accel": ACCEL_HELP, "boot_timeout": BOOT_HELP, "standin": STANDIN_HELP,
            "drill_rounds": "HA labs: failover trials per fault kind (default 5; at least 1)"})
@guarded
def run(c: Context, lab: str = "single", keep: bool = False, artifacts: str = "", box: str = "",
        no_download: bool = False, accel: str = "", boot_timeout: str = "", standin: str = "",
        drill_rounds: str = "5") -> None:
    """Lab end to end: VMs up, deploy twice, offline scripts, testinfra (HA: failover drill), report, destroy."""
    from gldeploy.lab.runner import Options, run_lab
    if not drill_rounds.isdigit() or int(drill_rounds) < 1:
        raise DeployError(f"--drill-rounds {drill_rounds!r}: expected a whole number >= 1, e.g. 5", exit_code=2)
    options = Options(lab, box=_box(box), accel=_accel(accel), boot_timeout=_boot_timeout(boot_timeout, lab),
                      artifacts=artifacts, download=not no_download,
                      standin=Path(standin).expanduser().resolve() if standin else STANDIN,
                      drill_rounds=int(drill_rounds))
    report = run_lab(options, keep=keep)
    if report.result == "interrupted":
        raise KeyboardInterrupt
    if report.result != "pass":
        raise DeployError(f"lab {lab} failed: {report.error}", exit_code=report.extra.get("exit_code", 1))


@gl_task(help={"lab": LAB_HELP})
@guarded
def destroy(c: Context, lab: str = "single") -> None:
    """Destroy a lab's VMs (and libvirt leftovers named gl-lab-<lab>-*); networks are kept."""
    table = nodes.load(lab)
    host.start_daemons()
    took = LabVMs(table, box=_box(""), accel=host.detect_accel()).destroy()
    print(f"lab {lab} destroyed in {took:.1f} s")


ns = Collection("lab")
for _task in (host_setup, up, run, destroy):
    ns.add_task(_task)
