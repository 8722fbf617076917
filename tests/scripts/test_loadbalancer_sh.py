"""scripts/lib/loadbalancer.sh in a sandbox (GL_ROOT): install twice, uninstall twice, bad input."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gldeploy import loadbalancer as lb

REPO = Path(__file__).resolve().parents[2]
DRIVER = """set -euo pipefail
source "${GL_BUNDLE_DIR}/lib/common.sh"
source "${GL_BUNDLE_DIR}/lib/loadbalancer.sh"
"$1"
printf 'changed=%s\\n' "${GL_CHANGED}"
"""
CFG = lb.LBConfig(vip="192.168.56.100", prefix=24, port=16443,
                  nodes=(lb.LBNode("192.168.56.10", 150), lb.LBNode("192.168.56.11", 140)),
                  servers=("192.168.56.10", "192.168.56.11", "192.168.56.12"), api_port=6443,
                  router_id=51, auth_pass="Xy7.pass", interface="eth1")

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="needs haproxy (apt-get install -y haproxy keepalived)")


@dataclass
class Run:
    rc: int
    out: str
    err: str


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "scripts" / "lib", bundle / "lib")
    lb.write_node_files(CFG, "192.168.56.10", bundle / "lb")
    (tmp_path / "root").mkdir()
    return tmp_path


def run(sandbox: Path, entry: str, path: str | None = None, **env: str) -> Run:
    full = {"PATH": path or os.environ["PATH"], "HOME": "/root", "GL_ROOT": str(sandbox / "root"),
            "GL_BUNDLE_DIR": str(sandbox / "bundle"), "GL_PHASE": "lb", "API_VIP": CFG.vip,
            "API_VIP_PREFIX": str(CFG.prefix), "LB_INTERFACE": CFG.interface, "LB_PACKAGES_DIR": "", **env}
    proc = subprocess.run(["bash", "-c", DRIVER, "driver", entry], env=full, capture_output=True, text=True,
                          timeout=60)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_install_twice_then_uninstall_twice(sandbox: Path) -> None:
    root = sandbox / "root"
    packaged = root / "etc/haproxy/haproxy.cfg"
    packaged.parent.mkdir(parents=True)
    packaged.write_text("# the Debian package's haproxy.cfg\n")

    first = run(sandbox, "lb_install")
    assert first.rc == 0, first.err
    assert "changed=true" in first.out and "configuration written" in first.err
    assert "were not started" in first.err  # no systemd in a sandbox: said, not hidden
    assert (root / "etc/haproxy/haproxy.cfg").read_text() == lb.render_haproxy(CFG)
    assert (root / "etc/haproxy/haproxy.cfg.gl-orig").read_text() == "# the Debian package's haproxy.cfg\n"
    conf = root / "etc/keepalived/keepalived.conf"
    assert conf.read_text() == lb.render_keepalived(CFG, "192.168.56.10") and mode(conf) == 0o600
    assert mode(root / "etc/keepalived/gl-check-haproxy.sh") == 0o755
    assert mode(root / "usr/local/bin/gl-lb-uninstall.sh") == 0o755
    before = tree(root)

    second = run(sandbox, "lb_install")
    assert second.rc == 0, second.err
    assert "changed=false" in second.out and "nothing changed" in second.err
    assert tree(root) == before

    gone = run(sandbox, "lb_uninstall")
    assert gone.rc == 0, gone.err
    assert "changed=true" in gone.out
    assert tree(root) == {"etc/haproxy/haproxy.cfg": b"# the Debian package's haproxy.cfg\n"}
    again = run(sandbox, "lb_uninstall")
    assert again.rc == 0 and "changed=false" in again.out and "nothing to remove" in again.err


def test_broken_haproxy_config_touches_nothing(sandbox: Path) -> None:
    cfg = sandbox / "bundle/lb/haproxy.cfg"
    cfg.write_text(cfg.read_text().replace("balance source", "balance nosuchalgo"))
    result = run(sandbox, "lb_install")
    assert result.rc == 1 and "haproxy -c rejects" in result.err
    assert tree(sandbox / "root") == {}


def test_world_readable_keepalived_conf_is_refused(sandbox: Path) -> None:
    (sandbox / "bundle/lb/keepalived.conf").chmod(0o644)
    result = run(sandbox, "lb_install")
    assert result.rc == 1 and "not mode 0600" in result.err
    assert tree(sandbox / "root") == {}


def test_missing_packages_come_from_the_local_package_dir(sandbox: Path) -> None:
    """Without haproxy/keepalived on PATH the packages are installed from LB_PACKAGES_DIR with apt-get."""
    shim = sandbox / "shim"
    shim.mkdir()
    (shim / "apt-get").write_text(f"""#!/bin/bash
printf '%s\\n' "$@" >{sandbox}/apt-args
for tool in haproxy keepalived; do printf '#!/bin/sh\\nexec /usr/sbin/%s "$@"\\n' $tool >{shim}/$tool; \
chmod +x {shim}/$tool; done
""")
    (shim / "apt-get").chmod(0o755)
    pkgs = sandbox / "bundle/packages"
    pkgs.mkdir()
    for name in ("haproxy_2.6.12_amd64.deb", "keepalived_2.2.7_amd64.deb"):
        (pkgs / name).write_bytes(b"")
    (sandbox / "root/etc").mkdir(parents=True)
    (sandbox / "root/etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    path = f"{shim}:/usr/local/bin:/usr/bin:/bin"  # no /usr/sbin: haproxy and keepalived are missing
    result = run(sandbox, "lb_install", path=path, LB_PACKAGES_DIR="packages")
    assert result.rc == 0, result.err
    args = (sandbox / "apt-args").read_text().split()
    assert args[:3] == ["install", "-y", "--no-install-recommends"]
    assert sorted(Path(a).name for a in args[3:]) == ["haproxy_2.6.12_amd64.deb", "keepalived_2.2.7_amd64.deb"]
    assert "from " in result.err and "no network" in result.err


def test_empty_package_dir_is_an_error(sandbox: Path) -> None:
    (sandbox / "bundle/packages").mkdir()
    (sandbox / "root/etc").mkdir(parents=True)
    (sandbox / "root/etc/os-release").write_text("ID=debian\n")
    result = run(sandbox, "lb_install", path="/usr/local/bin:/usr/bin:/bin", LB_PACKAGES_DIR="packages")
    assert result.rc == 1 and "holds no debian packages" in result.err
    assert not (sandbox / "root/etc/haproxy").exists()


def test_the_written_uninstall_script_removes_the_load_balancer_on_its_own(sandbox: Path) -> None:
    """gl-lb-uninstall.sh (what k3s-uninstall.sh runs on a co-located load balancer) works without the
    bundle: configuration removed, the packaged haproxy.cfg restored, itself removed; twice is a no-op."""
    root = sandbox / "root"
    (root / "etc/haproxy").mkdir(parents=True)
    (root / "etc/haproxy/haproxy.cfg").write_text("# packaged\n")
    assert run(sandbox, "lb_install").rc == 0
    script = root / "usr/local/bin/gl-lb-uninstall.sh"
    shutil.rmtree(sandbox / "bundle")  # the shipped bundle is gone by the time an operator resets the node
    env = {"PATH": os.environ["PATH"], "HOME": "/root"}
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "load balancer removed" in done.stderr
    assert tree(root) == {"etc/haproxy/haproxy.cfg": b"# packaged\n"}
    assert not script.exists()
