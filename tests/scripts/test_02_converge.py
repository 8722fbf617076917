"""Phase 02 converges: an interrupted run is finished by the next one, k3s' own directory modes,
SELinux decided on the host, no settings re-checked in bash, a clear failure without curl."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_02_install_k3s import k3s, release, tree  # noqa: F401  (shared fixtures)

from tests.fixtures.k3s_standin.testing import free_port, https_get, standin_pid

CONFIG = "etc/rancher/k3s/config.yaml"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_written_but_not_applied_is_applied_by_the_next_run(k3s: Any, sandbox_root: Path) -> None:
    """Interrupted after config.yaml was written, before the restart: the next run must restart k3s,
    because the running k3s was started with another configuration than the one installed."""
    assert k3s().returncode == 0
    pid = standin_pid(sandbox_root)
    new_port = free_port()
    config = sandbox_root / CONFIG
    # what an interrupted run with API_PORT=new_port leaves behind: the new file, the old process
    config.write_text(config.read_text().replace(f"https-listen-port: {k3s.port}\n",
                                                 f"https-listen-port: {new_port}\n"))
    result = k3s("--json", API_PORT=str(new_port), HEALTH_TIMEOUT="8")
    assert result.returncode == 0, result.stderr
    assert result.report["changed"] is True
    assert result.check("k3s files")["message"].startswith("binary, config.yaml")  # files were current
    assert "restarted: the running k3s was started with other files" in result.check("k3s service")["message"]
    assert standin_pid(sandbox_root) not in (None, pid)
    ca = sandbox_root / "var/lib/rancher/k3s/server/tls/server-ca.crt"
    assert https_get(new_port, "/ping", ca) == b"pong"  # the running k3s has the new configuration
    again = k3s("--json", API_PORT=str(new_port))
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False and "no change: nothing restarted" in again.stderr


def test_started_state_is_recorded_per_start(k3s: Any, sandbox_root: Path) -> None:
    """The record of what the running k3s was started with is written by the start itself (the unit's
    ExecStartPre, or the pidfile start), so a k3s restarted outside the phase is recorded too."""
    assert k3s().returncode == 0
    unit = (sandbox_root / "etc/systemd/system/k3s.service").read_text()
    assert "ExecStartPre=-/usr/local/bin/k3s-gl-state.sh --record" in unit
    record = sandbox_root / "run/gl-deploy/k3s.started"
    assert record.is_file() and mode(record) == 0o600
    helper = sandbox_root / "usr/local/bin/k3s-gl-state.sh"
    import subprocess
    current = subprocess.run([str(helper)], capture_output=True, text=True, check=True).stdout.strip()
    assert record.read_text().strip() == current and len(current) == 64


def test_missing_record_restarts_once(k3s: Any, sandbox_root: Path) -> None:
    """A running k3s with nothing recorded (started before this version, or by hand) is restarted once."""
    assert k3s().returncode == 0
    pid = standin_pid(sandbox_root)
    (sandbox_root / "run/gl-deploy/k3s.started").unlink()
    result = k3s("--json")
    assert result.returncode == 0, result.stderr
    assert standin_pid(sandbox_root) not in (None, pid)
    assert k3s("--json").report["changed"] is False


def test_directories_get_k3s_own_modes_under_a_strict_umask(k3s: Any, sandbox_root: Path, release: Path) -> None:
    """k3s: data dir 0755 (cmd/k3s/main.go MkdirAll(data-dir/data, 0755)), agent dir 0700
    (pkg/agent/run.go MkdirAll(agentDir, 0700)), /etc/rancher/k3s 0755 (kubeconfig dir); the images dir
    as the k3s docs create it (mkdir -p: 0755). Whatever the operator's umask is."""
    (release / "k3s-airgap-images-amd64.tar").write_bytes(b"layers")
    from tests.fixtures.k3s_standin.release import write_sums
    write_sums(release)
    old = os.umask(0o077)
    try:
        result = k3s()
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    expected = {"etc/rancher": 0o755, "etc/rancher/k3s": 0o755, "var/lib/rancher": 0o755,
                "var/lib/rancher/k3s": 0o755, "var/lib/rancher/k3s/agent": 0o700,
                "var/lib/rancher/k3s/agent/images": 0o755}
    assert {d: mode(sandbox_root / d) for d in expected} == expected


def test_agent_dir_left_0755_by_an_older_install_is_fixed(k3s: Any, sandbox_root: Path) -> None:
    assert k3s().returncode == 0
    agent = sandbox_root / "var/lib/rancher/k3s/agent"
    agent.chmod(0o755)
    result = k3s("--json")
    assert result.returncode == 0, result.stderr
    assert mode(agent) == 0o700 and result.report["changed"] is True


@pytest.mark.parametrize("enforce, expected", [("1", True), ("0", None), (None, None)])
def test_selinux_true_only_where_selinux_is_enforcing(k3s: Any, sandbox_root: Path, enforce: str | None,
                                                      expected: bool | None) -> None:
    if enforce is not None:
        (sandbox_root / "sys/fs/selinux").mkdir(parents=True)
        (sandbox_root / "sys/fs/selinux/enforce").write_text(enforce)
    result = k3s()
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((sandbox_root / CONFIG).read_text())
    assert config.get("selinux") is expected


def test_settings_are_not_rechecked_in_bash(k3s: Any, sandbox_root: Path) -> None:
    """settings.env is complete and validated by gldeploy: bash has no rules of its own on its values."""
    text = "".join((Path(__file__).resolve().parents[2] / "scripts/lib" / name).read_text()
                   for name in ("k3s.sh", "k3s_install.sh", "k3s_files.sh"))
    for rule in ("K3S_VERSION is empty", "CONTROL_PLANE_IPS is empty", "expected a port number",
                 "K3S_RELEASE_URL are both empty", "TOPOLOGY", "${K3S_ARCH:-", "${SECRETS_ENCRYPTION:-",
                 "${HEALTH_TIMEOUT:-", "${K3S_DISABLE:-", "${API_VIP:-", "${REGISTRY:-", "${K3S_TOKEN_FILE:-"):
        assert rule not in text, rule


def test_missing_curl_fails_clearly_before_touching_the_host(k3s: Any, sandbox_root: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin-without-curl"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = Path(directory, name)
            if name != "curl" and not (bin_dir / name).exists() and os.access(target, os.X_OK):
                (bin_dir / name).symlink_to(target)
    result = k3s("--json", HEALTH_TIMEOUT="5", env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "command not found" not in result.stderr
    assert "curl is not installed" in result.stderr
    assert result.check("k3s prerequisites")["status"] == "fail"
    assert tree(sandbox_root) == []


def test_images_added_by_phase_03_restart_nothing(k3s: Any, sandbox_root: Path) -> None:
    """Only the k3s airgap tarballs 02 installs count as what k3s starts with; 03 imports its own."""
    assert k3s().returncode == 0
    pid = standin_pid(sandbox_root)
    images = sandbox_root / "var/lib/rancher/k3s/agent/images"
    images.mkdir(exist_ok=True)
    (images / "execution-backend-v1.1.oci.tar").write_bytes(b"backend layers")
    again = k3s("--json")
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False and standin_pid(sandbox_root) == pid


def test_server_install_retires_an_agent_service_this_tool_left(k3s: Any, sandbox_root: Path) -> None:
    """A host turned from agent into server: the k3s-agent.service, its env file and
    k3s-agent-uninstall.sh this tool wrote are removed (said so); k3s.service and k3s-uninstall.sh stay."""
    units, bin_dir = sandbox_root / "etc/systemd/system", sandbox_root / "usr/local/bin"
    units.mkdir(parents=True)
    bin_dir.mkdir(parents=True)
    (units / "k3s-agent.service").write_text(
        "[Unit]\nDescription=Lightweight Kubernetes (managed by GL-Native Deploy)\n[Service]\nType=exec\n"
        "EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env\nExecStart=/usr/local/bin/k3s agent\n")
    (units / "k3s-agent.service.env").write_text("# Managed by GL-Native Deploy\n")
    (bin_dir / "k3s-agent-uninstall.sh").write_text("#!/usr/bin/env bash\n# k3s-agent-uninstall.sh (GL-Native Deploy)\n")
    result = k3s("--json")
    assert result.returncode == 0, result.stderr
    assert "k3s-agent.service of an earlier install" in result.stderr
    assert "/etc/systemd/system/k3s-agent.service (removed)" in result.check("k3s files")["message"]
    for gone in (units / "k3s-agent.service", units / "k3s-agent.service.env", bin_dir / "k3s-agent-uninstall.sh"):
        assert not gone.exists(), gone
    unit = (units / "k3s.service").read_text()
    assert "Type=notify" in unit.splitlines() and "ExecStart=/usr/local/bin/k3s server" in unit.splitlines()
    assert "EnvironmentFile=-/etc/systemd/system/k3s.service.env" in unit.splitlines()
    assert mode(units / "k3s.service.env") == 0o600 and mode(bin_dir / "k3s-uninstall.sh") == 0o755
    again = k3s("--json")
    assert again.returncode == 0 and again.report["changed"] is False, again.stderr
