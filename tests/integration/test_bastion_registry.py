"""The bastion's registry exactly as 02_site_services leaves it: the files installed by the phase's own
functions (site_registry_files: certificate, key, config.yml, bcrypt htpasswd) into a GL_ROOT sandbox,
then docker-registry started the way the Debian package's systemd unit starts it (as its `User=`,
`docker-registry serve <config>`). The registry must come up and answer 401 anonymous / 200 with the
password; a second install changes nothing. (The lab's bastion failed here: the key and htpasswd were
root-only and the registry, running as docker-registry, could not read them.)"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy import settings
from gldeploy.site import ca, services
from gldeploy.tasks.site_tasks import stage_for

pytestmark = pytest.mark.integration
UNIT = Path("/lib/systemd/system/docker-registry.service")
NAME = "registry.gl-bastion.test"
BASTION = "10.81.7.1"
PORT = 5000


def unit_user() -> str:
    """The User= of the installed package's unit (the registry never runs as root on Debian)."""
    if not UNIT.is_file():
        pytest.fail(f"{UNIT} missing: apt-get install docker-registry (tools/bootstrap.sh test)")
    for line in UNIT.read_text().splitlines():
        if line.startswith("User="):
            return line.split("=", 1)[1].strip()
    return "root"


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A GL_ROOT the package's user can traverse (pytest's tmp dirs are 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix=f"gl-bastion-{os.getpid()}-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def netns() -> Iterator[str]:
    """A private network namespace holding BASTION (the registry binds the bastion's address)."""
    ns = f"glbastion{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv in (["link", "set", "lo", "up"], ["link", "add", "gl0", "type", "veth", "peer", "name", "gl1"],
                     ["addr", "add", f"{BASTION}/24", "dev", "gl0"], ["link", "set", "gl0", "up"], ["link", "set", "gl1", "up"]):
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _bundle(root: Path) -> tuple[Path, Path]:
    work = root / "work"
    work.mkdir(mode=0o700)
    ca.init(work / "ca", ca.Names.of([NAME, BASTION]), days=90)
    pw = work / "pw"
    pw.write_text("Bastion-pass-1\n")
    pw.chmod(0o600)
    loaded = settings.load(None, environ={}, overrides=[
        "CONTROL_PLANE_IPS=10.81.7.2", f"BASTION_IP={BASTION}", f"REGISTRY={NAME}:{PORT}", "REGISTRY_USER=site",
        f"REGISTRY_PASSWORD_FILE={pw}", f"REGISTRY_CA_FILE={work / 'ca/ca.crt'}", f"SITE_CA_DIR={work / 'ca'}"])
    bundle = work / "bundle"
    stage_for(loaded, bundle, "bastion")
    # the rendered config names the bastion's paths; the sandbox holds them under GL_ROOT
    layout = services.Layout(etc=f"{root}/etc/gl-site", registry_config=f"{root}/etc/docker/registry/config.yml",
                             htpasswd=f"{root}/etc/docker/registry/htpasswd", storage=f"{root}/var/lib/docker-registry")
    (bundle / "site/registry-config.yml").write_text(services.registry_config(loaded, layout))
    # what the package's postinst does: the storage directory belongs to the registry's user
    storage = Path(layout.storage)
    storage.mkdir(parents=True)
    user = pwd.getpwnam(unit_user())
    os.chown(storage, user.pw_uid, user.pw_gid)
    return bundle, Path(layout.registry_config)


def _install(bundle: Path, root: Path) -> subprocess.CompletedProcess[str]:
    lib = bundle / "lib"
    script = (f"set -euo pipefail; source {lib}/common.sh; source {lib}/checks.sh; source {lib}/site_checks.sh; "
              f"source {lib}/site_node.sh; source {lib}/site_bastion.sh; gl_load_settings; "
              f"if site_registry_files; then echo changed; else echo unchanged; fi")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GL_ROOT": str(root),
                               "GL_BUNDLE_DIR": str(bundle), "GL_PHASE": "02_site_services"})


def _curl(ns: str, bundle: Path, user: str = "") -> str:
    argv = ["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert",
            str(bundle / "site/ca.crt"), "--resolve", f"{NAME}:{PORT}:{BASTION}"]
    config = f'user = "{user}"\n' if user else ""
    return subprocess.run([*argv, *(["-K", "-"] if user else []), f"https://{NAME}:{PORT}/v2/"], input=config,
                          capture_output=True, text=True, timeout=30, check=False).stdout


def test_registry_runs_as_the_units_user_with_the_files_the_phase_installs(sandbox: Path, netns: str) -> None:
    bundle, config = _bundle(sandbox)
    first = _install(bundle, sandbox)
    assert first.returncode == 0 and first.stdout.strip() == "changed", first.stderr
    assert (sandbox / "etc/gl-site/registry.key").stat().st_mode & 0o007 == 0, "the key is never world-readable"
    assert (sandbox / "etc/docker/registry/htpasswd").stat().st_mode & 0o007 == 0
    user = unit_user()
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                             "docker-registry", "serve", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        code = ""
        for _ in range(100):
            if proc.poll() is not None:
                break
            code = _curl(netns, bundle)
            if code == "401":
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"docker-registry (as {user}) exited {proc.returncode}: {proc.communicate()[0][-2000:]}")
        assert code == "401", "anonymous /v2/ must be refused"
        assert _curl(netns, bundle, "site:Bastion-pass-1") == "200"
        assert _curl(netns, bundle, "site:wrong") == "401"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    again = _install(bundle, sandbox)
    assert again.returncode == 0 and again.stdout.strip() == "unchanged", again.stderr
