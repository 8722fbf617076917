"""The air-gap lab's table, network definition and bounded wait (no VM needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gldeploy.errors import ConfigError, DeployError
from gldeploy.lab import airgap, host, shared

GOOD = """env_file: env/airgap.env
network: {name: n, bridge: virbr-x, cidr: 192.168.58.0/24}
bastion: {name: bastion, cpus: 1, memory: 1024, ip: 192.168.58.5}
nodes:
  - {name: node1, role: single, ip: 192.168.58.10}
"""


def table(tmp_path: Path, text: str) -> airgap.AirgapTable:
    (tmp_path / "airgap.yml").write_text(text)
    return airgap.load("airgap", tmp_path)


def test_repo_table_bastion_first_and_matches_env() -> None:
    t = airgap.load()
    assert t.vms.names[0] == t.bastion.name and t.bastion.role == "bastion"
    assert t.network.name != host.PRIVATE_NET and t.network.name != host.MGMT_NET
    assert all(n.role in ("single", "server", "agent") for n in t.lab.nodes)


@pytest.mark.parametrize("change, message", [
    (("192.168.58.5}", "10.0.0.5}"), "outside network.cidr"),
    (("bastion: {name: bastion", "bastion: {name: node1"), "must differ"),
    (("network: {name: n, bridge: virbr-x, cidr: 192.168.58.0/24}", "network: {name: n}"), "network"),
    (("cidr: 192.168.58.0/24", "cidr: 192.168.58.0/99"), "network.cidr"),
])
def test_bad_table_is_a_config_error_naming_the_file(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        table(tmp_path, GOOD.replace(*change))
    assert "airgap.yml" in str(err.value)


def test_network_xml_has_no_forward_no_ip_no_dhcp(tmp_path: Path) -> None:
    xml = airgap.network_xml(table(tmp_path, GOOD).network)
    assert "<forward" not in xml and "<ip" not in xml and "dhcp" not in xml and "<dns" not in xml
    # the lab's other networks do carry a host address: the air-gap one is the exception
    assert "<ip " in host.private_xml(shared.load().private)


def test_net_script_args_are_arguments_not_code() -> None:
    argv = airgap.net_argv("192.168.58.10/24", "192.168.58.5", "192.168.58.5")
    assert argv[:3] == ["sudo", "bash", "-c"] and argv[-3:] == ["192.168.58.10/24", "192.168.58.5", "192.168.58.5"]
    assert "UseRoutes=false" in airgap.NET_SCRIPT and "REJECT" in airgap.NET_SCRIPT


def test_wait_for_other_labs_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = iter([["gl-lab-cluster-server1", "gl-lab-airgap-bastion"], ["gl-lab-cluster-server1"]] * 5)
    monkeypatch.setattr(airgap, "other_lab_domains", lambda prefix: [d for d in next(seen)
                                                                     if not d.startswith(prefix)])
    with pytest.raises(DeployError, match="gl-lab-cluster-server1"):
        airgap.wait_for_other_labs("gl-lab-airgap-", timeout=0.05, poll=0.02)
    monkeypatch.setattr(airgap, "other_lab_domains", lambda prefix: [])
    assert airgap.wait_for_other_labs("gl-lab-airgap-", timeout=1, poll=0.01) < 1
    # one empty look between another lab's rounds is not enough
    looks = iter([[], ["gl-lab-cluster-server1"], [], ["gl-lab-cluster-server1"]] * 50)
    monkeypatch.setattr(airgap, "other_lab_domains", lambda prefix: next(looks))
    with pytest.raises(DeployError):
        airgap.wait_for_other_labs("gl-lab-airgap-", timeout=0.2, poll=0.01)


def test_secret_file_is_0600(tmp_path: Path) -> None:
    path = airgap.new_password(tmp_path / "pw")
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text().strip()) >= 24


def test_standin_release_gets_a_valid_empty_airgap_archive_listed_in_its_sums(tmp_path: Path) -> None:
    import tarfile

    from gldeploy import artifacts
    src = tmp_path / "src"
    src.mkdir()
    (src / "k3s").write_bytes(b"stand-in\n")
    out = airgap.standin_with_images(src, tmp_path / "out")
    sums = artifacts.parse_sums(out / "sha256sum-amd64.txt")
    assert set(sums) == {"k3s", "k3s-airgap-images-amd64.tar"}
    with tarfile.open(out / "k3s-airgap-images-amd64.tar") as tar:
        assert tar.getmembers() == []


def test_site_packages_install_from_the_bundle_with_real_apt(tmp_path: Path) -> None:
    """apt 2.6 refuses local .deb files under --no-download ("Pathname to install is not absolute"):
    the site phases (site_install_packages of lib/site_node.sh: the node's 03_site_node and the
    bastion's 02_site_services) use no source list instead. Real apt-get in a throwaway root; dpkg is
    a fake."""
    import os
    import shutil
    import subprocess
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("needs apt-get and dpkg-deb (Debian)")
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text("Package: gl-airgap-probe\nVersion: 1.0-1\nArchitecture: all\n"
                                            "Maintainer: lab <lab@example.invalid>\nDescription: probe\n")
    bundle = tmp_path / "bundle"
    (bundle / "site" / "packages").mkdir(parents=True)
    deb = bundle / "site" / "packages" / "gl-airgap-probe_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    root = tmp_path / "root"
    for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "var/lib/apt/lists/partial",
                "var/cache/apt/archives/partial", "var/lib/dpkg", "log"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    calls = tmp_path / "dpkg-calls"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dpkg").write_text(f"#!/bin/bash\necho \"$*\" >>{calls}\n")
    opts = " ".join(f"-o {o}" for o in (f"Dir::Etc={root}/etc/apt", f"Dir::State={root}/var/lib/apt",
                                         f"Dir::Cache={root}/var/cache/apt", f"Dir::Log={root}/log",
                                         f"Dir::State::status={root}/var/lib/dpkg/status", "Debug::NoLocking=1",
                                         f"Dir::Bin::dpkg={bindir}/dpkg"))
    (bindir / "apt-get").write_text(f"#!/bin/bash\nexec /usr/bin/apt-get {opts} \"$@\"\n")
    for f in ("dpkg", "apt-get"):
        (bindir / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "GL_BUNDLE_DIR": str(bundle),
           "GL_PHASE": "03_site_node"}
    lib = Path(__file__).resolve().parents[2] / "scripts" / "lib"
    script = "set -euo pipefail; " + "; ".join(f"source {lib}/{f}" for f in (
        "common.sh", "checks.sh", "site_checks.sh", "site_node.sh")) + "; site_install_packages"
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"--unpack --auto-deconfigure {deb}" in calls.read_text()


def test_no_product_script_installs_local_debs_under_no_download() -> None:
    """The bastion and the nodes install the bundle's .deb files the way the real-apt test above proves
    works; `--no-download` (refused by apt 2.6 for local files) appears in no product script."""
    from pathlib import Path
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    offenders = [str(p.relative_to(scripts)) for p in scripts.rglob("*.sh")
                 if any("apt-get" in line and "--no-download" in line for line in p.read_text().splitlines())]
    assert offenders == []
