"""Rendered standalone scripts run with bash alone and agree with the invoke path."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gldeploy import plan, render, sequences, settings
from tests.fixtures.k3s_standin.testing import SMALL_HOST

BARE_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def lab_settings(tmp_path: Path) -> settings.Settings:
    """Lab-sized minimums, a hostile free-text value and a private password file."""
    marker = tmp_path / "marker"
    password = tmp_path / "registry-password"
    password.write_text("pw\n")
    password.chmod(0o600)
    hostile = f"it's \"x\" $(touch {marker}) `touch {marker}` ; echo pwned"
    overrides = [f"{k}={v}" for k, v in SMALL_HOST.items()]
    overrides += ["CONTROL_PLANE_IPS=192.168.56.10", f"REGISTRY_USER={hostile}",
                  f"REGISTRY_PASSWORD_FILE={password}", f"WORK_DIR={tmp_path / 'work'}"]
    return settings.load(None, environ={}, overrides=overrides)


def _checks(report: dict[str, object]) -> list[tuple[str, str]]:
    return [(c["name"], c["status"]) for c in report["checks"]]  # type: ignore[index, union-attr]


def test_rendered_01_runs_with_bash_only_and_matches_the_invoke_path(
        lab_settings: settings.Settings, tmp_path: Path) -> None:
    out = tmp_path / "standalone"
    render.render_standalone(lab_settings, out, sample_image=True, version="gldeploy test")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run(["env", "-i", BARE_PATH, "bash", str(out / "01_pre_install_check.sh"),
                           "--role", "single", "--json"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 3), proc.stderr
    rendered = json.loads(proc.stdout)
    assert rendered["phase"] == "01_pre_install_check" and rendered["status"] in ("pass", "warn")
    assert rendered["changed"] is False
    assert not (tmp_path / "marker").exists()
    assert "pwned" not in proc.stdout + proc.stderr.replace("echo pwned", "")

    built = plan.build(lab_settings, ["01_pre_install_check"], hosts=["local"])
    [via_invoke] = plan.execute(lab_settings, built, plan.transports(lab_settings, built, echo=None),
                                sample_image=True, progress=lambda _: None)
    assert via_invoke.status == rendered["status"]
    assert [(c["name"], c["status"]) for c in via_invoke.checks] == _checks(rendered)
    assert not (tmp_path / "marker").exists()


def test_rendered_01_rejects_bad_arguments_with_exit_2(lab_settings: settings.Settings, tmp_path: Path) -> None:
    out = tmp_path / "standalone"
    render.render_standalone(lab_settings, out, version="gldeploy test")
    proc = subprocess.run(["env", "-i", BARE_PATH, "bash", str(out / "01_pre_install_check.sh"), "--bogus"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr


def test_rendered_bundle_installs_like_the_invoke_path_with_bash_only(tmp_path: Path) -> None:
    """All four rendered scripts, bash only, in a sandbox root: install, deploy, health; rerun = no change."""
    from tests.fixtures.k3s_standin.release import make_release
    from tests.fixtures.k3s_standin.testing import free_port, stop_standin

    make_release(tmp_path / "release", "v1.28.3+k3s2")
    overrides = [f"{k}={v}" for k, v in SMALL_HOST.items()]
    overrides += ["CONTROL_PLANE_IPS=192.168.56.10", f"K3S_ARTIFACTS_DIR={tmp_path / 'release'}",
                  f"API_PORT={free_port()}"]
    loaded = settings.load(None, environ={}, overrides=overrides)
    out = tmp_path / "standalone"
    render.render_standalone(loaded, out, with_artifacts=True, sample_image=True, version="gldeploy test")
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out).returncode == 0
    root = tmp_path / "root"
    root.mkdir()
    phases = sequences.sequence("single")

    def run_all() -> dict[str, dict]:
        reports = {}
        for phase in phases:  # exactly as README.txt says: the table's order, --role where taken
            name = phase.name
            role = ["--role", "single"] if phase.takes_role else []
            proc = subprocess.run(["env", "-i", BARE_PATH, f"GL_ROOT={root}", "bash", f"{name}.sh", *role, "--json"],
                                  cwd=out, capture_output=True, text=True, timeout=90)
            assert proc.returncode in (0, 3), f"{name}: {proc.stderr[-2000:]}"
            reports[name] = json.loads(proc.stdout)
        return reports

    try:
        first = run_all()
        assert first["02_install_k3s"]["changed"] is True
        assert first["02_install_k3s"]["k3s_mode"] == "standin"
        health = dict(_checks(first["04_health_check"]))
        assert health["api-ping"] == "pass" and health["node-ready"] == "skipped"
        assert (root / "var/lib/rancher/k3s/agent/images/execution-backend-v1.1.oci.tar").is_file()
        second = run_all()
        assert [r["changed"] for r in second.values()] == [False, False, False, False]
    finally:
        stop_standin(root)
