"""gldeploy.loadbalancer: bad input is refused (exit 2) naming the key; the rendered files say what
the architecture asks (tcp, TLS /ping checks, source affinity, unicast VRRP, auth, track script)."""
from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import Any

import pytest

from gldeploy import loadbalancer as lb
from gldeploy.errors import EXIT_BAD_INPUT, ConfigError
from gldeploy.settings import Settings
from gldeploy.settings import load as load_settings

BASE = lb.LBConfig(vip="192.168.56.100", prefix=24, port=6443,
                   nodes=(lb.LBNode("192.168.56.5", 150), lb.LBNode("192.168.56.6", 140)),
                   servers=("192.168.56.10", "192.168.56.11", "192.168.56.12"), api_port=6443,
                   router_id=51, auth_pass="Xy7.pass", interface="eth1", other_hosts=("192.168.56.21",))


def bad(**changes: Any) -> str:
    with pytest.raises(ConfigError) as info:
        lb.validate(dataclasses.replace(BASE, **changes))
    assert info.value.exit_code == EXIT_BAD_INPUT
    return str(info.value)


def test_a_good_config_passes() -> None:
    assert lb.validate(BASE) is BASE
    assert BASE.endpoint == "https://192.168.56.100:6443" and not BASE.colocated


@pytest.mark.parametrize("changes, key, words", [
    ({"nodes": (lb.LBNode("192.168.56.5", 150), lb.LBNode("192.168.56.6", 150))}, "LB_PRIORITIES",
     "both have priority 150"),
    ({"vip": "10.0.0.100"}, "API_VIP", "not in the subnet of load balancer node 192.168.56.5"),
    ({"vip": "192.168.56.5"}, "API_VIP", "also a host address in LB_IPS"),
    ({"vip": "192.168.56.11"}, "API_VIP", "also a host address in CONTROL_PLANE_IPS"),
    ({"vip": "192.168.56.21"}, "API_VIP", "also a host address in WORKER_IPS"),
    ({"vip": "192.168.56.255"}, "API_VIP", "network or broadcast"),
    ({"vip": "10.42.0.100", "prefix": 16, "nodes": (lb.LBNode("10.42.0.5", 150), lb.LBNode("10.42.0.6", 140))},
     "API_VIP", "inside CLUSTER_CIDR"),
    ({"vip": "10.43.7.1", "prefix": 16, "nodes": (lb.LBNode("10.43.0.5", 150), lb.LBNode("10.43.0.6", 140))},
     "API_VIP", "inside SERVICE_CIDR"),
    ({"nodes": (lb.LBNode("192.168.56.5", 150), lb.LBNode("192.168.56.5", 140))}, "LB_IPS", "listed twice"),
    ({"servers": ("192.168.56.10", "192.168.56.10", "192.168.56.12")}, "CONTROL_PLANE_IPS", "listed twice"),
    ({"nodes": (lb.LBNode("192.168.56.5", 150),)}, "LB_IPS", "at least 2"),
    ({"nodes": (lb.LBNode("192.168.56.10", 150), lb.LBNode("192.168.56.11", 140))}, "LB_PORT",
     "both k3s and HAProxy"),
    ({"nodes": (lb.LBNode("192.168.56.5", 255), lb.LBNode("192.168.56.6", 140))}, "LB_PRIORITIES", "1..254"),
    ({"router_id": 0}, "LB_VRRP_ROUTER_ID", "1..255"),
    ({"auth_pass": "longer-than-8"}, "LB_VRRP_PASSWORD_FILE", "1 to 8 characters"),
    ({"auth_pass": "a b#"}, "LB_VRRP_PASSWORD_FILE", "1 to 8 characters"),
    ({"interface": ""}, "LB_INTERFACE", "not an interface name"),
    ({"interface": "eth1 }"}, "LB_INTERFACE", "not an interface name"),
])
def test_bad_input_names_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    message = bad(**changes)
    assert f"{key}:" in message and words in message


def test_the_error_names_where_the_key_was_set() -> None:
    message = bad(vip="10.0.0.100", origins={"API_VIP": "env/cluster.env:7"})
    assert message.startswith("env/cluster.env:7: API_VIP:")


def test_colocated_on_the_servers_on_another_port() -> None:
    cfg = lb.validate(dataclasses.replace(BASE, port=16443, nodes=(
        lb.LBNode("192.168.56.10", 150), lb.LBNode("192.168.56.11", 140), lb.LBNode("192.168.56.12", 130))))
    assert cfg.colocated and "bind *:16443" in lb.render_haproxy(cfg)


def test_haproxy_config() -> None:
    text = lb.render_haproxy(BASE)
    for line in ("mode tcp", "bind *:6443", "balance source", "hash-type consistent", "option httpchk GET /ping",
                 "http-check expect status 200", "server k3s-1 192.168.56.10:6443",
                 "server k3s-3 192.168.56.12:6443"):
        assert line in text
    default_server = next(x for x in text.splitlines() if x.strip().startswith("default-server"))
    assert {"check", "check-ssl", "verify", "none"} <= set(default_server.split())


def test_keepalived_config_per_node() -> None:
    text = lb.render_keepalived(BASE, "192.168.56.6")
    lines = [x.strip() for x in text.splitlines()]
    for line in ("state BACKUP", "interface eth1", "virtual_router_id 51", "priority 140", "nopreempt",
                 "unicast_src_ip 192.168.56.6", "check_unicast_src", "auth_type PASS", "auth_pass Xy7.pass",
                 "192.168.56.100/24 dev eth1", "gl_haproxy", f'script "{lb.CHECK_SCRIPT}"'):
        assert line in lines, line
    peers = text.split("unicast_peer {")[1].split("}")[0].split()
    assert peers == ["192.168.56.5"]  # the other nodes, never itself
    # keepalived silently drops the password of a one-line block: every block spans lines
    assert all(x.count("{") + x.count("}") <= 1 for x in lines)
    assert "nopreempt" not in lb.render_keepalived(dataclasses.replace(BASE, preempt=True), "192.168.56.6")
    with pytest.raises(ConfigError, match="192.168.56.99 is not one of the load balancer nodes"):
        lb.render_keepalived(BASE, "192.168.56.99")


def test_track_script_checks_this_haproxy_port() -> None:
    assert "/dev/tcp/127.0.0.1/6443" in lb.render_check_script(BASE)


def test_written_files_and_modes(tmp_path: Path) -> None:
    paths = lb.write_node_files(BASE, "192.168.56.5", tmp_path / "lb")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes == {"haproxy.cfg": 0o644, "keepalived.conf": 0o600, "gl-check-haproxy.sh": 0o755}
    assert "Xy7.pass" not in repr(BASE)


def settings(tmp_path: Path, **values: Any) -> Settings:
    """Real loaded Settings (typed attributes) of a co-located cluster; values as key=value overrides."""
    pw = tmp_path / "vrrp-pass"
    if not pw.exists():
        pw.write_text("Xy7.pass\n")
        pw.chmod(0o600)
    base: dict[str, Any] = {"TOPOLOGY": "ha", "API_VIP": "192.168.56.100",
                            "CONTROL_PLANE_IPS": "192.168.56.10,192.168.56.11,192.168.56.12",
                            "LB_INTERFACE": "eth1", "LB_VRRP_PASSWORD_FILE": str(pw)}
    base.update({k.upper(): ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in values.items()})
    return load_settings(None, environ={}, overrides=[f"{k}={v}" for k, v in base.items()])


def test_from_settings_colocated_by_default(tmp_path: Path) -> None:
    cfg = lb.from_settings(settings(tmp_path))
    assert [n.address for n in cfg.nodes] == ["192.168.56.10", "192.168.56.11", "192.168.56.12"]
    assert [n.priority for n in cfg.nodes] == [150, 140, 130]
    assert cfg.port == 16443 and cfg.auth_pass == "Xy7.pass" and cfg.endpoint == "https://192.168.56.100:16443"


def test_from_settings_dedicated_nodes(tmp_path: Path) -> None:
    cfg = lb.from_settings(settings(tmp_path, lb_ips=("192.168.56.5", "192.168.56.6"), lb_priorities=(100, 200)))
    assert cfg.port == 6443 and not cfg.colocated
    assert [(n.address, n.priority) for n in cfg.nodes] == [("192.168.56.5", 100), ("192.168.56.6", 200)]


def test_from_settings_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"LB_PRIORITIES has 1 value\(s\) for 2"):
        lb.from_settings(settings(tmp_path, lb_ips=("192.168.56.5", "192.168.56.6"), lb_priorities=(100,)))
    with pytest.raises(ConfigError, match="LB_VRRP_PASSWORD_FILE is empty"):
        lb.from_settings(settings(tmp_path, lb_vrrp_password_file=""))
    with pytest.raises(ConfigError, match="TOPOLOGY=ha needs API_VIP"):  # the settings refuse it first
        lb.from_settings(settings(tmp_path, api_vip=""))
    (tmp_path / "vrrp-pass").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        lb.from_settings(settings(tmp_path))


def test_from_settings_names_the_file_and_line(tmp_path: Path) -> None:
    env = tmp_path / "cluster.env"
    env.write_text("TOPOLOGY=ha\nCONTROL_PLANE_IPS=192.168.56.10,192.168.56.11,192.168.56.12\n"
                   "API_VIP=192.168.56.100\nLB_INTERFACE=eth1\nLB_VRRP_PASSWORD_FILE=\n")
    with pytest.raises(ConfigError, match=r"cluster.env:5: LB_VRRP_PASSWORD_FILE is empty"):
        lb.from_settings(load_settings(env, environ={}))


def test_bundle_stages_one_directory_per_lb_node_with_keepalived_under_secrets(tmp_path: Path) -> None:
    from gldeploy import bundle, render, sequences
    s = settings(tmp_path, worker_ips=("192.168.56.21",))
    phase = sequences.phase("ha", "02_init_control_plane")
    info = bundle.build_bundle(s, tmp_path / "b", [phase], baked=False, staging=bundle.Staging(k3s_artifacts=False))
    for addr in s.control_plane_ips:
        assert {f"lb/{addr}/haproxy.cfg", f"lb/{addr}/gl-check-haproxy.sh",
                f"secrets/lb/{addr}/keepalived.conf"} <= set(info.files)
        conf = tmp_path / "b" / "secrets/lb" / addr / "keepalived.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and f"unicast_src_ip {addr}" in conf.read_text()
    assert stat.S_IMODE((tmp_path / "b/secrets").stat().st_mode) == 0o700
    assert not any("keepalived" in f for f in info.files if not f.startswith("secrets/"))
    sums = render._sha256sums(tmp_path / "b")  # the rendered directory's list leaves secrets/ out
    assert "lb/192.168.56.10/haproxy.cfg" in sums and "keepalived.conf" not in sums
    assert "Xy7.pass" not in sums


def test_bad_lb_settings_refuse_the_bundle_before_anything_is_written(tmp_path: Path) -> None:
    from gldeploy import bundle, sequences
    s = settings(tmp_path, lb_interface="")
    with pytest.raises(ConfigError, match="LB_INTERFACE"):
        bundle.build_bundle(s, tmp_path / "b", sequences.sequence("ha"), baked=False,
                            staging=bundle.Staging(k3s_artifacts=False))
    assert not (tmp_path / "b").exists()
