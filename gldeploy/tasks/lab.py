"""invoke tasks of the VM lab: `lab.host-setup`, `lab.up`, `lab.run`, `lab.destroy`."""
from __future__ import annotations

from invoke import Collection, Context, task

from gldeploy.errors import DeployError, guarded
from gldeploy.settings import lab_options
from gldeploy.lab import box as boxlib
from gldeploy.lab import host, nodes
from gldeploy.lab.proc import say
from gldeploy.lab.children import term_as_interrupt
from gldeploy.lab.vagrant import DEFAULT_BOOT_TIMEOUT, LabVMs

LAB_HELP = "Lab name: a node table vagrant/labs/<lab>.yml (default single)"
BOX_HELP = "Vagrant box (default: $GL_LAB_BOX or gldeploy/debian12, built locally by box.build)"
ACCEL_HELP = "kvm or tcg to override KVM detection (default: $GL_LAB_ACCEL or detected)"
BOOT_HELP = (f"Seconds `vagrant up` may take for all the lab's VMs to boot and answer SSH (default: "
             f"$GL_LAB_BOOT_TIMEOUT or {DEFAULT_BOOT_TIMEOUT})")


def _box(box: str) -> str:
    return box or lab_options().box or boxlib.DEFAULT_BOX


def _accel(accel: str) -> str:
    value = accel or lab_options().accel
    if value not in ("", "kvm", "tcg"):
        raise DeployError(f"--accel {value!r}: expected kvm or tcg", exit_code=2)
    return value


def _boot_timeout(value: str) -> int:
    raw = value or lab_options().boot_timeout or str(DEFAULT_BOOT_TIMEOUT)
    if not raw.isdigit() or int(raw) < 1:
        raise DeployError(f"boot timeout {raw!r} (--boot-timeout or GL_LAB_BOOT_TIMEOUT): expected a whole "
                          f"number of seconds, e.g. {DEFAULT_BOOT_TIMEOUT}", exit_code=2)
    return int(raw)


@task(name="host-setup", help={"no_install": "Do not apt-get install missing packages, only check",
                               "accel": ACCEL_HELP})
@guarded
def host_setup(c: Context, no_install: bool = False, accel: str = "") -> None:
    """Install lab packages, start libvirt (no systemd needed), define pool and networks, probe KVM."""
    result = host.setup(install=not no_install, accel_override=_accel(accel))
    print(f"libvirt ready (qemu:///system), pool default, networks {host.MGMT_NET} + {host.PRIVATE_NET}; "
          f"{result.reason}")


@task(help={"lab": LAB_HELP, "box": BOX_HELP, "accel": ACCEL_HELP, "boot_timeout": BOOT_HELP})
@guarded
def up(c: Context, lab: str = "single", box: str = "", accel: str = "", boot_timeout: str = "") -> None:
    """Bring a lab's VMs up and write its ssh_config (hosts keyed by private IP); no phases run."""
    from gldeploy.lab.runner import state_dir
    table = nodes.load(lab)
    timeout = _boot_timeout(boot_timeout)
    term_as_interrupt()
    detected = host.setup(accel_override=_accel(accel))
    name = _box(box)
    if name == boxlib.DEFAULT_BOX:
        boxlib.ensure_box(name)
    vms = LabVMs(table, box=name, accel=detected, boot_timeout=timeout)
    vms.destroy()  # leftovers of a killed run would make vagrant refuse the domain names
    try:
        took = vms.up()
        cfg = vms.ready(state_dir(lab) / "ssh-config")
    except (DeployError, KeyboardInterrupt):
        say("bring-up failed: destroying the lab's VMs")
        vms.destroy()
        raise
    print(f"lab {lab} up in {took:.0f} s ({detected.driver}); ssh -F {cfg} {table.ips[0]}")


@task(help={"lab": LAB_HELP, "keep": "Leave the VMs running afterwards (default: destroy them)",
            "artifacts": "Directory laid out like a k3s release (real k3s, or a stand-in release)",
            "box": BOX_HELP, "no_download": "Do not try the pinned k3s download (use the stand-in)",
            "accel": ACCEL_HELP, "boot_timeout": BOOT_HELP})
@guarded
def run(c: Context, lab: str = "single", keep: bool = False, artifacts: str = "", box: str = "",
        no_download: bool = False, accel: str = "", boot_timeout: str = "") -> None:
    """Lab end to end: VMs up, deploy twice, offline scripts, testinfra, report, destroy."""
    from gldeploy.lab.runner import run_lab
    report = run_lab(lab, keep=keep, artifacts=artifacts, box_name=_box(box), download=not no_download,
                     accel_override=_accel(accel), boot_timeout=_boot_timeout(boot_timeout))
    if report.result == "interrupted":
        raise KeyboardInterrupt
    if report.result != "pass":
        raise DeployError(f"lab {lab} failed: {report.error}", exit_code=report.extra.get("exit_code", 1))


@task(help={"lab": LAB_HELP})
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
