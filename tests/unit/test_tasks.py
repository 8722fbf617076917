"""invoke tasks: docstrings and help everywhere, role handling, bad input, --dry-run, precedence."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from invoke import Collection, Program

REPO = Path(__file__).resolve().parents[2]


def _namespace() -> Collection:
    spec = importlib.util.spec_from_file_location("gl_tasks_under_test", REPO / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns


NS = _namespace()


def _walk(ns: Collection, prefix: str = "") -> Iterator[tuple[str, object]]:
    for name, task in ns.tasks.items():
        yield prefix + name, task
    for name, sub in ns.collections.items():
        yield from _walk(sub, f"{prefix}{name}.")


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run a task in-process like the `invoke` command; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        Program(namespace=NS, name="gldeploy", binary="invoke").run(["invoke", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def vrrp_file(tmp_path: Path) -> str:
    """LB_VRRP_PASSWORD_FILE=<a 0600 file>: cluster plans stage the API VIP load balancer."""
    pw = tmp_path / "vrrp-password"
    pw.write_text("Xy7.pass\n")
    pw.chmod(0o600)
    return f"LB_VRRP_PASSWORD_FILE={pw}"


@pytest.fixture(autouse=True)
def _clean_gl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GL_"):
            monkeypatch.delenv(name)


def test_every_task_has_a_one_line_docstring_and_help_for_every_option() -> None:
    names = dict(_walk(_namespace()))  # fresh: invoke consumes help= when a task is first parsed
    for expected in ("pre-install-check", "install-k3s", "deploy-gl-backend", "health-check", "deploy",
                     "cluster.init", "scripts.render", "settings.show", "settings.keys", "settings.docs"):
        assert expected in names
    for name, task in names.items():
        doc = (task.__doc__ or "").strip()  # type: ignore[attr-defined]
        assert doc and len(doc.splitlines()) == 1, f"{name}: needs a one-line docstring"
        for arg in task.get_arguments():  # type: ignore[attr-defined]
            assert arg.help, f"{name} --{arg.name}: no help="


def test_invoke_list_shows_the_tasks() -> None:
    proc = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("pre-install-check", "install-k3s", "deploy-gl-backend", "health-check", "deploy",
                 "cluster.init", "scripts.render", "settings.show", "settings.docs"):
        assert f"  {name} " in proc.stdout


def test_cluster_init_bogus_role_lists_valid_roles(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "cluster.init", "--role", "bogus")
    assert code == 2
    assert "first-server, server, agent" in err


@pytest.mark.parametrize("role,hosts,phases", [
    ("server", ["192.168.57.12", "192.168.57.13"], ["01_pre_install_check", "02_init_control_plane"]),
    ("agent", ["192.168.57.21", "192.168.57.22"], ["01_pre_install_check", "03_join_worker_node"]),
])
def test_cluster_init_join_roles_plan_their_hosts_and_phases(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             role: str, hosts: list[str], phases: list[str]) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken")
    token.chmod(0o600)
    code, out, _ = invoke(capsys, "cluster.init", "--role", role, "--dry-run", "--set", f"K3S_TOKEN_FILE={token}",
                          "--set", vrrp_file(tmp_path))
    assert code == 0, out
    steps = [line.split()[0].rstrip(":") + " " + line.split()[1] for line in out.splitlines() if " $ " in line]
    # a plain password cannot pin the cluster CA: the joiners get the first server's full token
    assert sorted(steps) == sorted([f"{h} {p}" for h in hosts for p in phases] + ["192.168.57.11 fetch-join-token"])
    assert "t0ken" not in out


def test_cluster_join_runs_servers_one_at_a_time_then_agents(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken")
    token.chmod(0o600)
    code, out, _ = invoke(capsys, "cluster.join", "--dry-run", "--set", f"K3S_TOKEN_FILE={token}",
                          "--set", vrrp_file(tmp_path))
    assert code == 0, out
    order = [line for line in out.splitlines() if line.startswith("order (ha): ")][0]
    assert order == ("order (ha): 01_pre_install_check (hosts together) -> 02_init_control_plane (one host at a "
                     "time) -> 03_join_worker_node (hosts together)")
    # the first server is not changed by a join: only its token is read (a plain password cannot pin the CA)
    first = [line for line in out.splitlines() if line.startswith("  192.168.57.11: ")]
    assert [line.split(" $ ")[1].rstrip("'").split()[-2:] for line in first if " $ " in line] == \
        [["cat", "/var/lib/rancher/k3s/server/token"]]
    joins = [line for line in out.splitlines() if "192.168.57.12: 02_init_control_plane" in line]
    assert "--server-url https://192.168.57.100:16443 --token-file /var/lib/gl-deploy/secrets/k3s-token" in joins[0]


@pytest.mark.parametrize("argv", [["deploy", "-h"], ["cluster.init", "-h"], ["scripts.render", "-h"],
                                  ["pre-install-check", "-h"]])
def test_dash_h_is_help_in_every_task(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = invoke(capsys, *argv)
    assert code == 0 and "Usage: invoke" in out and "Options:" in out, out + err


def test_short_flags_mean_the_same_option_in_every_task() -> None:
    from gldeploy.tasks import SHORT_FLAGS
    seen: dict[str, str] = {}
    for name, task in _walk(_namespace()):  # a fresh namespace: invoke consumes help= on first use
        for arg in task.get_arguments():  # type: ignore[attr-defined]
            shorts = [n for n in arg.names if len(n) == 1]
            assert "h" not in shorts, f"{name} --{arg.name} takes -h, which is help"
            for flag in shorts:
                assert seen.setdefault(flag, arg.name) == arg.name, f"-{flag} is --{seen[flag]} and --{arg.name}"
                assert SHORT_FLAGS.get(arg.attr_name or arg.name) == flag or SHORT_FLAGS.get(arg.name) == flag


def test_a_run_with_warnings_exits_3_and_the_report_agrees(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from gldeploy import plan, results

    def warned(settings: object, built: plan.Plan, links: object, **kwargs: object) -> list[results.PhaseResult]:
        return [results.PhaseResult(s.phase, s.host, s.role, "warn", 3, 0.1, message="swap is on")
                for s in built.steps]

    monkeypatch.setattr(plan, "execute", warned)
    report = tmp_path / "report.json"
    code, out, err = invoke(capsys, "pre-install-check", "--hosts", "local", "--json-report", str(report),
                            "--set", f"WORK_DIR={tmp_path / 'w'}")
    assert code == 3, out + err
    assert "warning" in err and "1 warning" in err
    assert json.loads(report.read_text())["exit_code"] == 3


def test_cluster_init_first_server_plans_01_and_02_init(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken")
    token.chmod(0o600)
    code, out, _ = invoke(capsys, "cluster.init", "--role", "first-server", "--dry-run",
                          "--set", f"K3S_TOKEN_FILE={token}", "--set", vrrp_file(tmp_path))
    assert code == 0
    steps = [line for line in out.splitlines() if " $ " in line]
    assert [line.split()[1] for line in steps] == ["01_pre_install_check", "02_init_control_plane"]
    assert all(line.startswith("  192.168.57.11: ") and "--role first-server" in line for line in steps)
    assert "t0ken" not in out


def test_bad_env_file_is_exit_2_with_file_and_line_and_nothing_touched(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    work = tmp_path / "work"
    env.write_text(f"CONTROL_PLANE_IPS=192.168.56.10\nWORK_DIR={work}\nBACKEND_REPLICAS=two\n")
    code, out, err = invoke(capsys, "deploy", "--env", str(env), "--hosts", "local")
    assert code == 2
    assert f"{env}:3" in err and "BACKEND_REPLICAS" in err and "whole number" in err
    assert not work.exists() and "copying bundle" not in out


def test_dry_run_prints_plan_lines_for_each_host(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    code, out, _ = invoke(capsys, "pre-install-check", "--dry-run", "--hosts", "10.0.0.1,10.0.0.2",
                          "--set", f"WORK_DIR={work}")
    assert code == 0
    for host in ("10.0.0.1", "10.0.0.2"):
        assert f"host {host}: transport ssh root@{host}, bundle {work}" in out
        assert f"  {host}: 01_pre_install_check [single] $ ssh " in out
    assert not work.exists()


def test_install_k3s_local_dry_run_touches_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import gldeploy.transport

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"--dry-run started a process: {args}")

    monkeypatch.setattr(gldeploy.transport.subprocess, "Popen", no_process)
    monkeypatch.setattr(gldeploy.transport.subprocess, "run", no_process)
    work = tmp_path / "work"
    before = set(tmp_path.iterdir())
    code, out, _ = invoke(capsys, "install-k3s", "--hosts", "local", "--dry-run", "--set", f"WORK_DIR={work}")
    assert code == 0
    assert f"host local: transport local (this machine), bundle {work}" in out
    assert (f"local: 02_install_k3s [single] $ env GL_BUNDLE_DIR={work} timeout -k 10 1080 bash "
            f"{work}/02_install_k3s.sh --json --role single") in out
    assert set(tmp_path.iterdir()) == before


def test_dry_run_writes_nothing_on_this_machine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work_dir = tmp_path / "gl-deploy"
    code, out, _ = invoke(capsys, "deploy", "--hosts", "local,192.168.56.10", "--dry-run",
                          "--set", f"WORK_DIR={work_dir}")
    assert code == 0 and out.count(": 04_health_check [single] $ ") == 2
    assert str(work_dir) in out and not work_dir.exists()


def test_precedence_env_file_then_environment_then_set(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "site.env"
    env.write_text("CONTROL_PLANE_IPS=192.168.56.10\nWORK_DIR=/from/file\nBACKEND_REPLICAS=2\nNAMESPACE=from-file\n")
    monkeypatch.setenv("GL_WORK_DIR", "/from/environment")
    monkeypatch.setenv("GL_BACKEND_REPLICAS", "3")
    code, out, _ = invoke(capsys, "pre-install-check", "--env", str(env), "--dry-run",
                          "--set", "BACKEND_REPLICAS=4")
    assert code == 0 and "bundle /from/environment" in out
    code, out, _ = invoke(capsys, "settings.show", "--env", str(env), "--set", "BACKEND_REPLICAS=4")
    assert code == 0
    rows = {line.split("=", 1)[0]: [line.split("=", 1)[1].split("  # ")[0].strip(), line.split("  # ")[1]]
            for line in out.splitlines() if not line.startswith("#")}
    assert rows["NAMESPACE"] == ["from-file", f"{env}:4"]
    assert rows["WORK_DIR"] == ["/from/environment", "environment GL_WORK_DIR"]
    assert rows["BACKEND_REPLICAS"] == ["4", "--set BACKEND_REPLICAS"]
    assert rows["API_PORT"] == ["6443", "default"]


def test_settings_show_never_prints_secret_contents(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("very-secret-token")
    token.chmod(0o600)
    code, out, _ = invoke(capsys, "settings.show", "--set", f"K3S_TOKEN_FILE={token}")
    assert code == 0 and "very-secret-token" not in out and "secret file" in out
    assert f"K3S_TOKEN_FILE={token}" in out


def test_settings_docs_writes_every_key_and_is_idempotent(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    from gldeploy import settings
    target = tmp_path / "configuration.md"
    assert invoke(capsys, "settings.docs", "--out", str(target))[0] == 0
    text = target.read_text()
    assert all(f"| `{key}` |" in text for key in settings.KEYS)
    code, out, _ = invoke(capsys, "settings.docs", "--out", str(target))
    assert code == 0 and "no change" in out


def test_scripts_render_task_then_no_change(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "dist"
    code, out, _ = invoke(capsys, "scripts.render", "--out", str(out_dir))
    assert code == 0 and (out_dir / "SHA256SUMS").is_file() and "wrote 01_pre_install_check.sh" in out
    code, out, _ = invoke(capsys, "scripts.render", "--out", str(out_dir))
    assert code == 0 and "no change" in out


def test_scripts_render_requires_out(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "scripts.render")
    assert code == 2 and "--out is required" in err


def test_committed_configuration_doc_is_current(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """docs/configuration.md must match the settings table (run `invoke settings.docs`)."""
    target = tmp_path / "configuration.md"
    assert invoke(capsys, "settings.docs", "--out", str(target))[0] == 0
    committed = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert committed.read_text() == target.read_text(), "run `invoke settings.docs` and commit"
