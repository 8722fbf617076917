"""The API VIP on a cluster lab (docs/cluster.md): HAProxy + Keepalived on the load balancer nodes
(the servers, co-located), nothing of it on the workers, exactly one VIP holder, /ping through
https://VIP:LB_PORT from every node, and the agents pointed at the VIP."""
from __future__ import annotations

from typing import Any

import pytest
import testinfra

from tests.lab.helpers import eventually

pytestmark = pytest.mark.lab
MARK = "Managed by GL-Native Deploy"
LAB_CA = "/home/vagrant/.gl-lab/api-ca.crt"  # the cluster's server CA, copied by the lab


def _is_lb(node: dict[str, Any], ha: dict[str, Any]) -> bool:
    return node["ip"] in ha["lb_nodes"]


@pytest.mark.parametrize("unit", ["haproxy", "keepalived"])
def test_lb_services_only_on_lb_nodes(host: Any, node: dict[str, Any], ha: dict[str, Any], unit: str) -> None:
    """Load balancer nodes run HAProxy and Keepalived and start them at boot; other nodes do not."""
    service = host.service(unit)
    with host.sudo():
        if _is_lb(node, ha):
            eventually(lambda: service.is_running, 30, f"{unit} active")
            assert service.is_enabled
        else:
            assert not service.is_running and not service.is_enabled


def test_lb_files_and_modes(host: Any, node: dict[str, Any], ha: dict[str, Any], lab_settings: Any) -> None:
    """keepalived.conf 0600 (VRRP password), the track script 0755, haproxy.cfg ours with every server."""
    if not _is_lb(node, ha):
        pytest.skip(f"load balancer nodes only ({node['name']} is not one)")
    with host.sudo():
        conf = host.file("/etc/keepalived/keepalived.conf")
        assert conf.mode == 0o600 and conf.user == "root"
        text = conf.content_string
        assert f"unicast_src_ip {node['ip']}" in text and f"{ha['vip']}/" in text
        assert host.file("/etc/keepalived/gl-check-haproxy.sh").mode == 0o755
        cfg = host.file("/etc/haproxy/haproxy.cfg").content_string
    assert MARK in cfg and f"bind *:{ha['lb_port']}" in cfg
    for ip in lab_settings.control_plane_ips:
        assert f" {ip}:{lab_settings.api_port}" in cfg


def test_haproxy_listens_on_lb_port(host: Any, node: dict[str, Any], ha: dict[str, Any]) -> None:
    if not _is_lb(node, ha):
        pytest.skip(f"load balancer nodes only ({node['name']} is not one)")
    eventually(lambda: host.socket(f"tcp://0.0.0.0:{ha['lb_port']}").is_listening, 30,
               f"HAProxy on *:{ha['lb_port']}")


def test_ping_through_the_vip(host: Any, ha: dict[str, Any]) -> None:
    """From every node (servers and agents) /ping answers through https://VIP:LB_PORT, the TLS
    certificate verified against the cluster CA for the VIP address."""
    out = host.check_output("curl -fsS --max-time 10 --cacert %s %s", LAB_CA,
                            f"https://{ha['vip']}:{ha['lb_port']}/ping")
    assert out.strip() == "pong"


def test_agents_join_through_the_vip(host: Any, node: dict[str, Any], ha: dict[str, Any]) -> None:
    """An agent's k3s config points at the VIP and the load balancer port, not at one server."""
    if node["role"] != "agent":
        pytest.skip("agents only")
    with host.sudo():
        text = host.file("/etc/rancher/k3s/config.yaml").content_string
    assert f'server: "https://{ha["vip"]}:{ha["lb_port"]}"' in text, text


def test_exactly_one_vip_holder(inventory: dict[str, Any], ha: dict[str, Any]) -> None:
    """VRRP gives the VIP to exactly one load balancer node."""
    holders = []
    for ip in ha["lb_nodes"]:
        node = testinfra.get_host(f"ssh://{ip}?ssh_config={inventory['ssh_config']}")
        out = node.check_output("ip -o -4 addr show dev %s", ha["interface"])
        if f" {ha['vip']}/" in out:
            holders.append(ip)
    assert len(holders) == 1, holders
