"""The lab is a list of named steps: `lab.up` re-uses the bring-up steps of `lab.run`; each step is
timed in the report; the offline phases come from the sequences table; remote scripts take their
values as arguments."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from gldeploy import sequences
from gldeploy.errors import ConfigError, DeployError
from gldeploy.lab import offline, runner, site, vagrant
from gldeploy.lab.proc import ssh_argv
from gldeploy.lab.report import LabReport


def test_lab_up_runs_the_same_bring_up_steps_as_lab_run_in_the_same_order() -> None:
    names = [name for name, _ in runner.LAB_STEPS]
    assert len(names) == len(set(names))
    run_steps = dict(runner.LAB_STEPS)
    for name, action in runner.BRING_UP:
        assert run_steps[name] is action  # the same function, not a re-implementation
    positions = [names.index(name) for name, _ in runner.BRING_UP]
    assert positions == sorted(positions)
    assert names[-1] == "testinfra" and "k3s artifacts" not in dict(runner.BRING_UP)


def _run(tmp_path: Path) -> runner.LabRun:
    from rich.console import Console
    return runner.LabRun(runner.Options("single"), runner.nodes.load("single"), LabReport("single", "?", "", "?"),
                         tmp_path, Console())


def test_steps_run_in_order_each_timed_and_a_failure_stops_the_rest(tmp_path: Path) -> None:
    seen: list[str] = []

    def ok(r: runner.LabRun) -> None:
        seen.append("ok")

    def boom(r: runner.LabRun) -> None:
        seen.append("boom")
        raise DeployError("step two broke")

    r = _run(tmp_path)
    with pytest.raises(DeployError, match="step two broke"):
        runner.run_steps(r, (("one", ok), ("two", boom), ("three", ok)))
    assert seen == ["ok", "boom"]
    assert list(r.report.steps) == ["one", "two"]  # the failing step's time is kept, nothing after it


def test_a_step_run_before_what_it_needs_says_so(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="the lab's VMs is not there yet"):
        runner.step_vagrant_up(_run(tmp_path))


def test_offline_phases_come_from_the_sequences_table(tmp_path: Path) -> None:
    for name in reversed(sequences.names("single")):
        (tmp_path / f"{name}.sh").write_text("#!/bin/bash\n")
    (tmp_path / "99_extra.sh").write_text("#!/bin/bash\n")  # never picked up: nothing is globbed
    assert offline.rendered_phases(tmp_path, "single") == sequences.sequence("single")
    assert offline.node_role("single", "single") == "single"
    with pytest.raises(ConfigError, match="not a single role"):
        offline.node_role("agent", "single")


def test_a_phase_missing_from_the_rendered_dir_fails_naming_it(tmp_path: Path) -> None:
    for name in sequences.names("single")[:2]:
        (tmp_path / f"{name}.sh").write_text("#!/bin/bash\n")
    with pytest.raises(DeployError, match="left 03_deploy_gl_backend.sh, 04_health_check.sh out of"):
        offline.rendered_phases(tmp_path, "single")


def test_topology_is_one_of_the_table() -> None:
    assert offline.topology_of("ha") == "ha"
    with pytest.raises(ConfigError, match="TOPOLOGY='multi'"):
        offline.topology_of("multi")


@pytest.mark.parametrize("script", [site.SITE_SCRIPT, vagrant.HOSTNAME_SCRIPT])
def test_remote_scripts_are_valid_bash_with_no_value_inside(script: str) -> None:
    assert subprocess.run(["bash", "-n", "-c", script], capture_output=True).returncode == 0
    assert "192.168." not in script


@pytest.mark.parametrize("value", ["192.168.56.1", "x'; reboot; '", "$(id)"])
def test_remote_script_values_arrive_as_one_argument(value: str, tmp_path: Path) -> None:
    for argv in (site.site_argv(value), vagrant.hostname_argv(value)):
        remote = ssh_argv(tmp_path / "cfg", "h", argv)[-1]
        assert shlex.split(remote) == argv and argv[-1] == value


def _fake_deploy(monkeypatch: pytest.MonkeyPatch, out: Path, rc: int, statuses: list[str]) -> None:
    import json

    from gldeploy.lab import verify

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        out.write_text(json.dumps({"results": [{"phase": f"0{i}", "host": "h", "status": s, "duration": 1.0}
                                               for i, s in enumerate(statuses, 1)]}))
        return subprocess.CompletedProcess(argv, rc, "", "")
    monkeypatch.setattr(verify, "run", fake_run)


def test_deploy_with_warnings_exit_3_is_a_pass_with_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """invoke exits 3 when every phase passed and some warned (01 on a host already running k3s)."""
    from gldeploy.lab import verify
    out = tmp_path / "d.json"
    _fake_deploy(monkeypatch, out, 3, ["warn", "pass"])
    report = LabReport("single", "standin", "", "TCG")
    data = verify.run_deploy(report, "deploy 2", Path("env/single.env"), [], out)
    assert [r["status"] for r in data["results"]] == ["warn", "pass"]
    assert [r.status for r in report.rows] == ["warn", "pass"]


@pytest.mark.parametrize("rc, statuses", [(1, ["fail", "pass"]), (3, ["fail", "pass"]), (2, ["pass"])])
def test_deploy_failures_still_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rc: int,
                                    statuses: list[str]) -> None:
    from gldeploy.lab import verify
    out = tmp_path / "d.json"
    _fake_deploy(monkeypatch, out, rc, statuses)
    with pytest.raises(DeployError, match="deploy 1: invoke deploy exited"):
        verify.run_deploy(LabReport("single", "standin", "", "TCG"), "deploy 1", Path("env/single.env"), [], out)


def test_offline_join_arguments_are_the_tables_templates_filled_in() -> None:
    class Join:  # a sequences.Phase with HA join argument templates for the agent role
        script = "03_join_worker_node.sh"

        def args_for(self, role: str) -> tuple[str, ...]:
            return ("--server-url", "{server_url}", "--token-file", "{token_file}") if role == "agent" else ()
    values = {"server_url": "https://192.168.56.100:16443", "token_file": "/root/t"}
    assert offline.phase_args(Join(), "agent", values) == [  # type: ignore[arg-type]
        "--server-url", "https://192.168.56.100:16443", "--token-file", "/root/t"]
    assert offline.phase_args(Join(), "server", values) == []  # type: ignore[arg-type]
    with pytest.raises(DeployError, match="needs 'token_file'"):
        offline.phase_args(Join(), "agent", {"server_url": "x"})  # type: ignore[arg-type]
    single = sequences.sequence("single")[0]
    assert offline.phase_args(single, "single", {}) == []


def test_service_of_a_role_is_k3s_install_sh_naming() -> None:
    """k3s' install.sh: a server's service is k3s (k3s-uninstall.sh), an agent's k3s-agent
    (k3s-agent-uninstall.sh); a load balancer node runs no k3s."""
    assert [sequences.service_of(r) for r in ("single", "first-server", "server", "agent")] == \
        ["k3s", "k3s", "k3s", "k3s-agent"]
    assert sequences.uninstall_of("server") == "/usr/local/bin/k3s-uninstall.sh"
    assert sequences.uninstall_of("agent") == "/usr/local/bin/k3s-agent-uninstall.sh"
    with pytest.raises(ValueError, match="role lb runs no k3s"):
        sequences.service_of("lb")


@pytest.mark.parametrize("role, uninstall", [("agent", "/usr/local/bin/k3s-agent-uninstall.sh"),
                                             ("first-server", "/usr/local/bin/k3s-uninstall.sh")])
def test_offline_uninstalls_a_node_with_the_script_of_its_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               role: str, uninstall: str) -> None:
    from gldeploy.lab.nodes import Lab, Node
    for name in sequences.names("ha"):
        (tmp_path / f"{name}.sh").write_text("#!/bin/bash\n")
    calls: list[list[str]] = []

    class Stop(Exception):
        pass

    def fake_ssh(config: Path, ip: str, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if argv[0] == "scp":
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise Stop  # the first phase script: what came before it is what this test is about

    monkeypatch.setattr(offline, "render", lambda *a: None)
    monkeypatch.setattr(offline, "ssh", fake_ssh)
    monkeypatch.setattr(offline, "run", fake_run)
    node = Node("n1", role, 2, 2048, "192.168.56.31")
    lab = Lab("cluster", tmp_path / "x.env", (node,))
    with pytest.raises(Stop):
        offline.run_offline(LabReport("cluster", "?", "", "?"), lab, tmp_path / "x.env", [], tmp_path / "ssh",
                            tmp_path, "ha", arg_values={"server_url": "https://v:1", "token_file": "/t"})
    assert calls[:2] == [["sudo", "test", "-x", uninstall], ["sudo", uninstall]]
