"""doctor.sh in the sandbox (GL_ROOT): each check driven into its failure for real where this machine
allows it (a real listener on the API port, a stopped k3s, a small full tmpfs, short-lived and
future-dated certificates, a resolv.conf pointing at a silent address, two config files, a TLS
registry double with basic auth), with the k3s stand-in where k3s is needed."""
from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fixtures.k3s_standin.testing import free_port
from tests.scripts.conftest import PhaseRun
from tests.scripts.k3s_doubles import install_standin, running_standin

SILENT_DNS = "127.77.9.1"  # nothing listens on 127.77.9.1:53


def plant_resolv(root: Path, server: str = SILENT_DNS) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/resolv.conf").write_text(f"nameserver {server}\n")


@pytest.fixture
def doctor(run_phase: Callable[..., PhaseRun], sandbox_root: Path) -> Callable[..., PhaseRun]:
    """run doctor.sh --json in the sandbox; a sandbox resolv.conf keeps DNS probes on loopback."""
    def run(*args: str, **kwargs: Any) -> PhaseRun:
        if not (sandbox_root / "etc/resolv.conf").exists():
            plant_resolv(sandbox_root)
        return run_phase("doctor", "--json", *args, **kwargs)
    return run


def test_no_k3s_says_not_installed_and_skips_with_reason(doctor: Callable[..., PhaseRun]) -> None:
    started = time.monotonic()
    res = doctor()
    assert time.monotonic() - started < 5
    assert res.returncode == 1, res.stderr
    rep = res.report
    assert rep["phase"] == "doctor" and rep["k3s_mode"] == "none" and rep["status"] == "fail"
    assert "not installed" in res.check("k3s-installed")["message"]
    assert res.check("k3s-installed")["fix"].startswith("install it")
    for name in ("k3s-service", "api-ping", "cert-expiry", "config-drift", "evictions"):
        assert res.check(name)["status"] == "skipped" and res.check(name)["message"] == "k3s is not installed"
    assert all(isinstance(c["seconds"], float) for c in rep["checks"])
    assert "not installed" in res.stderr and "cause:" in res.stderr


def test_healthy_standin_is_fast_and_kubernetes_checks_need_real_k3s(doctor: Callable[..., PhaseRun],
                                                                      sandbox_root: Path, tmp_path: Path) -> None:
    with running_standin(sandbox_root, tmp_path) as port:
        started = time.monotonic()
        res = doctor(overrides={"API_PORT": str(port)})
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"doctor took {elapsed:.1f}s"
    assert res.check("k3s-service")["status"] == "pass"
    assert res.check("api-ping")["status"] == "pass"
    assert res.check("port-conflict")["status"] == "pass" and "held by k3s" in res.check("port-conflict")["message"]
    assert res.check("cert-expiry")["status"] == "pass"
    assert res.check("clock-cert-skew")["status"] == "pass"
    for name in ("evictions", "image-pulls", "cni-network"):
        assert res.check(name) == {**res.check(name), "status": "skipped", "message": "needs real k3s"}
    assert res.report["k3s_mode"] == "standin"
    assert res.report["seconds"] < 5


@pytest.mark.parametrize("registry, status", [("", "fail"), ("registry.gov-native.local:5000", "pass")])
def test_airgap_images_are_needed_only_without_a_registry_mirror(doctor: Callable[..., PhaseRun], sandbox_root: Path,
                                                                 tmp_path: Path, registry: str, status: str) -> None:
    """The day-2 lab's healthy node (artifacts given, system images through the registry mirror) was
    called broken for lacking the airgap images tarball, which 02 copies only when the release has one."""
    k3s_etc = sandbox_root / "etc/rancher/k3s"
    k3s_etc.mkdir(parents=True, exist_ok=True)
    (k3s_etc / "registries.yaml").write_text("mirrors: {}\n")
    with running_standin(sandbox_root, tmp_path) as port:
        res = doctor(overrides={"API_PORT": str(port), "K3S_ARTIFACTS_DIR": str(tmp_path),
                                "REGISTRY": registry, "REGISTRY_CA_FILE": ""})
    check = res.check("airgap-deps")
    assert check["status"] == status, check
    assert ("k3s airgap images" in check["message"]) == (status == "fail")


def test_port_taken_by_another_process(doctor: Callable[..., PhaseRun]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = doctor(overrides={"API_PORT": str(port)})
    check = res.check("port-conflict")
    assert check["status"] == "fail" and str(port) in check["message"] and "python" in check["message"]
    assert "ss -ltnp" in check["fix"]
    assert res.returncode == 1


def test_k3s_stopped(doctor: Callable[..., PhaseRun], sandbox_root: Path, tmp_path: Path) -> None:
    install_standin(sandbox_root, tmp_path, free_port())
    res = doctor()
    assert res.check("k3s-installed")["status"] == "pass"
    assert res.check("k3s-service")["status"] == "fail"
    assert "not running" in res.check("k3s-service")["message"]
    assert res.check("api-ping")["message"] == "k3s is not running (see k3s-service)"


HA = {"TOPOLOGY": "ha", "CONTROL_PLANE_IPS": "127.0.0.1,127.0.0.2,127.0.0.3", "API_VIP": "127.0.0.100"}


@pytest.mark.parametrize("role, service, other", [("agent", "k3s-agent", "k3s.service"),
                                                  ("first-server", "k3s", "k3s-agent")])
def test_k3s_service_is_the_one_k3s_names_for_the_role(doctor: Callable[..., PhaseRun], sandbox_root: Path,
                                                       tmp_path: Path, role: str, service: str, other: str) -> None:
    """On an agent doctor looks at k3s-agent (k3s' name for an agent's service), on a server at k3s."""
    install_standin(sandbox_root, tmp_path, free_port())
    res = doctor("--role", role, overrides=HA)
    check = res.check("k3s-service")
    assert check["status"] == "fail", res.stderr
    assert f"its service {service} is not running" in check["message"] and other not in check["message"]
    assert f"systemctl start {service}" in check["message"] and f"journalctl -u {service}" in check["message"]


def _shim(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    bindir = tmp_path / "shims"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bindir / name).chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("leap,status", [("Not synchronised", "fail"), ("Normal", "pass")])
def test_clock_sync_from_chronyc(doctor: Callable[..., PhaseRun], tmp_path: Path, leap: str, status: str) -> None:
    # seam: a chronyc on PATH answering like chrony does (no NTP server in this sandbox)
    env = _shim(tmp_path, "chronyc", f"printf 'System time     : 0.000012 seconds fast of NTP time\\n"
                                      f"Leap status     : {leap}\\n'")
    check = doctor(env=env).check("clock-sync")
    assert check["status"] == status, check
    if status == "fail":
        assert "Not synchronised" in check["message"] and "chrony" in check["fix"]


def test_clock_unknown_without_chronyd(doctor: Callable[..., PhaseRun], tmp_path: Path) -> None:
    env = _shim(tmp_path, "chronyc", "echo '506 Cannot talk to daemon' >&2; exit 1")
    check = doctor(env=env).check("clock-sync")
    assert check["status"] == "warn" and "Cannot talk to daemon" in check["message"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_nearly_full(doctor: Callable[..., PhaseRun], sandbox_root: Path) -> None:
    with tmpfs(sandbox_root / "var/lib/rancher", "4m") as mnt:
        (mnt / "k3s").mkdir()
        (mnt / "k3s/fill").write_bytes(b"\0" * (3900 * 1024))
        check = doctor().check("disk-pressure")
    assert check["status"] == "fail", check
    assert "eviction threshold" in check["message"] and "crictl rmi --prune" in check["fix"]


def test_memory_pressure_from_meminfo(doctor: Callable[..., PhaseRun], sandbox_root: Path) -> None:
    (sandbox_root / "proc").mkdir()
    (sandbox_root / "proc/meminfo").write_text("MemTotal:  4000000 kB\nMemFree: 50000 kB\nMemAvailable:  60000 kB\n")
    check = doctor().check("memory-pressure")
    assert check["status"] == "fail" and "58 MiB of 3906 MiB" in check["message"]


def _cert(path: Path, *, days: int | None = None, not_before: datetime.datetime | None = None) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start = not_before or now - datetime.timedelta(hours=1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, path.stem)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days or 365)).sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_certificate_near_expiry(doctor: Callable[..., PhaseRun], sandbox_root: Path, tmp_path: Path) -> None:
    install_standin(sandbox_root, tmp_path, free_port())
    tls = sandbox_root / "var/lib/rancher/k3s/server/tls"
    _cert(tls / "server-ca.crt", days=3650)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tmp_path / "k"), "-out", str(tls / "client-admin.crt"),
                    "-days", "3", "-subj", "/CN=system:admin"], check=True, capture_output=True)
    check = doctor().check("cert-expiry")
    assert check["status"] == "fail" and "client-admin.crt" in check["message"], check
    assert "day(s) left" in check["message"] and "certificate rotate" in check["fix"]
    (tls / "client-admin.crt").unlink()
    _cert(tls / "client-admin.crt", days=20)
    assert doctor().check("cert-expiry")["status"] == "warn"


def test_clock_behind_certificates(doctor: Callable[..., PhaseRun], sandbox_root: Path, tmp_path: Path) -> None:
    install_standin(sandbox_root, tmp_path, free_port())
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=5)
    _cert(sandbox_root / "var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt", not_before=future)
    check = doctor().check("clock-cert-skew")
    assert check["status"] == "fail" and "behind" in check["message"] and "serving-kube-apiserver" in check["message"]


def test_x509_time_errors_in_the_k3s_log(doctor: Callable[..., PhaseRun], sandbox_root: Path, tmp_path: Path) -> None:
    install_standin(sandbox_root, tmp_path, free_port())
    (sandbox_root / "var/log").mkdir(parents=True)
    (sandbox_root / "var/log/k3s.log").write_text(
        'E1201 10:00:00 "Unable to authenticate" err="x509: certificate has expired or is not yet valid: current '
        'time 2020-01-01T00:00:00Z is before 2026-11-30T00:00:00Z"\n')
    check = doctor().check("clock-cert-skew")
    assert check["status"] == "fail" and "not yet valid" in check["message"]


class _Dns(threading.Thread):
    """Answers every UDP query on ADDR:53 with the same id (a minimal DNS responder)."""

    def __init__(self, addr: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.2)
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            self.sock.sendto(data[:2] + b"\x81\x80" + data[4:], peer)


def test_dns_no_nameserver_answers(doctor: Callable[..., PhaseRun]) -> None:
    check = doctor().check("dns")
    assert check["status"] == "fail" and SILENT_DNS in check["message"]
    assert "resolv.conf" in check["fix"]


def test_dns_answering_loopback_resolver_warns(doctor: Callable[..., PhaseRun], sandbox_root: Path) -> None:
    addr = f"127.77.{os.getpid() % 200 + 20}.53"
    try:
        server = _Dns(addr)
    except OSError as exc:
        pytest.skip(f"cannot bind {addr}:53: {exc}")
    server.start()
    try:
        plant_resolv(sandbox_root, addr)
        check = doctor().check("dns")
    finally:
        server.stop = True
        server.join()
        server.sock.close()
    assert check["status"] == "warn" and "loopback" in check["message"], check


def test_config_drift_against_settings_and_another_server(doctor: Callable[..., PhaseRun], sandbox_root: Path,
                                                          tmp_path: Path) -> None:
    install_standin(sandbox_root, tmp_path, free_port())
    other = tmp_path / "other-config.yaml"
    other.write_text('cluster-cidr: "10.99.0.0/16"\nservice-cidr: "10.43.0.0/16"\n')
    check = doctor("--compare", str(other)).check("config-drift")
    assert check["status"] == "warn"
    assert "differs from what the settings produce" in check["message"]
    assert "cluster-cidr: 10.99.0.0/16" in check["message"] and str(other) in check["message"]
    config = sandbox_root / "etc/rancher/k3s/config.yaml"
    config.write_text(config.read_text() + 'cluster-cidr: "10.50.0.0/16"\n')
    assert doctor().check("cni-config")["status"] == "fail"


def test_bad_input_exit_2(doctor: Callable[..., PhaseRun], tmp_path: Path) -> None:
    for args in (("--role", "boss"), ("--bundle", str(tmp_path / "nope")), ("--since", "x"), ("--frobnicate",),
                 ("--role", "agent"), ("--compare", str(tmp_path / "missing.yaml"))):
        res = doctor(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert res.report["status"] == "fail"


SECRETS = {"token": "K10deadbeefcafe::server:Sup3rS3cretJoinPass", "regpass": "Regi$try-Pa55word!",
           "vrrp": "vrrpPw9x"}


def _plant_secrets(root: Path, bundle: Path) -> dict[str, str]:
    """A sandbox holding known secrets everywhere doctor --bundle looks; returns the settings overrides."""
    secrets = bundle / "planted"
    secrets.mkdir()
    (secrets / "k3s-token").write_text(SECRETS["token"] + "\n")
    (secrets / "registry-password").write_text(SECRETS["regpass"])
    for p in secrets.iterdir():
        p.chmod(0o600)
    data = root / "var/lib/rancher/k3s/server"
    data.mkdir(parents=True)
    (data / "token").write_text(SECRETS["token"] + "\n")
    etc = root / "etc/rancher/k3s"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "registries.yaml").write_text(
        f'configs:\n  "reg.example:5000":\n    auth:\n      username: "gl"\n      password: "{SECRETS["regpass"]}"\n')
    (root / "etc/keepalived").mkdir(parents=True)
    (root / "etc/keepalived/keepalived.conf").write_text(
        f"vrrp_instance VI_1 {{\n  authentication {{\n    auth_type PASS\n    auth_pass {SECRETS['vrrp']}\n  }}\n}}\n")
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/k3s.log").write_text(f"level=info msg=\"joining with token {SECRETS['token']}\"\n"
                                          f"level=info msg=\"server:Sup3rS3cretJoinPass\"\n")
    return {"K3S_TOKEN_FILE": str(secrets / "k3s-token"), "REGISTRY_PASSWORD_FILE": str(secrets / "registry-password"),
            "REGISTRY_USER": "gl"}


def test_support_bundle_holds_no_secret(doctor: Callable[..., PhaseRun], sandbox_root: Path, bundle: Path,
                                        tmp_path: Path) -> None:
    overrides = _plant_secrets(sandbox_root, bundle)
    install_standin(sandbox_root, tmp_path, free_port())
    out = tmp_path / "out"
    out.mkdir()
    res = doctor("--bundle", str(out), overrides=overrides)
    archives = list(out.iterdir())
    assert len(archives) == 1 and archives[0].name.endswith(".tar.gz"), archives
    assert res.report["bundle"] == str(archives[0])
    assert archives[0].stat().st_mode & 0o077 == 0
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(archives[0]), "-C", str(unpacked)], check=True)
    files = {p.relative_to(unpacked).as_posix(): p.read_bytes() for p in unpacked.rglob("*") if p.is_file()}
    names = "\n".join(files)
    for want in ("checks.json", "checks.txt", "logs/k3s.log", "configs/config.yaml", "configs/registries.yaml",
                 "configs/keepalived.conf", "configs/settings.env", "facts/host.txt"):
        assert f"/{want}" in names, names
    blob = b"\n".join(files.values())
    for secret in [*SECRETS.values(), "Sup3rS3cretJoinPass"]:
        assert secret.encode() not in blob, f"{secret} leaked into the support bundle"
    assert b"<redacted by gl-doctor>" in blob
    log = next(v for k, v in files.items() if k.endswith("logs/k3s.log"))
    assert b"joining with token <redacted by gl-doctor>" in log  # redacted, not emptied
    report = json.loads(next(v for k, v in files.items() if k.endswith("checks.json")))
    assert report["phase"] == "doctor" and report["checks"]
    keep = next(v for k, v in files.items() if k.endswith("configs/keepalived.conf"))
    assert b"auth_type PASS" in keep  # redaction keeps the structure


def test_support_bundle_on_a_full_disk_leaves_nothing(doctor: Callable[..., PhaseRun], sandbox_root: Path,
                                                      tmp_path: Path) -> None:
    install_standin(sandbox_root, tmp_path, free_port())
    (sandbox_root / "var/log").mkdir(parents=True)
    # a log that gzip cannot squeeze below the 256 KiB tmpfs: random text lines
    (sandbox_root / "var/log/k3s.log").write_bytes(
        b"".join(base64.b64encode(os.urandom(1500)) + b"\n" for _ in range(400)))
    with tmpfs(tmp_path / "small", "256k") as out:
        res = doctor("--bundle", str(out))
        left = list(out.iterdir())
    assert res.returncode == 1
    assert left == [], left
    assert "could not write the support bundle" in res.stderr and "no partial archive" in res.stderr
    assert res.report["status"] == "fail"
