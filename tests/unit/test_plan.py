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
      "API_VIP=10.0.0.100", "LB_INTERFACE=eth1"]
K10 = "K10" + "ab" * 32 + "::server:5ecret-from-the-first-server"


@pytest.fixture
def vrrp(tmp_path: Path) -> str:
    """LB_VRRP_PASSWORD_FILE=<a 0600 file> for HA plans that stage the load balancer."""
    pw = tmp_path / "vrrp"
    pw.write_text("Xy7.pass\n")
    pw.chmod(0o600)
    return f"LB_VRRP_PASSWORD_FILE={pw}"


def load(*overrides: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=list(overrides))


class FakeTransport:
    """Records put_dir/run and answers each phase with a scripted (rc, status)."""

    name = "fake"

    def __init__(self, host: str, answers: Mapping[str, tuple[int, str]], token: str = "",
                 checks: Mapping[str, list[dict[str, str]]] | None = None) -> None:
        self.host, self.answers, self.token, self.checks = host, answers, token, checks or {}
        self.calls: list[tuple[str, ...]] = []
        self.bundle_files: list[str] = []
        self.shipped: list[dict[str, tuple[int, bytes]]] = []  # per put_dir: path -> (mode, content)
        self.argvs: list[list[str]] = []

    def describe(self) -> str:
        return f"fake {self.host}"

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        return list(argv)

    def put_dir(self, src: Path, dest: str) -> None:
        self.calls.append(("put_dir", dest))
        self.bundle_files = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
        self.shipped.append({str(p.relative_to(src)): (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
                             for p in src.rglob("*") if p.is_file()})

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Result:
        assert timeout is not None and timeout > 0, "every step must be bounded"
        if argv[0] == "cat":  # the join token read from the first server
            self.calls.append(("run", "cat"))
            self.argvs.append(list(argv))
            return Result(0 if self.token else 1, self.token + "\n" if self.token else "", "")
        phase = Path(argv[1]).stem
        self.calls.append(("run", phase))
        self.argvs.append(list(argv))
        rc, status = self.answers.get(phase, (0, "pass"))
        checks = [{"name": "c1", "status": status, "message": f"{phase} said {status}", "fix": ""},
                  *self.checks.get(phase, [])]
        report = {"phase": phase, "host": self.host, "status": status, "changed": False, "k3s_mode": "none",
                  "checks": checks}
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
    # servers take 02 one at a time (etcd); no K3S_TOKEN_FILE: the first server's token is read right
    # after it is installed, before anyone joins; the agent joins in 03
    assert groups[1:5] == [[("02_init_control_plane", "10.0.0.11")], [(plan.FETCH_TOKEN, "10.0.0.11")],
                           [("02_init_control_plane", "10.0.0.12")], [("02_init_control_plane", "10.0.0.13")]]
    assert groups[5] == [("03_join_worker_node", "10.0.0.21")]
    assert groups[6:8] == [[("04_install_cni", "10.0.0.11")], [("05_deploy_gl_backend", "10.0.0.11")]]
    # the health check runs on every server: each reports its own API, the VIP and its config digest
    assert groups[8] == [("06_health_check", h) for h in ("10.0.0.11", "10.0.0.12", "10.0.0.13")]


def test_every_step_passes_its_role_where_the_phase_takes_one() -> None:
    for env in (SINGLE, HA):
        s = load(*env)
        p = plan.build(s, sequences.names(s.topology))
        for step in p.steps:
            argv = p.argv(step)
            if p.phase(step.phase).takes_role:
                assert argv[3:5] == ["--role", step.role]


def test_ha_refuses_the_single_node_install_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="cluster.init --role first-server"):
        plan.build(load(*HA), SINGLE_NODE)
    with pytest.raises(ConfigError, match="has no phase 02_init_control_plane.*invoke deploy"):
        plan.build(load(*SINGLE), ["02_init_control_plane"])


def test_bad_role_and_bad_hosts_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="hosts take one of single"):
        plan.build(load(*SINGLE), ["01_pre_install_check"], role="boss")
    with pytest.raises(ConfigError, match="take one of first-server, server, agent, lb"):
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


def test_execute_ships_once_per_host_and_a_failure_stops_later_phases_there(vrrp: str) -> None:
    s = load(*HA, vrrp)
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
    out = plan.execute(s, p, plan.transports(s, p, echo=None), sample_image=True, progress=lambda _: None)
    assert out[0].status in ("pass", "warn"), out[0]
    assert any(c["name"] == "cpu" and c["status"] == "pass" for c in out[0].checks)
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert stat.S_IMODE((work / "settings.env").stat().st_mode) == 0o600
    assert f"WORK_DIR={work}" in (work / "settings.env").read_text()


def test_joining_hosts_get_the_vip_endpoint_and_the_token_file_as_arguments(vrrp: str) -> None:
    p = plan.build(load(*HA, vrrp), ["02_init_control_plane", "03_join_worker_node"])
    argv = {(s.phase, s.host): p.argv(s) for s in p.steps}
    join = ["--server-url", "https://10.0.0.100:16443", "--token-file", "/var/lib/gl-deploy/secrets/k3s-token"]
    assert argv[("02_init_control_plane", "10.0.0.11")] == [
        "bash", "/var/lib/gl-deploy/02_init_control_plane.sh", "--json", "--role", "first-server"]
    assert argv[("02_init_control_plane", "10.0.0.12")][3:] == ["--role", "server", *join]
    assert argv[("03_join_worker_node", "10.0.0.21")][3:] == ["--role", "agent", *join]
    dedicated = plan.build(load(*HA, vrrp, "LB_IPS=10.0.0.5,10.0.0.6"), ["03_join_worker_node"])
    assert dedicated.argv(dedicated.steps[0])[6] == "https://10.0.0.100:6443"  # HAProxy on API_PORT there


def test_a_full_k10_token_file_is_shipped_and_nothing_is_read_from_the_first_server(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(K10 + "\n")
    token.chmod(0o600)
    p = plan.build(load(*HA, f"K3S_TOKEN_FILE={token}"), sequences.names("ha"))
    assert p.token_from is None and all(s.phase != plan.FETCH_TOKEN for g in p.groups() for s in g)
    password = tmp_path / "password"  # a plain password: joiners still need the K10 form to pin the CA
    password.write_text("just-a-password\n")
    password.chmod(0o600)
    assert plan.build(load(*HA, f"K3S_TOKEN_FILE={password}"), sequences.names("ha")).token_from == "10.0.0.11"


def test_dedicated_lb_nodes_take_role_lb_and_get_their_vip_up_first(vrrp: str) -> None:
    s = load(*HA, vrrp, "LB_IPS=10.0.0.5,10.0.0.6")
    assert plan.role_of(s, "10.0.0.5") == "lb"
    p = plan.build(s, sequences.names("ha"))
    assert [(x.host, x.role) for x in p.steps if x.phase == "01_pre_install_check"][:2] == \
        [("10.0.0.5", "lb"), ("10.0.0.6", "lb")]
    order = [(g[0].phase, g[0].host) for g in p.groups() if g[0].phase in ("02_init_control_plane", plan.FETCH_TOKEN)]
    assert order[:4] == [("02_init_control_plane", "10.0.0.5"), ("02_init_control_plane", "10.0.0.6"),
                         ("02_init_control_plane", "10.0.0.11"), (plan.FETCH_TOKEN, "10.0.0.11")]
    assert {x.phase for x in p.steps if x.role == "lb"} == {"01_pre_install_check", "02_init_control_plane"}
    assert plan.hosts_of(s, ("lb",)) == ["10.0.0.5", "10.0.0.6"]


def test_execute_reads_the_first_servers_token_and_stages_it_0600_for_the_joiners(vrrp: str) -> None:
    s = load(*HA, vrrp)
    p = plan.build(s, ["01_pre_install_check", "02_init_control_plane", "03_join_worker_node"])
    links = {h: FakeTransport(h, {}, token=K10 if h == "10.0.0.11" else "") for h in p.hosts}
    seen: list[str] = []
    out = plan.execute(s, p, links, progress=seen.append, with_artifacts=False)  # type: ignore[arg-type]
    assert [(r.phase, r.host, r.status) for r in out][4:6] == [
        ("02_init_control_plane", "10.0.0.11", "pass"), (plan.FETCH_TOKEN, "10.0.0.11", "pass")]
    assert links["10.0.0.11"].argvs[-1] == ["cat", "/var/lib/rancher/k3s/server/token"]
    for joiner in ("10.0.0.12", "10.0.0.13", "10.0.0.21"):
        link = links[joiner]
        # shipped before 01 (no token yet), then again with the token before joining
        assert [c for c in link.calls if c[0] == "put_dir"] == [("put_dir", "/var/lib/gl-deploy")] * 2
        assert "secrets/k3s-token" not in link.shipped[0]
        assert link.shipped[1]["secrets/k3s-token"] == (0o600, (K10 + "\n").encode())
    assert len(links["10.0.0.11"].shipped) == 1
    text = "\n".join(seen + [r.message for r in out])
    assert "5ecret-from-the-first-server" not in text


def test_an_unreadable_token_stops_every_joiner_before_it_is_touched_again(vrrp: str) -> None:
    s = load(*HA, vrrp)
    p = plan.build(s, ["02_init_control_plane", "03_join_worker_node"])
    links = {h: FakeTransport(h, {}) for h in p.hosts}  # `cat` of the token fails
    out = plan.execute(s, p, links, progress=lambda _: None, with_artifacts=False)  # type: ignore[arg-type]
    status = {(r.phase, r.host): r.status for r in out}
    assert status[(plan.FETCH_TOKEN, "10.0.0.11")] == "fail"
    assert "could not read the join token /var/lib/rancher/k3s/server/token on 10.0.0.11" in \
        next(r.message for r in out if r.phase == plan.FETCH_TOKEN)
    assert [status[("02_init_control_plane", h)] for h in ("10.0.0.12", "10.0.0.13")] == ["not run"] * 2
    assert status[("03_join_worker_node", "10.0.0.21")] == "not run"
    assert all(link.calls == [] for h, link in links.items() if h != "10.0.0.11")
    assert results.exit_code(out) == 1


def digest(value: str) -> dict[str, str]:
    return {"name": plan.DIGEST_CHECK, "status": "pass", "message": f"sha256:{value} (cluster-cidr, ...)", "fix": ""}


def test_servers_with_different_config_digests_are_a_failed_config_drift(vrrp: str) -> None:
    s = load(*HA, vrrp)
    p = plan.build(s, ["06_health_check"])
    same = {h: FakeTransport(h, {}, checks={"06_health_check": [digest("aa")]}) for h in p.hosts}
    out = plan.execute(s, p, same, progress=lambda _: None, with_artifacts=False)  # type: ignore[arg-type]
    assert [r.host for r in out] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"] and results.exit_code(out) == 0
    drifted = {h: FakeTransport(h, {}, checks={"06_health_check": [digest("bb" if h == "10.0.0.13" else "aa")]})
               for h in p.hosts}
    out = plan.execute(s, p, drifted, progress=lambda _: None, with_artifacts=False)  # type: ignore[arg-type]
    drift = out[-1]
    assert (drift.phase, drift.host, drift.status) == ("06_health_check", "cluster", "fail")
    assert drift.checks[0]["name"] == "config-drift"
    assert "servers 10.0.0.13 differ from 10.0.0.11, 10.0.0.12" in drift.message and "sha256:bb" in drift.message
    assert results.exit_code(out) == 1


def test_bad_load_balancer_settings_exit_2_before_any_host_is_touched(tmp_path: Path, vrrp: str) -> None:
    cases = {"LB_VRRP_PASSWORD_FILE is empty": [*HA],
             "priority 150 to more than one node": [*HA, vrrp, "LB_IPS=10.0.0.5,10.0.0.6", "LB_PRIORITIES=150,150"],
             "not in the subnet": [*(o for o in HA if not o.startswith("API_VIP")), vrrp, "API_VIP=10.0.1.100"]}
    for words, overrides in cases.items():
        try:
            s = load(*overrides)
        except ConfigError as exc:  # the settings' own cross-checks may refuse first
            assert words in str(exc)
            continue
        p = plan.build(s, ["01_pre_install_check", "02_init_control_plane"])
        links = {h: FakeTransport(h, {}) for h in p.hosts}
        with pytest.raises(ConfigError, match=words):
            plan.execute(s, p, links, progress=lambda _: None, with_artifacts=False)  # type: ignore[arg-type]
        assert all(link.calls == [] for link in links.values())
