"""Phase 02 (install k3s) run for real in a sandbox GL_ROOT with the k3s stand-in as the release."""
from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.fixtures.k3s_standin.release import make_release, write_sums
from tests.fixtures.k3s_standin.testing import free_port, https_get, serve_dir, standin_pid, stop_standin

VERSION = "v1.28.3+k3s2"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def release(tmp_path: Path) -> Path:
    dest = tmp_path / "release"
    make_release(dest, VERSION)
    return dest


@pytest.fixture
def k3s(run_phase: Callable[..., Any], sandbox_root: Path, release: Path) -> Iterator[Callable[..., Any]]:
    """Run phase 02 (or another script) against the stand-in release on a free port; stop k3s after."""
    port = free_port()

    def run(*args: str, script: str = "02_install_k3s", role: str | None = "single",
            env: dict[str, str] | None = None, **overrides: str) -> Any:
        """role: passed as --role (as the plan always does) unless None or already in args."""
        values = {"K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(port), "HEALTH_TIMEOUT": "30",
                  "K3S_VERSION": VERSION, **overrides}
        if role is not None and "--role" not in args:
            args = (*args, "--role", role)
        return run_phase(script, *args, overrides=values, env=env)

    run.port = port  # type: ignore[attr-defined]
    yield run
    stop_standin(sandbox_root)


def test_install_writes_k3s_files_with_private_modes_and_serves_ping(k3s: Any, sandbox_root: Path) -> None:
    result = k3s("--json")
    assert result.returncode == 0, result.stderr
    report = result.report
    assert (report["phase"], report["status"], report["changed"], report["k3s_mode"]) == \
        ("02_install_k3s", "pass", True, "standin")
    etc, data = sandbox_root / "etc/rancher/k3s", sandbox_root / "var/lib/rancher/k3s"
    for private in (etc / "config.yaml", etc / "k3s.yaml", data / "server/token", data / "server/node-token",
                    sandbox_root / "etc/systemd/system/k3s.service.env"):
        assert mode(private) == 0o600, private
    assert mode(sandbox_root / "usr/local/bin/k3s") == 0o755
    for link in ("kubectl", "crictl", "ctr"):
        assert (sandbox_root / "usr/local/bin" / link).resolve() == sandbox_root / "usr/local/bin/k3s"
    assert "ExecStart=/usr/local/bin/k3s server" in (sandbox_root / "etc/systemd/system/k3s.service").read_text()
    config = yaml.safe_load((etc / "config.yaml").read_text())
    assert config["https-listen-port"] == k3s.port
    assert config["write-kubeconfig-mode"] == "0600"
    assert (config["cluster-cidr"], config["service-cidr"]) == ("10.42.0.0/16", "10.43.0.0/16")
    assert "192.168.56.10" in config["tls-san"] and config.get("disable") in (None, [])
    assert config["secrets-encryption"] is True
    assert "cluster-init" not in config and "node-ip" not in config  # single; 192.168.56.10 is not local
    assert config["data-dir"] == str(data)
    ca = data / "server/tls/server-ca.crt"
    assert https_get(k3s.port, "/ping", ca) == b"pong"
    served_ca = https_get(k3s.port, "/cacerts", ca)
    token = (data / "server/token").read_text().strip()
    assert token.startswith(f"K10{hashlib.sha256(served_ca).hexdigest()}::server:")


def test_second_run_changes_nothing_and_restarts_nothing(k3s: Any, sandbox_root: Path) -> None:
    assert k3s().returncode == 0
    pid = standin_pid(sandbox_root)
    config = sandbox_root / "etc/rancher/k3s/config.yaml"
    before = config.stat().st_mtime_ns
    again = k3s("--json")
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False
    assert "no change: nothing restarted" in again.stderr
    assert standin_pid(sandbox_root) == pid is not None
    assert config.stat().st_mtime_ns == before


def test_config_change_restarts_k3s(k3s: Any, sandbox_root: Path) -> None:
    assert k3s().returncode == 0
    pid = standin_pid(sandbox_root)
    changed = k3s("--json", K3S_DISABLE="servicelb,traefik")
    assert changed.returncode == 0, changed.stderr
    assert changed.report["changed"] is True
    assert "config.yaml" in changed.check("k3s files")["message"]
    assert standin_pid(sandbox_root) not in (None, pid)
    config = yaml.safe_load((sandbox_root / "etc/rancher/k3s/config.yaml").read_text())
    assert config["disable"] == ["servicelb", "traefik"]


def test_stopped_k3s_is_started_again(k3s: Any, sandbox_root: Path) -> None:
    assert k3s().returncode == 0
    stop_standin(sandbox_root)
    result = k3s("--json")
    assert result.returncode == 0, result.stderr
    assert result.report["changed"] is True
    assert "was not running" in result.check("k3s service")["message"]
    assert standin_pid(sandbox_root) is not None


def test_tampered_binary_is_refused_before_touching_the_host(k3s: Any, release: Path, sandbox_root: Path) -> None:
    with (release / "k3s").open("ab") as fh:
        fh.write(b"\n# tampered\n")
    result = k3s("--json")
    assert result.returncode == 1
    assert "sha256" in result.stderr and "sha256sum-amd64.txt" in result.stderr
    assert result.check("k3s artifacts")["status"] == "fail"
    assert tree(sandbox_root) == []


def test_k3s_sha256_mismatch_is_refused(k3s: Any, sandbox_root: Path) -> None:
    result = k3s(K3S_SHA256="0" * 64)
    assert result.returncode == 1
    assert "K3S_SHA256" in result.stderr
    assert tree(sandbox_root) == []


def test_matching_k3s_sha256_is_accepted(k3s: Any, release: Path) -> None:
    digest = hashlib.sha256((release / "k3s").read_bytes()).hexdigest()
    result = k3s("--json", K3S_SHA256=digest)
    assert result.returncode == 0, result.stderr
    assert "K3S_SHA256" in result.check("k3s artifacts")["message"]


def test_missing_sums_file_is_bad_input(k3s: Any, release: Path, sandbox_root: Path) -> None:
    (release / "sha256sum-amd64.txt").unlink()
    result = k3s()
    assert result.returncode == 2
    assert "K3S_ARTIFACTS_DIR" in result.stderr and "sha256sum-amd64.txt" in result.stderr
    assert tree(sandbox_root) == []


@pytest.mark.parametrize("role, message", [
    ("server", "no server to join: set API_VIP"),
    ("agent", "no server to join: set API_VIP"),
    ("worker", "expected one of single, first-server, server, agent"),
])
def test_join_without_a_server_or_unknown_role_exits_2(k3s: Any, sandbox_root: Path, role: str, message: str) -> None:
    result = k3s("--role", role)
    assert result.returncode == 2
    assert message in result.stderr
    assert tree(sandbox_root) == []


def test_init_control_plane_is_first_server_with_cluster_init(k3s: Any, sandbox_root: Path) -> None:
    result = k3s("--json", script="02_init_control_plane", role="first-server", TOPOLOGY="ha",
                 CONTROL_PLANE_IPS="192.168.57.11,192.168.57.12,192.168.57.13", API_VIP="192.168.57.100")
    assert result.returncode == 0, result.stderr
    assert result.report["phase"] == "02_init_control_plane"
    config = yaml.safe_load((sandbox_root / "etc/rancher/k3s/config.yaml").read_text())
    assert config["cluster-init"] is True
    assert {"192.168.57.11", "192.168.57.12", "192.168.57.13", "192.168.57.100"} <= set(config["tls-san"])
    assert (sandbox_root / "var/lib/rancher/k3s/server/standin-cluster-init").read_text().strip() == "True"


def test_init_control_plane_after_install_first_server_changes_nothing(k3s: Any, sandbox_root: Path) -> None:
    """Both entry points install the same first server: alternating them must not rewrite config.yaml."""
    assert k3s("--role", "first-server").returncode == 0
    pid = standin_pid(sandbox_root)
    config = sandbox_root / "etc/rancher/k3s/config.yaml"
    before = config.read_bytes()
    for args, script in ((("--json",), "02_init_control_plane"), (("--json", "--role", "first-server"), "02_install_k3s")):
        again = k3s(*args, script=script, role="first-server")
        assert again.returncode == 0, again.stderr
        assert (again.report["phase"], again.report["changed"]) == (script, False)
        assert "no change: nothing restarted" in again.stderr
        assert standin_pid(sandbox_root) == pid is not None
        assert config.read_bytes() == before
    assert yaml.safe_load(before)["cluster-init"] is True


@pytest.mark.parametrize("script, topology", [("02_install_k3s", "single"), ("02_init_control_plane", "ha")])
def test_missing_role_is_bad_input_with_usage(k3s: Any, sandbox_root: Path, script: str, topology: str) -> None:
    """The role comes from the caller (the plan always passes --role); no default rule in bash."""
    ips = "192.168.57.11,192.168.57.12,192.168.57.13" if topology == "ha" else "192.168.56.10"
    result = k3s(script=script, role=None, TOPOLOGY=topology, CONTROL_PLANE_IPS=ips, API_VIP="192.168.57.100"
                 if topology == "ha" else "")
    assert result.returncode == 2
    assert "--role is required" in result.stderr and f"usage: {script}.sh" in result.stderr
    assert tree(sandbox_root) == []


def test_download_from_release_url_verifies_and_installs(k3s: Any, tmp_path: Path, sandbox_root: Path) -> None:
    site = tmp_path / "site"
    make_release(site / VERSION, VERSION)  # the server decodes %2B to the tag name, like GitHub
    with serve_dir(site) as (url, requests):
        result = k3s("--json", K3S_ARTIFACTS_DIR="", K3S_RELEASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "/v1.28.3%2Bk3s2/k3s" in requests and "/v1.28.3%2Bk3s2/sha256sum-amd64.txt" in requests
    assert result.report["k3s_mode"] == "standin"


def test_download_404_fails_clearly(k3s: Any, tmp_path: Path, sandbox_root: Path) -> None:
    (tmp_path / "empty").mkdir()
    with serve_dir(tmp_path / "empty") as (url, _):
        result = k3s("--json", K3S_ARTIFACTS_DIR="", K3S_RELEASE_URL=url)
    assert result.returncode == 1
    assert f"download of {url}/v1.28.3%2Bk3s2/k3s failed" in result.stderr
    assert tree(sandbox_root) == []


def test_airgap_images_are_verified_and_copied(k3s: Any, release: Path, sandbox_root: Path) -> None:
    tarball = release / "k3s-airgap-images-amd64.tar"
    tarball.write_bytes(b"image layers")
    write_sums(release)
    assert k3s().returncode == 0
    assert (sandbox_root / "var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar").read_bytes() == \
        b"image layers"


def test_airgap_images_not_in_sums_are_refused(k3s: Any, release: Path, sandbox_root: Path) -> None:
    (release / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"unlisted")
    result = k3s()
    assert result.returncode == 1
    assert "not listed in sha256sum-amd64.txt" in result.stderr
    assert tree(sandbox_root) == []


def test_token_and_registry_secrets_stay_in_0600_files(k3s: Any, tmp_path: Path, sandbox_root: Path,
                                                       bundle: Path) -> None:
    from gldeploy import settings
    from gldeploy.site import registries as site_registries
    token, password, ca = tmp_path / "k3s-token", tmp_path / "registry-password", tmp_path / "ca.crt"
    token.write_text("cluster-secret-1234\n")
    password.write_text("s3cr3t-'\"pw\n")
    for secret in (token, password):
        secret.chmod(0o600)
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    keys = {"REGISTRY": "registry.gov.local:5000", "REGISTRY_USER": "deploy",
            "REGISTRY_PASSWORD_FILE": str(password), "REGISTRY_CA_FILE": str(ca)}
    # the bundle carries the registries.yaml gldeploy rendered (bundle.py stages it): 02 installs it as is
    loaded = settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=192.168.56.10",
                                                        *(f"{k}={v}" for k, v in keys.items())])
    rendered = site_registries.write(loaded, bundle / "secrets")
    result = k3s("--json", K3S_TOKEN_FILE=str(token), **keys)
    assert result.returncode == 0, result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    etc = sandbox_root / "etc/rancher/k3s"
    registries_file = etc / "registries.yaml"
    assert mode(registries_file) == 0o600 and mode(etc / "cluster-token") == 0o600
    assert registries_file.read_bytes() == rendered.read_bytes()
    registries = yaml.safe_load(registries_file.read_text())
    assert registries["mirrors"]["registry.gov.local:5000"]["endpoint"] == ["https://registry.gov.local:5000"]
    conf = registries["configs"]["registry.gov.local:5000"]
    assert conf["auth"] == {"username": "deploy", "password": "s3cr3t-'\"pw"}
    assert conf["tls"]["ca_file"] == "/etc/rancher/k3s/registry-ca.crt"
    assert (etc / "registry-ca.crt").read_bytes() == ca.read_bytes()
    server_token = (sandbox_root / "var/lib/rancher/k3s/server/token").read_text().strip()
    assert server_token.endswith("::server:cluster-secret-1234")


def test_world_readable_token_file_is_bad_input(k3s: Any, tmp_path: Path, sandbox_root: Path) -> None:
    token = tmp_path / "k3s-token"
    token.write_text("cluster-secret\n")
    token.chmod(0o644)
    result = k3s(K3S_TOKEN_FILE=str(token))
    assert result.returncode == 2
    assert "chmod 600" in result.stderr and "K3S_TOKEN_FILE" in result.stderr
    assert tree(sandbox_root) == []


def test_uninstall_script_stops_k3s_and_removes_files(k3s: Any, sandbox_root: Path) -> None:
    import subprocess

    assert k3s().returncode == 0
    pid = standin_pid(sandbox_root)
    subprocess.run([str(sandbox_root / "usr/local/bin/k3s-uninstall.sh")], check=True, capture_output=True)
    assert standin_pid(sandbox_root) is None and pid is not None
    leftovers = [p for p in tree(sandbox_root) if Path(sandbox_root, p).is_file()]
    assert leftovers == []


def _local_unicast_address() -> str:
    import subprocess
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True).stdout
    addresses = [line.split()[3].split("/")[0] for line in out.splitlines()]
    if not addresses:
        pytest.skip("this machine has no global IPv4 address to act as the node address")
    return addresses[0]


def test_node_ip_is_set_only_for_a_local_address(k3s: Any, sandbox_root: Path) -> None:
    local = _local_unicast_address()
    result = k3s(CONTROL_PLANE_IPS=local)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((sandbox_root / "etc/rancher/k3s/config.yaml").read_text())
    assert config["node-ip"] == local


def test_standin_agent_checks_the_ca_hash_in_the_token(k3s: Any, sandbox_root: Path) -> None:
    import os
    import subprocess

    assert k3s().returncode == 0
    binary = str(sandbox_root / "usr/local/bin/k3s")
    url = f"https://127.0.0.1:{k3s.port}"
    token = (sandbox_root / "var/lib/rancher/k3s/server/token").read_text().strip()
    bad = subprocess.run([binary, "agent", "--server", url], capture_output=True, text=True, timeout=10,
                         env={**os.environ, "K3S_TOKEN": "K10" + "0" * 64 + "::server:x"})
    assert bad.returncode == 1 and "but the token expects 000" in bad.stderr
    good = subprocess.Popen([binary, "agent", "--server", url], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "K3S_TOKEN": token})
    try:
        assert good.stderr is not None
        assert "CA verified" in good.stderr.readline()
    finally:
        good.terminate()
        good.wait(timeout=10)
