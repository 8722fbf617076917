"""Drive the lab's VMs with python-vagrant and write the ssh_config the product and testinfra use."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import vagrant as pyvagrant
from gldeploy.errors import DeployError
from gldeploy.lab import shared
from gldeploy.lab.children import Guard
from gldeploy.lab.host import VIRSH, Accel
from gldeploy.lab.nodes import Lab
from gldeploy.lab.proc import Timeout, run, say, ssh_argv, wait_for
from gldeploy.paths import VAGRANT_DIR

SSH_OPTIONS = ("IdentitiesOnly yes", "StrictHostKeyChecking no", "UserKnownHostsFile /dev/null",
               "LogLevel ERROR", "ControlMaster auto", "ControlPath /tmp/gl-lab-ssh-%C",
               "ControlPersist 120", "ConnectTimeout 20", "ServerAliveInterval 15")


DEFAULT_BOOT_TIMEOUT = shared.load().boot_timeout  # TCG, 2 cores: one VM boots in ~40 s, six in ~150 s
BOOT_TIMED_OUT = "Timed out while waiting for the machine to boot"
VAGRANT_QUERY_TIMEOUT = 120  # seconds for `vagrant status` / `vagrant ssh-config`
VAGRANT_DESTROY_TIMEOUT = 300  # seconds for `vagrant destroy` before virsh does it


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"  | ({path} not readable)"
    return "\n".join("  | " + ln.rstrip()[:200] for ln in text[-lines:] if ln.strip()) or "  | (empty)"


class LabVMs:
    """The VMs of one lab (vagrant/Vagrantfile with GL_LAB=<lab>)."""

    def __init__(self, lab: Lab, *, box: str, accel: Accel, boot_timeout: int = DEFAULT_BOOT_TIMEOUT) -> None:
        self.lab, self.box, self.boot_timeout = lab, box, boot_timeout
        self.prefix = shared.load().prefix(lab.name)  # libvirt domain and volume names
        env = dict(os.environ)
        env.update({"GL_LAB": lab.name, "GL_LAB_BOX": box, "GL_LAB_DRIVER": accel.driver,
                    "GL_LAB_BOOT_TIMEOUT": str(boot_timeout), "VAGRANT_DEFAULT_PROVIDER": "libvirt",
                    "VAGRANT_DOTFILE_PATH": str(VAGRANT_DIR / ".vagrant" / lab.name),
                    "VAGRANT_CHECKPOINT_DISABLE": "1"})
        self.env = env
        self.log = VAGRANT_DIR / ".vagrant" / f"{lab.name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        log_cm = pyvagrant.make_file_cm(str(self.log))  # type: ignore[no-untyped-call]
        self.v = pyvagrant.Vagrant(  # type: ignore[no-untyped-call]
            root=str(VAGRANT_DIR), env=env, out_cm=log_cm, err_cm=log_cm)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines vagrant wrote (stdout and stderr), for error messages."""
        return _tail(self.log, lines)

    def console_tails(self, lines: int = 5) -> str:
        """Where each node's serial console log is, and how far each boot got (its last lines)."""
        parts = []
        for name in self.lab.names:
            path = shared.load().console(self.lab.name, name)
            parts.append(f"Console of {name} ({path}), last lines:\n{_tail(path, lines)}")
        return "\n".join(parts)

    def up(self) -> float:
        """`vagrant up` every node, bounded by the boot timeout; returns seconds. DeployError on failure."""
        start = time.monotonic()
        say(f"vagrant up {' '.join(self.lab.names)} (provider libvirt; at most {self.boot_timeout} s; "
            f"log {self.log}) ...")
        self.log.write_text("")
        watchdog = Guard(self.boot_timeout)
        try:
            with watchdog:
                self.v.up(provider="libvirt")  # type: ignore[no-untyped-call]
        except subprocess.CalledProcessError as exc:
            from gldeploy.lab.box import box_listed
            if not box_listed(self.box):  # before the boot bound: a slow download is no boot failure
                raise DeployError(f"box {self.box} is not added to Vagrant and could not be downloaded"
                                  f"{' within the bound' if watchdog.fired else ''}; run `invoke box.build` "
                                  f"or `vagrant box add {self.box} <file|url>`") from None
            if watchdog.fired:
                raise DeployError(f"lab {self.lab.name}: the VMs did not boot and answer SSH within the boot "
                                  f"timeout of {self.boot_timeout} s; raise it with --boot-timeout or "
                                  f"GL_LAB_BOOT_TIMEOUT (TCG is slow). {self.console_tails()}") from None
            if BOOT_TIMED_OUT in self.log.read_text(errors="replace"):
                raise DeployError(f"a VM of lab {self.lab.name} booted but did not answer SSH within "
                                  f"{self.boot_timeout} s (Vagrant's boot_timeout); raise it with "
                                  f"--boot-timeout. {self.console_tails()}") from None
            raise DeployError(f"vagrant up failed for lab {self.lab.name} (exit {exc.returncode}); the end "
                              f"of {self.log}:\n{self.log_tail()}") from None
        return time.monotonic() - start

    def running(self) -> list[str]:
        """Names of nodes vagrant knows as created (any state but not_created)."""
        try:
            with Guard(VAGRANT_QUERY_TIMEOUT):
                states = self.v.status()  # type: ignore[no-untyped-call]
            return [s.name for s in states if s.state != pyvagrant.Vagrant.NOT_CREATED]
        except subprocess.CalledProcessError:
            return []

    def destroy(self) -> float:
        """Destroy every VM of the lab (vagrant's view, then libvirt leftovers by prefix)."""
        start = time.monotonic()
        try:
            if self.running():
                with Guard(VAGRANT_DESTROY_TIMEOUT):
                    self.v.destroy()  # type: ignore[no-untyped-call]
        except subprocess.CalledProcessError as exc:
            say(f"vagrant destroy failed or timed out (exit {exc.returncode}); removing domains with virsh")
        self.destroy_leftovers()
        return time.monotonic() - start

    def destroy_leftovers(self) -> list[str]:
        """Remove libvirt domains and volumes named gl-lab-<lab>-* that vagrant lost track of."""
        prefix = self.prefix
        out = run([*VIRSH, "list", "--all", "--name"], timeout=60, what="virsh list").stdout.split()
        removed = []
        for dom in (d for d in out if d.startswith(prefix)):
            run([*VIRSH, "destroy", dom], timeout=60, check=False, what="virsh destroy")
            run([*VIRSH, "undefine", dom, "--remove-all-storage", "--nvram"], timeout=120, check=False,
                what="virsh undefine")
            removed.append(dom)
        vols = run([*VIRSH, "vol-list", "default"], timeout=60, check=False, what="virsh vol-list").stdout
        for line in vols.splitlines():
            parts = line.split()
            if parts and parts[0].startswith(prefix):
                run([*VIRSH, "vol-delete", parts[0], "--pool", "default"], timeout=60, check=False,
                    what="virsh vol-delete")
                removed.append(parts[0])
        if removed:
            say(f"removed leftovers: {', '.join(removed)}")
        return removed

    def ready(self, ssh_config: Path) -> Path:
        """After `up`: write the ssh_config, wait (bounded) for SSH on every node, set host names."""
        self.write_ssh_config(ssh_config)
        for ip in self.lab.ips:
            wait_ssh(ssh_config, ip)
        set_hostnames(ssh_config, self.lab)
        return ssh_config

    def ssh_params(self, name: str) -> dict[str, str]:
        """HostName, Port, User, IdentityFile from `vagrant ssh-config NAME`."""
        try:
            with Guard(VAGRANT_QUERY_TIMEOUT):
                text = self.v.ssh_config(vm_name=name)  # type: ignore[no-untyped-call]
        except subprocess.CalledProcessError:
            raise DeployError(f"vagrant ssh-config {name} failed; is the VM running?") from None
        params: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and parts[0] in ("HostName", "Port", "User", "IdentityFile"):
                params[parts[0]] = parts[1].strip('"')
        if "HostName" not in params:
            raise DeployError(f"vagrant ssh-config {name} gave no HostName")
        return params

    def write_ssh_config(self, dest: Path) -> Path:
        """ssh_config with one Host block per node, keyed by its private IP (and its name)."""
        blocks = []
        for node in self.lab.nodes:
            p = self.ssh_params(node.name)
            lines = [f"Host {node.ip} {node.name}", f"  HostName {p['HostName']}",
                     f"  Port {p.get('Port', '22')}", "  User vagrant",
                     f"  IdentityFile {p.get('IdentityFile', '')}"]
            blocks.append("\n".join(lines + [f"  {o}" for o in SSH_OPTIONS]))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("# written by `invoke lab.up`; hosts keyed by their lab private IP\n"
                        + "\n\n".join(blocks) + "\n")
        dest.chmod(0o600)
        return dest


def ssh(ssh_config: Path, host: str, argv: list[str], *, timeout: float = 300,
        input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run argv on a lab host over plain OpenSSH (joined with shlex.join for the remote shell)."""
    return run(ssh_argv(ssh_config, host, argv), timeout=timeout, input_text=input_text, check=check,
               what=f"ssh {host} {argv[0]}")


def wait_ssh(ssh_config: Path, host: str, timeout: float = 300) -> float:
    """Bounded wait until `ssh host true` works."""
    def answers() -> bool:
        try:
            return run(ssh_argv(ssh_config, host, ["true"], "-o", "ConnectTimeout=5"), timeout=60,
                       check=False, what=f"ssh {host} true").returncode == 0
        except Timeout:
            return False
    return wait_for(answers, timeout=timeout, interval=2, what=f"SSH on {host}")


# $1 is the host name; /etc/hosts is rewritten without sed, so no character of it is a pattern
HOSTNAME_SCRIPT = r"""set -euo pipefail
printf '%s\n' "$1" >/etc/hostname
hostname "$1"
{ grep -v '^127\.0\.1\.1[[:space:]]' /etc/hosts || true; printf '127.0.1.1 %s\n' "$1"; } >/etc/hosts.gl-lab
cat /etc/hosts.gl-lab >/etc/hosts
rm -f /etc/hosts.gl-lab
"""


def hostname_argv(name: str) -> list[str]:
    """Root command giving a VM its table name as host name (the name is an argument, not code)."""
    return ["sudo", "bash", "-c", HOSTNAME_SCRIPT, "gl-lab-hostname", name]


def set_hostnames(ssh_config: Path, lab: Lab) -> None:
    """Give each VM its table name as host name (cheaper than Vagrant's config.vm.hostname)."""
    for node in lab.nodes:
        ssh(ssh_config, node.ip, hostname_argv(node.name), timeout=60)
