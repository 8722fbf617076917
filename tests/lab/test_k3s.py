"""k3s on the lab hosts: binary, unit, config, secret files, API over TLS, preflight."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gldeploy import sequences
from tests.lab.helpers import eventually

K3S = "/usr/local/bin/k3s"
SECRET_FILES = ["/etc/rancher/k3s/config.yaml", "/etc/rancher/k3s/k3s.yaml",
                "/var/lib/rancher/k3s/server/token", "/var/lib/rancher/k3s/server/node-token"]

pytestmark = pytest.mark.lab


def _sums(k3s_dir: str) -> dict[str, str]:
    lines = (Path(k3s_dir) / "sha256sum-amd64.txt").read_text().splitlines()
    return {p[1]: p[0] for p in (ln.split() for ln in lines) if len(p) == 2}


def test_k3s_binary_version_and_checksum(host: Any, inventory: dict[str, Any], lab_settings: Any) -> None:
    """The installed binary is the pinned version and byte-identical to the artifacts' k3s."""
    binary = host.file(K3S)
    assert binary.is_file and binary.mode & 0o111, f"{K3S} missing or not executable"
    version = host.check_output(f"{K3S} --version")
    assert lab_settings.k3s_version in version
    assert ("(stand-in)" in version) == (inventory["k3s_mode"] == "standin"), version
    assert binary.sha256sum == _sums(inventory["k3s_dir"])["k3s"]
    assert binary.sha256sum == hashlib.sha256((Path(inventory["k3s_dir"]) / "k3s").read_bytes()).hexdigest()


def test_k3s_unit_enabled_and_active(host: Any, node: dict[str, Any]) -> None:
    """systemd runs k3s under the name k3s' install.sh gives this host's role (k3s; an agent k3s-agent),
    starts it at boot, and the role's env file and uninstall script are there; the other name is not."""
    name = sequences.service_of(node["role"])
    other = ({sequences.service_of("server"), sequences.service_of("agent")} - {name}).pop()
    service = host.service(name)
    with host.sudo():
        eventually(lambda: service.is_running, 60, f"{name}.service active")
        assert service.is_enabled
        assert host.file(f"/etc/systemd/system/{name}.service").is_file
        env_file = host.file(f"/etc/systemd/system/{name}.service.env")
        assert env_file.is_file and env_file.mode == 0o600
        uninstall = host.file(sequences.uninstall_of(node["role"]))
        assert uninstall.is_file and uninstall.mode == 0o755
        assert host.file("/usr/local/bin/k3s-killall.sh").is_file
        assert not host.file(f"/etc/systemd/system/{other}.service").exists
        assert not host.file(f"/usr/local/bin/{other}-uninstall.sh").exists


def test_config_yaml_content_and_mode(host: Any, lab_settings: Any, server: dict[str, Any]) -> None:
    """config.yaml carries the settings and only root can read it."""
    config = host.file("/etc/rancher/k3s/config.yaml")
    with host.sudo():
        assert config.mode == 0o600 and config.user == "root"
        text = config.content_string
    assert f'cluster-cidr: "{lab_settings.cluster_cidr}"' in text
    assert f'service-cidr: "{lab_settings.service_cidr}"' in text
    assert f"https-listen-port: {lab_settings.api_port}" in text
    if server["role"] in ("single", "first-server"):
        assert f'node-ip: "{lab_settings.control_plane_ips[0]}"' in text
    if lab_settings.api_vip:  # HA: the VIP is in the serving certificate; joining servers join through it
        assert f'  - "{lab_settings.api_vip}"' in text
        assert ("cluster-init: true" in text) == (server["role"] == "first-server")
    assert f"secrets-encryption: {'true' if lab_settings.secrets_encryption else 'false'}" in text
    for component in lab_settings.k3s_disable:
        assert f'  - "{component}"' in text


@pytest.mark.parametrize("path", SECRET_FILES)
def test_secret_files_are_0600(host: Any, path: str, node: dict[str, Any]) -> None:
    """Token, kubeconfig and config are private to root (an agent has only its config)."""
    if node["role"] == "agent" and path != "/etc/rancher/k3s/config.yaml":
        pytest.skip(f"servers only ({path})")
    with host.sudo():
        f = host.file(path)
        eventually(lambda: f.exists, 60, f"{path} exists")
        assert f.mode == 0o600, f"{path} has mode {oct(f.mode)}"
        assert f.user == "root"


def test_api_port_listening(host: Any, lab_settings: Any, server: dict[str, Any]) -> None:
    """Something listens on the API port on all addresses."""
    port = lab_settings.api_port
    eventually(lambda: any(host.socket(f"tcp://{a}:{port}").is_listening for a in ("0.0.0.0", "::")),
               60, f"port {port} listening")


@pytest.mark.parametrize("address", ["127.0.0.1", "node-ip"])
def test_ping_over_tls(host: Any, lab_settings: Any, address: str, server: dict[str, Any]) -> None:
    """/ping answers pong over TLS verified against the server CA (loopback and node IP)."""
    target = server["ip"] if address == "node-ip" else address
    with host.sudo():
        out = host.check_output("curl -fsS --max-time 10 --cacert %s %s",
                                "/var/lib/rancher/k3s/server/tls/server-ca.crt",
                                f"https://{target}:{lab_settings.api_port}/ping")
    assert out.strip() == "pong"


def test_preflight_json_clean(host: Any, inventory: dict[str, Any], node: dict[str, Any],
                              lab_settings: Any) -> None:
    """The offline pre-install check, re-run now, reports no failing check (exit 0 pass / 3 warn);
    on nodes where the offline scripts did not run, the deployed bundle's copy (HA labs)."""
    offline = node["name"] in inventory.get("offline_nodes", [node["name"]])
    with host.sudo():
        if offline:
            cmd = host.run("bash /tmp/gl-offline/01_pre_install_check.sh --json --role %s", node["role"])
        else:
            work = lab_settings.work_dir
            cmd = host.run("env GL_BUNDLE_DIR=%s bash %s/01_pre_install_check.sh --json --role %s", work, work,
                           node["role"])
    assert cmd.rc in (0, 3), cmd.stderr[-500:]
    report = json.loads(cmd.stdout)
    assert report["phase"] == "01_pre_install_check"
    assert report["status"] in ("pass", "warn")
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == []
    assert report["k3s_mode"] == inventory["k3s_mode"]  # 01 sees the k3s the offline scripts installed


def test_rerun_changed_nothing(inventory: dict[str, Any]) -> None:
    """The first `invoke deploy` changed the hosts, the second ran the same phases on the same hosts
    and reported no change on any of them (both k3s modes): a run that never reports a change
    cannot pass this."""
    first, second = (json.loads(Path(p).read_text())["results"] for p in inventory["deploy_reports"])
    assert first and second, "empty deploy report"
    assert [(r["phase"], r["host"]) for r in second] == [(r["phase"], r["host"]) for r in first]
    assert any(r.get("changed") for r in first), "the first deploy reported no change at all"
    assert [f"{r['phase']}@{r['host']}" for r in second if r.get("changed")] == []
    assert all(r["status"] in ("pass", "warn", "skipped") for r in second), second
