"""The site services for real, in a private network namespace: docker-registry with the internal CA's
certificate and htpasswd auth (configs rendered by gldeploy.site), images imported with the bastion's
skopeo step, chrony as the NTP server, dnsmasq answering the site names, and checklist.sh flagging
each broken item with its fix (a certificate for another name, an expired one, a wrong password, too
little disk, a clock minutes off, a filtered node port, a stopped DNS, images not imported)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy import backend, bundle, image, settings
from gldeploy.site import ca, services, stage

pytestmark = pytest.mark.integration
TOOLS = ("docker-registry", "skopeo", "chronyd", "dnsmasq", "dig", "htpasswd", "openssl", "ip", "iptables")
REGISTRY_NAME = "registry.gl-site.test"
API_NAME = "k3s-api.gl-site.test"


def netns_run(ns: str, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=120,
                          check=False, **kw)  # type: ignore[call-overload]


@dataclass
class Site:
    ns: str
    bastion: str
    node: str
    tmp: Path
    bundle: Path
    layout: services.Layout
    password_file: Path
    settings: settings.Settings
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def start_registry(self) -> None:
        self.start("registry", ["docker-registry", "serve", str(self.bundle / "site/registry-config.yml")])
        for _ in range(100):
            if netns_run(self.ns, ["bash", "-c", f"exec 3<>/dev/tcp/{self.bastion}/5000"]).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError((self.tmp / "registry.log").read_text())

    def checklist(self, *args: str, sandbox: Path | None = None) -> tuple[int, dict[str, dict[str, str]]]:
        root = sandbox or self.tmp / "root"
        done = netns_run(self.ns, ["env", f"GL_ROOT={root}", f"GL_BUNDLE_DIR={self.bundle}", "bash",
                                   str(self.bundle / "checklist.sh"), "--json", *args])
        report = json.loads(done.stdout)
        return done.returncode, {c["name"]: c for c in report["checks"]}


def _tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"site integration tests need {', '.join(missing)} (apt-get install docker-registry skopeo "
                    f"chrony dnsmasq bind9-dnsutils apache2-utils iptables)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _tools()
    tmp = tmp_path_factory.mktemp("site")
    ns = f"glsite{os.getpid()}"
    net = f"10.79.{20 + os.getpid() % 200}"
    bastion, node = f"{net}.1", f"{net}.2"
    etc_ns = Path("/etc/netns") / ns
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv in (["link", "set", "lo", "up"], ["link", "add", "gla", "type", "veth", "peer", "name", "glb"],
                     ["addr", "add", f"{bastion}/24", "dev", "gla"], ["addr", "add", f"{node}/24", "dev", "glb"],
                     ["link", "set", "gla", "up"], ["link", "set", "glb", "up"]):
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        etc_ns.mkdir(parents=True, exist_ok=True)  # ip netns exec mounts these over /etc: the bastion's names
        (etc_ns / "hosts").write_text(f"127.0.0.1 localhost\n{bastion} {REGISTRY_NAME}\n")
        (etc_ns / "resolv.conf").write_text(f"nameserver {bastion}\n")
        yield _build(tmp, ns, bastion, node)
    finally:
        shutil.rmtree(etc_ns, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _build(tmp: Path, ns: str, bastion: str, node: str) -> Site:
    names = ca.Names.of([REGISTRY_NAME, bastion])
    ca.init(tmp / "ca", names, days=90)
    password_file = tmp / "registry-password"
    password_file.write_text(secrets.token_urlsafe(18) + "\n")
    password_file.chmod(0o600)
    images_dir = tmp / "images"
    image.build_sample_image("v1.1", images_dir, image_name="docker.io/gl-native/sample:v1.1")
    loaded = settings.load(None, environ={}, overrides=[
        f"CONTROL_PLANE_IPS={node}", f"BASTION_IP={bastion}", f"REGISTRY={REGISTRY_NAME}:5000",
        "REGISTRY_USER=site", f"REGISTRY_PASSWORD_FILE={password_file}", f"REGISTRY_CA_FILE={tmp / 'ca/ca.crt'}",
        f"SITE_CA_DIR={tmp / 'ca'}", f"SITE_IMAGES_DIR={images_dir}", f"SITE_API_NAME={API_NAME}",
        "SITE_TIMEZONE=UTC", "SITE_MAX_CLOCK_SKEW_MS=1000"])
    layout = services.Layout(etc=str(tmp / "etc"), registry_config=str(tmp / "etc/config.yml"),
                             htpasswd=str(tmp / "etc/htpasswd"), storage=str(tmp / "storage"),
                             chrony_run=str(tmp / "chrony"))
    dest = tmp / "bundle"
    bundle.build_bundle(loaded, dest, (), baked=False, staging=bundle.Staging(k3s_artifacts=False))
    backend.write_bundle_files(loaded, dest / "backend")
    stage.stage(loaded, dest, "bastion", layout=layout)
    s = Site(ns, bastion, node, tmp, dest, layout, password_file, loaded)
    # what 02_site_services installs, into the test layout
    Path(layout.etc).mkdir(parents=True)
    Path(layout.chrony_run).mkdir()
    shutil.copy(dest / "site/registry.crt", layout.cert)
    shutil.copy(dest / "site/registry.key", layout.key)
    shutil.copy(dest / "site/site.hosts", layout.hosts)
    subprocess.run(["htpasswd", "-B", "-i", "-c", layout.htpasswd, "site"], input=password_file.read_text().strip(),
                   text=True, check=True, capture_output=True)
    chrony_conf = tmp / "chrony.conf"
    chrony_conf.write_text(services.chrony_server(loaded, layout, listen=bastion, cmdport=0))
    dns_conf = tmp / "dnsmasq.conf"
    dns_conf.write_text(services.dnsmasq_config(loaded, layout))
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/UTC")
    s.start_registry()
    s.start("chrony", ["chronyd", "-d", "-x", "-u", "root", "-f", str(chrony_conf)])
    s.start("dnsmasq", ["dnsmasq", "-k", "-u", "root", "-C", str(dns_conf), f"--pid-file={tmp / 'dnsmasq.pid'}",
                        "--log-facility=-"])
    return s


@pytest.fixture(scope="module", autouse=True)
def _stop_daemons(site: Site) -> Iterator[None]:
    yield
    for name in list(site.procs):
        site.stop(name)


def import_images(site: Site) -> subprocess.CompletedProcess[str]:
    lib = site.bundle / "lib"
    script = (f"set -euo pipefail; source {lib}/common.sh; source {lib}/checks.sh; source {lib}/site_checks.sh; "
              f"source {lib}/site_bastion.sh; gl_load_settings; site_import_images")
    return netns_run(site.ns, ["env", f"GL_BUNDLE_DIR={site.bundle}", "GL_PHASE=02_site_services", "bash", "-c",
                               script])


def curl(site: Site, *args: str) -> str:
    return netns_run(site.ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve",
                               f"{REGISTRY_NAME}:5000:{site.bastion}", *args]).stdout


def test_registry_tls_and_auth_answer_as_documented(site: Site) -> None:
    url = f"https://{REGISTRY_NAME}:5000/v2/"
    ca_file = str(site.tmp / "ca/ca.crt")
    assert curl(site, "--cacert", ca_file, url) == "401"  # anonymous
    other = site.tmp / "other-ca"
    ca.create_ca(other.with_suffix(".crt"), other.with_suffix(".key"), 2)
    assert curl(site, "--cacert", str(other.with_suffix(".crt")), url) == "000"  # wrong CA: TLS fails
    config = site.tmp / "curl-wrong"
    config.write_text('user = "site:not-the-password"\n')
    assert curl(site, "--cacert", ca_file, "-K", str(config), url) == "401"
    config.write_text(f'user = "site:{site.password_file.read_text().strip()}"\n')
    assert curl(site, "--cacert", ca_file, "-K", str(config), url) == "200"


def test_checklist_flags_images_before_import_then_passes_and_import_is_idempotent(site: Site) -> None:
    rc, checks = site.checklist("--role", "bastion")
    assert checks["images"]["status"] == "fail" and "gl-native/sample:v1.1" in checks["images"]["message"]
    assert "skopeo" in checks["images"]["fix"] and rc == 1
    first = import_images(site)
    assert first.returncode == 0, first.stderr
    assert "1 imported" in first.stderr
    password = site.password_file.read_text().strip()
    assert password not in first.stderr
    second = import_images(site)
    assert "0 imported, 1 already present" in second.stderr
    catalog = netns_run(site.ns, ["curl", "-s", "--cacert", str(site.tmp / "ca/ca.crt"), "--resolve",
                                  f"{REGISTRY_NAME}:5000:{site.bastion}", "-K", "-",
                                  f"https://{REGISTRY_NAME}:5000/v2/_catalog"], input=f'user = "site:{password}"\n')
    assert json.loads(catalog.stdout) == {"repositories": ["gl-native/sample"]}
    rc, checks = site.checklist("--role", "bastion")
    bad = {n: c for n, c in checks.items() if c["status"] not in ("pass", "skipped")}
    assert bad == {} and rc == 0
    assert set(checks) >= {"packages", "charts", "registry", "certificates", "images", "disk-images", "ntp",
                           "timezone", "dns"}


def test_checklist_json_and_human_agree(site: Site) -> None:
    done = netns_run(site.ns, ["env", f"GL_ROOT={site.tmp / 'root'}", "bash", str(site.bundle / "checklist.sh"),
                               "--role", "bastion"])
    assert done.stdout == "" and "STATUS" in done.stderr and "registry" in done.stderr


def test_wrong_registry_password_is_named_with_the_fix(site: Site, tmp_path: Path) -> None:
    copy = _bundle_copy(site, tmp_path)
    (copy / "secrets/registry-password").write_text("Wrong-Password-1\n")
    rc, checks = _run_copy(site, copy)
    assert rc == 1 and checks["registry"]["status"] == "fail"
    assert "refused the password of user site" in checks["registry"]["message"]
    assert "REGISTRY_PASSWORD_FILE" in checks["registry"]["fix"]
    assert "Wrong-Password-1" not in json.dumps(checks)


def test_too_little_disk_for_the_images(site: Site, tmp_path: Path) -> None:
    copy = _bundle_copy(site, tmp_path)
    (copy / "site/images.list").write_text("huge.oci.tar\tgl-native/sample:v1.1\t999999999999999\n")
    _, checks = _run_copy(site, copy)
    disk = checks["disk-images"]
    assert disk["status"] == "fail" and "MiB free, the images need" in disk["message"]
    assert "free or add space" in disk["fix"]


def test_stopped_dns_and_a_filtered_node_port(site: Site, tmp_path: Path) -> None:
    site.stop("dnsmasq")
    netns_run(site.ns, ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"])
    try:
        rc, checks = site.checklist("--role", "node", "--address", site.bastion)
    finally:
        netns_run(site.ns, ["iptables", "-D", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"])
    assert checks["dns"]["status"] == "fail" and REGISTRY_NAME in checks["dns"]["message"]
    assert "dnsmasq" in checks["dns"]["fix"]
    assert checks["ports"]["status"] == "fail" and f"{site.node}:10250" in checks["ports"]["message"]
    assert "6443" not in checks["ports"]["message"]  # refused (nothing listens) counts as open
    assert checks["ca-distributed"]["status"] == "fail"  # the node's sandbox has no CA yet
    rc2, checks2 = site.checklist("--role", "node", "--address", site.bastion)
    assert checks2["ports"]["status"] == "pass"


def test_certificate_for_another_name_and_expired_are_flagged(site: Site, tmp_path: Path) -> None:
    ca_dir = site.tmp / "ca"
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    ca.issue(ca_dir / "ca.crt", ca_dir / "ca.key", wrong / "registry.crt", wrong / "registry.key",
             ca.Names.of(["other.gl-site.test", site.bastion]), 90)
    expired = tmp_path / "expired"
    expired.mkdir()
    _expired_cert(ca_dir, expired, [REGISTRY_NAME, site.bastion])
    original = (Path(site.layout.cert).read_bytes(), Path(site.layout.key).read_bytes())
    try:
        for source, expect in ((wrong, f"does not name {REGISTRY_NAME}"), (expired, "has expired")):
            shutil.copy(source / "registry.crt", site.layout.cert)
            shutil.copy(source / "registry.key", site.layout.key)
            site.stop("registry")
            site.start_registry()
            _, checks = site.checklist("--role", "bastion")
            assert checks["certificates"]["status"] == "fail", checks["certificates"]
            assert expect in checks["certificates"]["message"]
            assert "invoke ca.init" in checks["certificates"]["fix"]
            assert ca.problems(source / "registry.crt", ca_dir / "ca.crt", ca.Names.of([REGISTRY_NAME]))
    finally:
        Path(site.layout.cert).write_bytes(original[0])
        Path(site.layout.key).write_bytes(original[1])
        site.stop("registry")
        site.start_registry()


def test_a_clock_minutes_off_is_flagged(site: Site) -> None:
    site.stop("chrony")
    server = ("import socket, sys, time\nfrom gldeploy.lab.ntp import reply\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 123))\n"
              "while True:\n  data, peer = s.recvfrom(512); now = time.time() + 300\n"
              "  answer = reply(data, now, now)\n  answer and s.sendto(answer, peer)\n")
    site.start("skewed-ntp", ["env", f"PYTHONPATH={Path(__file__).resolve().parents[2]}", sys.executable, "-c",
                              server, site.bastion])
    try:
        time.sleep(0.5)
        _, checks = site.checklist("--role", "bastion")
    finally:
        site.stop("skewed-ntp")
    ntp = checks["ntp"]
    assert ntp["status"] == "fail" and "off by" in ntp["message"] and "more than 1000 ms" in ntp["message"]
    assert "chronyc makestep" in ntp["fix"]
    offset = float(ntp["message"].split("off by ")[1].split(" s")[0])
    assert 290 < abs(offset) < 310


def _bundle_copy(site: Site, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(site.bundle, copy, symlinks=True)
    return copy


def _run_copy(site: Site, copy: Path) -> tuple[int, dict[str, dict[str, str]]]:
    done = netns_run(site.ns, ["env", f"GL_ROOT={site.tmp / 'root'}", f"GL_BUNDLE_DIR={copy}", "bash",
                               str(copy / "checklist.sh"), "--json", "--role", "bastion"])
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def _expired_cert(ca_dir: Path, out: Path, names: list[str]) -> None:
    """A certificate from the site CA whose validity ended in 2020 (openssl ca -startdate/-enddate)."""
    (out / "index.txt").write_text("")
    (out / "serial").write_text("1000\n")
    san = ",".join(f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in names)
    (out / "ca.cnf").write_text(
        f"[ca]\ndefault_ca=site\n[site]\ndatabase={out}/index.txt\nserial={out}/serial\nnew_certs_dir={out}\n"
        "default_md=sha256\npolicy=any\ncopy_extensions=none\nx509_extensions=ext\n[any]\ncommonName=supplied\n"
        f"[ext]\nsubjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(out / "registry.key"), "-out", str(out / "r.csr"), "-subj", f"/CN={names[0]}"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-config", str(out / "ca.cnf"), "-cert", str(ca_dir / "ca.crt"),
                    "-keyfile", str(ca_dir / "ca.key"), "-in", str(out / "r.csr"), "-out", str(out / "registry.crt"),
                    "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-notext"],
                   check=True, capture_output=True)


def test_an_unreachable_ntp_server_is_flagged(site: Site) -> None:
    """The NTP check really talks to the bastion: with chrony stopped it fails as unreachable."""
    site.stop("chrony")
    _, checks = site.checklist("--role", "bastion")
    assert checks["ntp"]["status"] == "fail" and "no NTP answer" in checks["ntp"]["message"]
    conf = site.tmp / "chrony.conf"
    site.start("chrony", ["chronyd", "-d", "-x", "-u", "root", "-f", str(conf)])
    time.sleep(0.5)
