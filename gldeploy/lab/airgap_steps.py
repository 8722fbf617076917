"""The air-gap lab's steps (runner.AIRGAP_STEPS), each timed under its name in the lab report.
What they do to the VMs and the host is in gldeploy/lab/airgap.py."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gldeploy import settings as settings_lib
from gldeploy.errors import DeployError
from gldeploy.lab import airgap, offline, shared
from gldeploy.lab.proc import invoke_argv, run, say
from gldeploy.lab.vagrant import LabVMs, ssh
from gldeploy.lab.verify import junit_rows
from gldeploy.paths import REPO

if TYPE_CHECKING:
    from gldeploy.lab.runner import LabRun

INCOMING = "/tmp/gl-incoming"
SITE_TASK = "site.deploy"
REGISTRY_PORT = 5000
TESTINFRA_TIMEOUT = 900


@dataclass
class State:
    """What the air-gap steps make for the steps after them."""

    table: airgap.AirgapTable
    bundle_dir: Path | None = None
    parts: list[Path] = field(default_factory=list)
    secrets_dir: Path | None = None
    ca: Path | None = None
    password_file: Path | None = None
    sets: list[str] = field(default_factory=list)


def state(r: LabRun) -> State:
    if r.airgap is None:
        raise DeployError("lab step order: the air-gap network step did not run")
    return r.airgap


def step_network(r: LabRun) -> None:
    table = airgap.load(r.options.lab)
    r.airgap = State(table)
    airgap.ensure_network(table.network)


def step_wait_other_labs(r: LabRun) -> None:
    waited = airgap.wait_for_other_labs(shared.load().prefix(r.options.lab))
    r.report.extra["waited_for_other_labs_s"] = round(waited)


def step_box(r: LabRun) -> None:
    """Use the box Vagrant has (other labs on this machine share it and may run from it: never
    rebuild or replace it under them); build it only when none is added."""
    from gldeploy.lab import box as boxlib
    if boxlib.box_listed(r.options.box):
        r.report.extra["box"] = {"name": r.options.box, "built": False,
                                 "key": boxlib.installed_key(r.options.box) or "?"}
        return
    res = boxlib.ensure_box(r.options.box)
    r.report.extra["box"] = {"name": res.name, "built": res.built, "key": res.key, "seconds": round(res.seconds, 1)}


def step_destroy_leftovers(r: LabRun) -> None:
    if r.accel is None:
        raise DeployError("lab step order: host set-up did not run")
    r.vms = LabVMs(state(r).table.vms, box=r.options.box, accel=r.accel, boot_timeout=r.options.boot_timeout)
    r.vms.destroy()
    if r.mem is not None:
        from gldeploy.lab.report import host_memory_used_mib
        r.mem.baseline = r.mem.peak = host_memory_used_mib()


def step_bundle(r: LabRun) -> None:
    """On the host: the box's dpkg status, a site CA and registry password, `invoke bundle.build`."""
    st, source = state(r), r.source
    if source is None:
        raise DeployError("lab step order: the k3s artifacts step did not run")
    status = airgap.box_dpkg_status(airgap.box_image(r.options.box), r.work / "box.status")
    ca_dir = r.work / "site-ca"
    site_sets = [f"SITE_CA_DIR={ca_dir}", f"BASTION_IP={st.table.bastion.ip}"]
    run(invoke_argv("ca.init", st.table.lab.env_file, site_sets), cwd=REPO, timeout=300, capture=False,
        what="invoke ca.init")
    st.ca = ca_dir / "ca.crt"
    st.password_file = airgap.new_password(r.work / "registry-password")
    k3s_dir = source.directory
    if source.mode == "standin" and not list(k3s_dir.glob("k3s-airgap-images-*")):
        k3s_dir = airgap.standin_with_images(k3s_dir, r.work / "k3s-standin-airgap")
    st.sets = [f"K3S_ARTIFACTS_DIR={k3s_dir}", f"REGISTRY_PASSWORD_FILE={st.password_file}",
               f"REGISTRY_CA_FILE={st.ca}", "MIN_CPU=1", "MIN_MEMORY_MB=512", "MIN_DISK_GB=2", *site_sets]
    out = r.work / "bundle"
    argv = invoke_argv("bundle.build", st.table.lab.env_file, st.sets, "--out", str(out), "--sample-image",
                       "--os-status", str(status))
    say("bundle: invoke bundle.build --os-status <box dpkg status> ...")
    run(argv, cwd=REPO, timeout=1800, capture=False, what="invoke bundle.build")
    name = f"gl-bundle-{settings_lib.load(st.table.lab.env_file, overrides=st.sets).topology}-amd64"
    st.bundle_dir, st.secrets_dir = out / name, out / f"{name}.secrets"
    parts_file = out / f"{name}.PARTS.sha256"
    st.parts = [parts_file, *(out / ln.split()[-1] for ln in parts_file.read_text().splitlines() if ln.strip())]
    debs = sorted((st.bundle_dir / "packages" / "bastion").glob("*.deb"))
    r.report.extra["bundle"] = {"bytes": sum(p.stat().st_size for p in st.parts[1:]), "os_packages": len(debs),
                                "os_package_bytes": sum(p.stat().st_size for p in debs)}


def step_routes(r: LabRun) -> None:
    airgap.configure_vms(r.ssh_config, state(r).table)


def step_copy_verify(r: LabRun) -> None:
    """Copy the tar part(s), PARTS.sha256 and verify.sh to every VM; unpack and verify there."""
    st = state(r)
    if st.bundle_dir is None or st.secrets_dir is None:
        raise DeployError("lab step order: the bundle build step did not run")
    timings: dict[str, float] = {}
    for node in st.table.vms.nodes:
        start = time.monotonic()
        airgap.copy_in(r.ssh_config, node.ip, [*st.parts, st.bundle_dir / "verify.sh"], INCOMING)
        line = airgap.unpack_and_verify(r.ssh_config, node.ip, INCOMING, st.parts[0].name, st.bundle_dir.name)
        for secret in sorted(p for p in st.secrets_dir.rglob("*") if p.is_file()):
            dest = f"{airgap.REMOTE_BUNDLE}/{st.bundle_dir.name}/{secret.relative_to(st.secrets_dir).as_posix()}"
            ssh(r.ssh_config, node.ip, ["sudo", "bash", "-c", 'umask 077; mkdir -p "${1%/*}"; cat >"$1"',
                                        "gl-secret", dest], input_text=secret.read_text())
        timings[node.name] = round(time.monotonic() - start, 1)
        say(f"bundle on {node.name}: {line}")
    r.report.extra["bundle_copy_verify_s"] = timings


def step_bastion(r: LabRun) -> None:
    """The bastion's site services from the bundle (registry TLS+htpasswd, chrony, dnsmasq), then each
    node's site membership (its packages, CA, registries.yaml, chrony client): `invoke site.deploy`."""
    st = state(r)
    if SITE_TASK not in airgap.invoke_tasks():
        raise DeployError(f"bastion install: `invoke {SITE_TASK}` is not in this checkout (the bastion phases "
                          f"of helper `site`, branch site, are not merged into main yet); the bastion cannot be "
                          f"installed from the bundle, so the node and the air-gap checks cannot run")
    if st.bundle_dir is None:
        raise DeployError("lab step order: the bundle build step did not run")
    topology = settings_lib.load(st.table.lab.env_file, overrides=st.sets).topology
    # site.deploy stages the site files from this host: the bundle's own packages (packages/bastion for
    # the bastion, packages/node for each node's 03_site_node: its chrony client) and images
    sets = [*st.sets, f"SSH_CONFIG={r.ssh_config}", "SSH_USER=vagrant",
            f"SITE_PACKAGES_DIR={st.bundle_dir / 'packages'}",
            f"SITE_IMAGES_DIR={st.bundle_dir / 'scripts' / topology / 'artifacts' / 'images'}"]
    run(invoke_argv(SITE_TASK, st.table.lab.env_file, sets, "--json-report", str(r.work / "site-deploy.json")),
        cwd=REPO, timeout=1800, capture=False, what=f"invoke {SITE_TASK}")


def step_node(r: LabRun) -> None:
    """Each k3s node runs the bundle's standalone scripts of its role (bash only, offline)."""
    st = state(r)
    if st.bundle_dir is None:
        raise DeployError("lab step order: the bundle build step did not run")
    topology = offline.topology_of(settings_lib.load(st.table.lab.env_file, overrides=st.sets).topology)
    scripts = st.bundle_dir / "scripts" / topology
    phases = offline.rendered_phases(scripts, topology)
    remote = f"{airgap.REMOTE_BUNDLE}/{st.bundle_dir.name}/scripts/{topology}"
    for node in st.table.lab.nodes:
        role = offline.node_role(node.role, topology)
        for phase in (p for p in phases if p.runs_on(role)):
            start = time.monotonic()
            argv = ["sudo", "bash", f"{remote}/{phase.script}", *(["--role", role] if phase.takes_role else []),
                    "--json"]
            rc, out, err = airgap.run_script(r.ssh_config, node.ip, argv, offline.SCRIPT_TIMEOUT)
            row = offline.phase_row(phase.name, node.name, rc, out, err, time.monotonic() - start)
            r.report.rows.append(row)
            if row.status == "fail":
                raise DeployError(f"air-gap node: {phase.script} failed on {node.name}: {row.reason}")


def write_inventory(r: LabRun) -> Path:
    st = state(r)
    path = r.work / "airgap-inventory.json"
    path.write_text(json.dumps({
        "lab": r.options.lab, "ssh_config": str(r.ssh_config), "env_file": str(st.table.lab.env_file),
        "k3s_mode": r.report.k3s_mode,
        "nodes": [{"name": n.name, "ip": n.ip, "role": n.role} for n in st.table.lab.nodes],
        "bastion": {"name": st.table.bastion.name, "ip": st.table.bastion.ip},
        "network": {"cidr": str(st.table.network.cidr), "bridge": st.table.network.bridge},
        "mgmt_host_ip": shared.load().mgmt.host_ip,
        "registry": {"name": airgap.REGISTRY_NAME, "port": REGISTRY_PORT, "ca_file": str(st.ca),
                     "user": settings_lib.load(st.table.lab.env_file, overrides=st.sets).registry_user,
                     "password_file": str(st.password_file)},
    }, indent=2) + "\n")
    return path


def step_testinfra(r: LabRun) -> None:
    st = state(r)
    junit = r.work / "testinfra-airgap.xml"
    hosts = ",".join(f"ssh://{ip}" for ip in st.table.vms.ips)
    argv = [sys.executable, "-m", "pytest", "tests/lab/test_airgap.py", "-m", "lab", f"--hosts={hosts}",
            f"--ssh-config={r.ssh_config}", f"--junitxml={junit}", "-p", "no:cacheprovider", "-q", "-rs"]
    env = {**os.environ, "GL_LAB_INVENTORY": str(write_inventory(r))}
    proc = run(argv, cwd=REPO, env=env, timeout=TESTINFRA_TIMEOUT, check=False, capture=False, what="testinfra")
    r.report.rows.extend(junit_rows(junit))
    if proc.returncode != 0:
        raise DeployError(f"air-gap testinfra verifiers failed (pytest exit {proc.returncode}); see above")
