"""03_site_node.sh in a GL_ROOT sandbox: the node gets the site CA (trust store and k3s), the one
registries.yaml (0600), chrony pointing at the bastion, the time zone and the site names; a second run
changes nothing and says so."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gldeploy import settings
from gldeploy.site import ca
from gldeploy.tasks.site_tasks import stage_for


def _bundle(tmp_path: Path, *extra: str) -> Path:
    ca.init(tmp_path / "ca", ca.Names.of(["registry.gov.local", "192.168.56.5"]))
    pw = tmp_path / "pw"
    pw.write_text("Node-pass-1\n")
    pw.chmod(0o600)
    loaded = settings.load(None, environ={}, overrides=[
        "CONTROL_PLANE_IPS=192.168.56.10", "BASTION_IP=192.168.56.5", "REGISTRY=registry.gov.local:5000",
        "REGISTRY_USER=deploy", f"REGISTRY_PASSWORD_FILE={pw}", f"REGISTRY_CA_FILE={tmp_path / 'ca/ca.crt'}",
        f"SITE_CA_DIR={tmp_path / 'ca'}", "SITE_TIMEZONE=Asia/Taipei", "SITE_API_NAME=k3s-api.gov.local", *extra])
    dest = tmp_path / "bundle"
    stage_for(loaded, dest, "node")
    return dest


def _run(bundle: Path, root: Path) -> tuple[int, dict[str, object]]:
    bin_dir = root.parent / "bin"
    _getent(bin_dir, {"registry.gov.local": "192.168.56.5", "k3s-api.gov.local": "192.168.56.10"})
    done = subprocess.run(["bash", str(bundle / "03_site_node.sh"), "--json"], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "GL_ROOT": str(root)}, timeout=60,
                          check=False)
    return done.returncode, json.loads(done.stdout)


def test_node_joins_the_site_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    rc, report = _run(bundle, root)
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[union-attr]
    assert report["changed"] is True and checks["trust-ca"]["status"] == "pass"
    ca_pem = (tmp_path / "ca/ca.crt").read_bytes()
    assert (root / "usr/local/share/ca-certificates/gl-site-ca.crt").read_bytes() == ca_pem
    assert (root / "etc/rancher/k3s/registry-ca.crt").read_bytes() == ca_pem
    reg = root / "etc/rancher/k3s/registries.yaml"
    assert reg.read_bytes() == (bundle / "secrets/registries.yaml").read_bytes()
    assert (reg.stat().st_mode & 0o777) == 0o600 and b"Node-pass-1" in reg.read_bytes()
    assert "server 192.168.56.5 port 123" in (root / "etc/chrony/chrony.conf").read_text()
    assert (root / "etc/localtime").readlink() == Path("/usr/share/zoneinfo/Asia/Taipei")
    assert "nameserver 192.168.56.5" in (root / "etc/gl-site/resolv.conf").read_text()
    has_default = bool(subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True,
                                      check=False).stdout.strip())
    assert rc == (0 if has_default else 1), report  # the default route is checked for real
    rc2, again = _run(bundle, root)
    assert again["changed"] is False and rc2 == rc


def test_hosts_mode_writes_the_site_names_once(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "SITE_DNS=hosts")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    _run(bundle, root)
    _run(bundle, root)
    text = (root / "etc/hosts").read_text()
    assert text.count("registry.gov.local") == 1 and "192.168.56.10\tk3s-api.gov.local # gl-site" in text
    assert text.startswith("127.0.0.1 localhost\n")


def _deb(dest: Path, package: str) -> Path:
    """A real (tiny) .deb of PACKAGE, as apt-get download would give."""
    src = dest.parent / f"{package}-src"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "DEBIAN/control").write_text(f"Package: {package}\nVersion: 1.0\nArchitecture: all\n"
                                        f"Maintainer: t <t@t>\nDescription: test\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(src), str(dest)], check=True,
                   capture_output=True)
    return dest


def test_node_installs_its_packages_from_the_bundle_once(tmp_path: Path) -> None:
    """The node's site phase installs site/packages (its chrony client) offline, before configuring
    chrony; once installed, a second run leaves them (apt-get and dpkg-query are stand-ins here: the
    test machine's packages are never touched)."""
    packages = tmp_path / "packages"
    _deb(packages / "node/gl-test-chrony_1.0_all.deb", "gl-test-chrony")
    _deb(packages / "bastion/gl-test-registry_1.0_all.deb", "gl-test-registry")
    bundle = _bundle(tmp_path, f"SITE_PACKAGES_DIR={packages}")
    assert sorted(p.name for p in (bundle / "site/packages").iterdir()) == ["gl-test-chrony_1.0_all.deb"]
    bin_dir, log, installed = tmp_path / "bin", tmp_path / "apt.log", tmp_path / "installed"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >>{log}\n'
                                     f'for a in "$@"; do [[ $a == *.deb ]] && dpkg-deb -f "$a" Package >>{installed}; done\n'
                                     "exit 0\n")
    (bin_dir / "dpkg-query").write_text(f'#!/bin/bash\ngrep -qx "${{@: -1}}" {installed} 2>/dev/null '
                                        '&& printf "install ok installed"\nexit 0\n')
    for f in ("apt-get", "dpkg-query"):
        (bin_dir / f).chmod(0o755)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "GL_ROOT": str(root)}

    def run() -> dict[str, object]:
        done = subprocess.run(["bash", str(bundle / "03_site_node.sh"), "--json"], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
        return {c["name"]: c for c in json.loads(done.stdout)["checks"]}

    first = run()
    assert first["packages"]["status"] == "pass" and "installed 1 of 1" in first["packages"]["message"]
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "Dir::Etc::sourcelist=/dev/null" in calls[0]
    assert calls[0].endswith(f"{bundle}/site/packages/gl-test-chrony_1.0_all.deb")
    second = run()
    assert "already installed" in second["packages"]["message"]
    assert len(log.read_text().splitlines()) == 1, "a second run installs nothing"


def _getent(bin_dir: Path, answers: dict[str, str]) -> None:
    """A getent stand-in answering `getent ahostsv4 NAME` from ANSWERS (the node's resolver)."""
    bin_dir.mkdir(exist_ok=True)
    cases = "".join(f'  {name}) printf "%s STREAM {name}\\n";;\n' % addr for name, addr in answers.items())
    (bin_dir / "getent").write_text(f'#!/bin/bash\ncase "$2" in\n{cases}  *) exit 2;;\nesac\n')
    (bin_dir / "getent").chmod(0o755)


def test_the_node_itself_must_resolve_the_site_names(tmp_path: Path) -> None:
    """containerd pulls with the host's resolver, not k3s' resolv-conf: 03 checks that this host
    resolves every site name to its site address, and names the fix when it does not."""
    bundle = _bundle(tmp_path)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    bin_dir = tmp_path / "bin"
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "GL_ROOT": str(root)}

    def checks() -> tuple[int, dict[str, dict[str, str]]]:
        done = subprocess.run(["bash", str(bundle / "03_site_node.sh"), "--json"], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
        return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}

    _getent(bin_dir, {"registry.gov.local": "10.0.0.9"})
    rc, found = checks()
    assert rc == 1 and found["host-resolver"]["status"] == "fail"
    msg = found["host-resolver"]["message"]
    assert "registry.gov.local -> 10.0.0.9 (want 192.168.56.5)" in msg and "k3s-api.gov.local -> nothing" in msg
    assert "nameserver 192.168.56.5" in found["host-resolver"]["fix"]
    _getent(bin_dir, {"registry.gov.local": "192.168.56.5", "k3s-api.gov.local": "192.168.56.10"})
    _, found = checks()
    assert found["host-resolver"]["status"] == "pass"


def test_the_node_waits_until_its_chrony_has_synchronised_with_the_bastion(tmp_path: Path) -> None:
    """03 leaves the node synchronised (01's clock-sync check and k3s' certificates need it): a
    bounded `chronyc waitsync`; when it runs out, the check fails naming the bastion and the fix.
    (chronyc is a stand-in here; the air-gap lab runs the real one.)"""
    bundle = _bundle(tmp_path)
    bin_dir, calls = tmp_path / "bin", tmp_path / "chronyc.calls"
    bin_dir.mkdir()
    lib = bundle / "lib"
    script = (f"set -euo pipefail; source {lib}/common.sh; source {lib}/checks.sh; source {lib}/site_checks.sh; "
              f"source {lib}/site_node.sh; gl_load_settings; site_wait_ntp_sync 7; gl_checks_finish none")

    def run(synced: bool) -> dict[str, str]:
        (bin_dir / "chronyc").write_text(
            f'#!/bin/bash\necho "$*" >>{calls}\n'
            f'[[ $2 == waitsync ]] && exit {0 if synced else 1}\n'
            'echo "System time     : 0.000012 seconds fast of NTP time"\n'
            'echo "^? 192.168.56.5                 0   6     0     -     +0ns[   +0ns] +/-    0ns"\n')
        (bin_dir / "chronyc").chmod(0o755)
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                              env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "GL_BUNDLE_DIR": str(bundle),
                                   "GL_PHASE": "03_site_node", "GL_JSON": "1"})
        return {c["name"]: c for c in json.loads(done.stdout)["checks"]}["ntp-sync"]

    good = run(True)
    assert good["status"] == "pass" and "192.168.56.5" in good["message"]
    assert "-n waitsync 7 0 0 1" in calls.read_text()
    bad = run(False)
    assert bad["status"] == "fail" and "within 7 s" in bad["message"] and "192.168.56.5:123" in bad["message"]
    assert "UDP 123" in bad["fix"]
