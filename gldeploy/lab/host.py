"""Prepare this machine for the VM lab: packages, libvirt daemons (no systemd needed), pool, networks,
and an honest answer to "does KVM work here, or do we run TCG?"."""
from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gldeploy.errors import DeployError
from gldeploy.lab import shared
from gldeploy.lab.proc import have, run, say, wait_for
from gldeploy.lab.shared import Network

PACKAGES = ["vagrant", "vagrant-libvirt", "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86",
            "qemu-utils", "dnsmasq-base", "mmdebstrap", "syslinux", "syslinux-common", "mtools",
            "dosfstools", "fdisk", "e2fsprogs", "docker-registry", "apache2-utils", "openssl",
            "openssh-client", "skopeo"]
VIRSH = ["virsh", "-c", "qemu:///system"]
RUN_DIR = Path("/run/libvirt")
VIRTLOGD_SOCK = RUN_DIR / "virtlogd-sock"
PIDFILES = {"virtlogd": Path("/run/gl-lab-virtlogd.pid"), "libvirtd": Path("/run/gl-lab-libvirtd.pid")}
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
POOL_DIR = Path("/var/lib/libvirt/images")  # the `default` storage pool
SHARED = shared.load()
MGMT_NET = SHARED.mgmt.name
PRIVATE_NET = SHARED.private.name
PRIVATE_HOST_IP = SHARED.private.host_ip


def mgmt_xml(net: Network = SHARED.mgmt) -> str:
    """libvirt XML of the management network: DHCP for Vagrant, no DNS forwarding, no route out."""
    first, last = net.cidr.network_address + 10, net.cidr.broadcast_address - 5
    return f"""<network>
  <name>{net.name}</name>
  <bridge name='{net.bridge}' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='{net.host_ip}' netmask='{net.cidr.netmask}'>
    <dhcp><range start='{first}' end='{last}'/></dhcp>
  </ip>
</network>"""


def private_xml(net: Network = SHARED.private) -> str:
    """libvirt XML of the isolated private network (no <forward>: no route anywhere)."""
    domain = f"\n  <domain name='{net.domain}' localOnly='yes'/>" if net.domain else ""
    return f"""<network>
  <name>{net.name}</name>
  <bridge name='{net.bridge}' stp='on' delay='0'/>{domain}
  <ip address='{net.host_ip}' netmask='{net.cidr.netmask}'/>
</network>"""


@dataclass(frozen=True)
class Accel:
    """How the lab's VMs will be run: driver kvm (with host CPU) or qemu (TCG, cpu_model qemu64)."""

    kvm: bool
    reason: str

    @property
    def driver(self) -> str:
        return "kvm" if self.kvm else "qemu"


def decide_accel(*, dev_kvm: bool, dev_usable: bool, cpu_flags: set[str], modules: set[str],
                 override: str = "") -> Accel:
    """Pure decision: is KVM really usable? (kvm_pvm passes the ioctls but cannot boot stock kernels.)"""
    if override == "tcg":
        return Accel(False, "TCG forced by GL_LAB_ACCEL=tcg")
    reasons = []
    if not dev_kvm:
        reasons.append("/dev/kvm does not exist (no KVM module or not exposed to this machine)")
    elif not dev_usable:
        reasons.append("/dev/kvm cannot be opened read-write by this user")
    if "kvm_pvm" in modules:
        reasons.append("KVM here is kvm_pvm (paravirtualised), which cannot boot stock guest kernels")
    elif not cpu_flags & {"vmx", "svm"}:
        reasons.append("the CPU shows no vmx/svm virtualisation flag")
    if override == "kvm":
        return Accel(True, "KVM forced by GL_LAB_ACCEL=kvm" + (f" (despite: {reasons[0]})" if reasons else ""))
    if reasons:
        return Accel(False, f"using TCG (slow software emulation): {reasons[0]}")
    return Accel(True, "KVM available (hardware virtualisation)")


def detect_accel(override: str = "") -> Accel:
    """Probe this machine and decide between KVM and TCG."""
    dev = Path("/dev/kvm")
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    modules = {p.name for p in Path("/sys/module").glob("kvm*")} if Path("/sys/module").exists() else set()
    return decide_accel(dev_kvm=dev.exists(), dev_usable=dev.exists() and os.access(dev, os.R_OK | os.W_OK),
                        cpu_flags=flags, modules=modules, override=override)


def missing_packages(names: list[str] = PACKAGES) -> list[str]:
    """Packages from `names` that dpkg does not show as installed."""
    out = run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *names], timeout=60, check=False,
              what="dpkg-query").stdout
    ok = {ln.split()[0] for ln in out.splitlines() if ln.endswith("install ok installed")}
    return [n for n in names if n not in ok]


def install_packages() -> list[str]:
    """apt-get install whatever the lab needs and is missing; returns what was installed."""
    missing = missing_packages()
    if not missing:
        return []
    if os.geteuid() != 0:
        raise DeployError(f"packages missing ({', '.join(missing)}) and not root; run as root or "
                          f"apt-get install them")
    say(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], timeout=600, env=env, what="apt-get update")
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout=1200, env=env,
        what="apt-get install")
    return missing


def configure_qemu_root() -> bool:
    """Make libvirt run QEMU as root (avoids a ~48 s re-probe per define without udev). True if changed."""
    text = QEMU_CONF.read_text() if QEMU_CONF.exists() else ""
    if re.search(r'^user\s*=\s*"root"', text, re.M) and re.search(r'^group\s*=\s*"root"', text, re.M):
        return False
    text = re.sub(r'^(user|group)\s*=.*\n', "", text, flags=re.M)
    QEMU_CONF.write_text(text + '\n# GL-Native lab: QEMU as root (no udev to fix /dev/kvm perms)\n'
                         'user = "root"\ngroup = "root"\n')
    return True


def libvirt_answers() -> bool:
    """True when `virsh -c qemu:///system version` succeeds."""
    try:
        return run([*VIRSH, "version"], timeout=30, check=False, what="virsh version").returncode == 0
    except DeployError:  # not installed, or hanging: either way libvirt does not answer
        return False


def pid_alive(pidfile: Path, comm: str = "") -> bool:
    """True when the pidfile names a live process named `comm` (default: the pidfile's name without
    gl-lab-): a PID reused by another program does not count."""
    try:
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, not yet reaped by its parent
        return Path(f"/proc/{pid}/comm").read_text().strip() == (comm or pidfile.stem.removeprefix("gl-lab-"))
    except (OSError, ValueError):
        return False


def socket_answers(path: Path) -> bool:
    """True when a unix socket accepts a connection (a file left by a killed daemon does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def start_daemons(restart_libvirtd: bool = False) -> None:
    """Start virtlogd and libvirtd by hand when not running (systemd is not PID 1 here)."""
    for d in (RUN_DIR, Path("/var/log/libvirt"), POOL_DIR):
        d.mkdir(parents=True, exist_ok=True)
    if restart_libvirtd and pid_alive(PIDFILES["libvirtd"]):
        say("restarting libvirtd (qemu.conf changed)")
        stop_daemons(only=("libvirtd",))
    elif restart_libvirtd and libvirt_answers():
        raise DeployError("qemu.conf was changed but libvirtd was started by someone else; restart "
                          "libvirtd so QEMU runs as root")
    if not socket_answers(VIRTLOGD_SOCK):
        say("starting virtlogd")
        VIRTLOGD_SOCK.unlink(missing_ok=True)  # left behind when a previous virtlogd was killed
        run(["virtlogd", "-d", "-p", str(PIDFILES["virtlogd"])], what="virtlogd")
        wait_for(lambda: socket_answers(VIRTLOGD_SOCK), timeout=30, interval=0.2,
                 what=f"virtlogd to answer on {VIRTLOGD_SOCK}")
    if not libvirt_answers():
        say("starting libvirtd")
        run(["libvirtd", "-d", "-p", str(PIDFILES["libvirtd"])], what="libvirtd")
        took = wait_for(libvirt_answers, timeout=60, interval=0.5, what="libvirtd to answer "
                        "`virsh -c qemu:///system version`")
        say(f"libvirtd answers after {took:.1f} s")


def _gone(pidfile: Path) -> bool:
    return not pid_alive(pidfile)


def stop_daemons(only: tuple[str, ...] = ("libvirtd", "virtlogd")) -> None:
    """Stop the daemons this module started, by the PIDs in its pidfiles only."""
    for name in only:
        pidfile = PIDFILES[name]
        if pid_alive(pidfile):
            pid = int(pidfile.read_text().strip())
            os.kill(pid, 15)
            wait_for(functools.partial(_gone, pidfile), timeout=30, what=f"{name} (pid {pid}) to stop")
        pidfile.unlink(missing_ok=True)


def _virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([*VIRSH, *args], timeout=120, check=check, what=f"virsh {args[0]}")


def ensure_pool() -> None:
    """Define, build and start the `default` dir storage pool at /var/lib/libvirt/images."""
    if _virsh("pool-info", "default", check=False).returncode != 0:
        _virsh("pool-define-as", "default", "dir", "--target", str(POOL_DIR))
    info = _virsh("pool-info", "default").stdout
    if not re.search(r"State:\s+running", info):
        _virsh("pool-start", "default")
    _virsh("pool-autostart", "default")


def ensure_network(name: str, xml: str) -> None:
    """Define (from `xml`) and start a libvirt network; redefine it when `xml` changed since."""
    stamp = Path("/var/lib/libvirt") / f"gl-lab-{name}.sha256"
    digest = hashlib.sha256(xml.encode()).hexdigest()
    exists = _virsh("net-info", name, check=False).returncode == 0
    if exists and (not stamp.exists() or stamp.read_text().strip() != digest):
        say(f"network {name} differs from the lab's definition: redefining it")
        _virsh("net-destroy", name, check=False)
        _virsh("net-undefine", name)
        exists = False
    if not exists:
        path = RUN_DIR / f"{name}.xml"
        path.write_text(xml)
        _virsh("net-define", str(path))
        stamp.write_text(digest + "\n")
    if not re.search(r"Active:\s+yes", _virsh("net-info", name).stdout):
        _virsh("net-start", name)


def setup(*, install: bool = True, accel_override: str = "") -> Accel:
    """Everything the lab needs on this host; returns the acceleration decision (kvm/tcg override)."""
    if install:
        install_packages()
    for tool in ("virsh", "libvirtd", "vagrant", "qemu-system-x86_64"):
        if not have(tool):
            raise DeployError(f"{tool} is not installed; run `invoke lab.host-setup` as root")
    changed = configure_qemu_root()
    start_daemons(restart_libvirtd=changed)
    ensure_pool()
    ensure_network(MGMT_NET, mgmt_xml())
    ensure_network(PRIVATE_NET, private_xml())
    plugins = run(["vagrant", "plugin", "list"], timeout=120, what="vagrant plugin list").stdout
    if "vagrant-libvirt" not in plugins:
        raise DeployError("the vagrant-libvirt plugin is missing; apt-get install vagrant-libvirt")
    return detect_accel(accel_override)
