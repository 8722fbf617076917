"""Plan building, --dry-run text, execution order/stopping, and results aggregation."""
from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path
from typing import Mapping, Sequence

import pytest

from gldeploy import plan, results, sequences, settings
from gldeploy.errors import ConfigError
from gldeploy.transport import Local, Result, Ssh

SINGLE = ["CONTROL_PLANE_IPS=192.168.56.10"]
SINGLE_NODE = sequences.names("single")
HA = ["TOPOLOGY=ha", "CONTROL_PLANE_IPS=10.0.0.11,10.0.0.12,10.0.0.13", "WORKER_IPS=10.0.0.21",
      "API_VIP=10.0.0.100"]


def load(*overrides: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=list(overrides))


class FakeTransport:
    """Records put_dir/run and answers each phase with a scripted (rc, status)."""

    name = "fake"

    def __init__(self, host: str, answers: Mapping[str, tuple[int, str]]) -> None:
        self.host, self.answers = host, answers
        self.calls: list[tuple[str, ...]] = []
        self.bundle_files: list[str] = []

    def describe(self) -> str:
        return f"fake {self.host}"

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        return list(argv)

    def put_dir(self, src: Path, dest: str) -> None:
        self.calls.append(("put_dir", dest))
        self.bundle_files = sorted(str(p.relative_to(src)) for p in src.rglob("*"))

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        assert timeout is not None and timeout > 0, "every step must be bounded"
        phase = Path(argv[1]).stem
        self.calls.append(("run", phase))
        rc, status = self.answers.get(phase, (0, "pass"))
        report = {"phase": phase, "host": self.host, "status": status, "changed": False, "k3s_mode": "none",
                  "checks": [{"name": "c1", "status": status, "message": f"{phase} said {status}", "fix": ""}]}
        return Result(rc, json.dumps(report) + "\n", "")

    def close(self) -> None:
        pass


def test_single_node_deploy_plan_is_phase_ordered_with_roles() -> None:
    p = plan.build(load(*SINGLE), SINGLE_NODE)
    assert [(s.phase, s.host, s.role) for s in p.steps] == [
        (name, "192.168.56.10", "single") for name in SINGLE_NODE]
    assert p.needs_artifacts and p.bundle_dir == "/var/lib/gl-deploy"
    assert p.argv(p.steps[0]) == ["bash", "/var/lib/gl-deploy/01_pre_install_check.sh", "--json", "--role", "single"]
    assert p.argv(p.steps[3]) == ["bash", "/var/lib/gl-deploy/04_health_check.sh", "--json"]


def test_ha_roles_and_which_hosts_each_phase_runs_on() -> None:
    s = load(*HA)
    pre = plan.build(s, ["01_pre_install_check"])
    assert [(s.host, s.role) for s in pre.steps] == [
        ("10.0.0.11", "first-server"), ("10.0.0.12", "server"), ("10.0.0.13", "server"), ("10.0.0.21", "agent")]
    init = plan.build(s, ["01_pre_install_check", "02_init_control_plane"], hosts=["10.0.0.11"])
    assert [(x.phase, x.host) for x in init.steps] == [("01_pre_install_check", "10.0.0.11"),
                                                      ("02_init_control_plane", "10.0.0.11")]
    assert plan.hosts_of(s, ("server", "agent")) == ["10.0.0.12", "10.0.0.13", "10.0.0.21"]
    assert plan.hosts_of(s, ("first-server",)) == ["10.0.0.11"]


def test_plan_follows_the_sequence_table_order_and_grouping() -> None:
    s = load(*HA)
    p = plan.build(s, list(reversed(sequences.names("ha"))))  # asked out of order: the table's order wins
    assert [ph.name for ph in p.phases] == list(sequences.names("ha"))
    groups = [[(st.phase, st.host) for st in g] for g in p.groups()]
    assert groups[0] == [("01_pre_install_check", h) for h in ("10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.21")]
    # servers take 02 one at a time (etcd), the agent joins in 03, the rest runs on the first server
    assert groups[1:4] == [[("02_init_control_plane", h)] for h in ("10.0.0.11", "10.0.0.12", "10.0.0.13")]
    assert groups[4] == [("03_join_worker_node", "10.0.0.21")]
    assert [g[0][0] for g in groups[5:]] == ["04_install_cni", "05_deploy_gl_backend", "06_health_check"]
    assert all(host == "10.0.0.11" for g in groups[5:] for _, host in g)


def test_every_step_passes_its_role_where_the_phase_takes_one() -> None:
    for env in (SINGLE, HA):
        s = load(*env)
        p = plan.build(s, sequences.names(s.topology))
        for step in p.steps:
            argv = p.argv(step)
            if p.phase(step.phase).takes_role:
                assert argv[-2:] == ["--role", step.role]


def test_ha_refuses_the_single_node_install_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="cluster.init --role first-server"):
        plan.build(load(*HA), SINGLE_NODE)
    with pytest.raises(ConfigError, match="has no phase 02_init_control_plane.*invoke deploy"):
        plan.build(load(*SINGLE), ["02_init_control_plane"])


def test_bad_role_and_bad_hosts_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="hosts take one of single"):
        plan.build(load(*SINGLE), ["01_pre_install_check"], role="boss")
    with pytest.raises(ConfigError, match="take one of first-server, server, agent"):
        plan.build(load(*HA), ["01_pre_install_check"], role="single")
    with pytest.raises(ConfigError, match="--hosts is empty"):
        plan.parse_hosts(" , ")
    assert plan.parse_hosts("local, 10.0.0.1") == ["local", "10.0.0.1"]


def test_dry_run_text_names_host_transport_bundle_and_exact_commands() -> None:
    s = load(*SINGLE, "SSH_USER=vagrant", "SSH_CONFIG=/lab/ssh config", "WORK_DIR=/opt/gl deploy")
    p = plan.build(s, ["01_pre_install_check", "02_install_k3s"], hosts=["192.168.56.10", "local"])
    links = plan.transports(s, p, echo=None)
    lines = plan.describe(s, p, links)
    text = "\n".join(lines)
    assert "host 192.168.56.10: transport ssh vagrant@192.168.56.10 (-F /lab/ssh config), bundle /opt/gl deploy" in text
    assert "host local: transport local (this machine), bundle /opt/gl deploy" in text
    remote = [line for line in lines if line.startswith("  192.168.56.10: 02_install_k3s")][0]
    local_argv = shlex.split(remote.split(" $ ", 1)[1])
    assert local_argv[:3] == ["ssh", "-F", "/lab/ssh config"]
    bound = f"{plan.step_timeout(s):g}"  # every phase runs under timeout(1) on the host
    from gldeploy.ssh import watched
    assert shlex.split(local_argv[-1]) == ["sudo", "-n", "--", *watched([
        "env", "GL_BUNDLE_DIR=/opt/gl deploy", "timeout", "-k", "10", bound, "bash",
        "/opt/gl deploy/02_install_k3s.sh", "--json", "--role", "single"])]
    assert isinstance(links["local"], Local) and isinstance(links["192.168.56.10"], Ssh)


def test_execute_ships_once_per_host_and_a_failure_stops_later_phases_there() -> None:
    s = load(*HA)
    p = plan.build(s, ["01_pre_install_check", "02_init_control_plane"], hosts=["10.0.0.11", "10.0.0.12"],
                   role="first-server")
    good = FakeTransport("10.0.0.11", {"01_pre_install_check": (3, "warn")})
    bad = FakeTransport("10.0.0.12", {"01_pre_install_check": (1, "fail")})
    out = plan.execute(s, p, {"10.0.0.11": good, "10.0.0.12": bad}, progress=lambda _: None,
                       with_artifacts=False)
    assert good.calls == [("put_dir", "/var/lib/gl-deploy"), ("run", "01_pre_install_check"),
                          ("run", "02_init_control_plane")]
    assert bad.calls == [("put_dir", "/var/lib/gl-deploy"), ("run", "01_pre_install_check")]
    assert [(r.host, r.phase, r.status) for r in out] == [
        ("10.0.0.11", "01_pre_install_check", "warn"), ("10.0.0.12", "01_pre_install_check", "fail"),
        ("10.0.0.11", "02_init_control_plane", "pass"), ("10.0.0.12", "02_init_control_plane", "not run")]
    assert results.exit_code(out) == 1
    assert "settings.env" in good.bundle_files and "lib/common.sh" in good.bundle_files


def test_local_execute_of_01_writes_a_private_bundle(tmp_path: Path) -> None:
    work = tmp_path / "work"
    s = load(*SINGLE, f"WORK_DIR={work}", "MIN_CPU=1", "MIN_MEMORY_MB=256", "MIN_DISK_GB=1")
    p = plan.build(s, ["01_pre_install_check"], hosts=["local"])
    out = plan.execute(s, p, plan.transports(s, p, echo=None), progress=lambda _: None)
    assert out[0].status in ("pass", "warn"), out[0]
    assert any(c["name"] == "cpu" and c["status"] == "pass" for c in out[0].checks)
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert stat.S_IMODE((work / "settings.env").stat().st_mode) == 0o600
    assert f"WORK_DIR={work}" in (work / "settings.env").read_text()
