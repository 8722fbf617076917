"""The API VIP of an HA cluster: HAProxy (tcp, /ping health checks, client-IP affinity) behind a
Keepalived VRRP address (unicast peers, PASS authentication, a track script on HAProxy).

Placement: dedicated load balancer nodes (LB_IPS) or, when LB_IPS is empty, co-located on the k3s
servers, where HAProxy listens on LB_PORT (default API_PORT + 10000) so it never collides with
k3s' own API_PORT. docs/cluster.md explains the choice, the preempt behaviour and the failover
figures. Everything here is pure (config in, text out) except `read_auth_pass` and `write_node_files`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from . import secretfile
from .errors import ConfigError

if TYPE_CHECKING:
    from .settings_keys import Settings

AUTH_PASS_RE = re.compile(r"[A-Za-z0-9._+=-]{1,8}")  # VRRP PASS: 8 characters, no config syntax
CHECK_SCRIPT = "/etc/keepalived/gl-check-haproxy.sh"
HAPROXY_CFG, KEEPALIVED_CONF, CHECK_NAME = "haproxy.cfg", "keepalived.conf", "gl-check-haproxy.sh"
COLOCATED_PORT_OFFSET = 10000


@dataclass(frozen=True)
class LBNode:
    address: str
    priority: int  # VRRP priority 1..254; the highest healthy node holds the VIP


@dataclass(frozen=True)
class LBConfig:
    """Everything the HAProxy and Keepalived configurations are rendered from."""

    vip: str
    prefix: int  # prefix length of the VIP's (and the LB nodes') subnet
    port: int  # HAProxy frontend port: clients and joining nodes use https://vip:port
    nodes: tuple[LBNode, ...]
    servers: tuple[str, ...]  # k3s servers (HAProxy backends)
    api_port: int  # k3s' own port on each server
    router_id: int  # VRRP virtual_router_id, 1..255, unique on the LAN segment
    auth_pass: str  # VRRP PASS authentication (read from a 0600 file; never logged)
    interface: str  # interface carrying the node addresses (same name on every LB node)
    preempt: bool = False  # a recovered higher-priority node takes the VIP back
    advert_int: int = 1  # seconds between VRRP adverts (VRRPv2 + PASS auth: whole seconds)
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    other_hosts: tuple[str, ...] = ()  # agents etc.: the VIP must not be one of them
    check_script: str = CHECK_SCRIPT  # where the track script is installed on the nodes
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __repr__(self) -> str:  # never show the password
        return f"LBConfig(vip={self.vip}/{self.prefix}, port={self.port}, nodes={self.nodes})"

    @property
    def colocated(self) -> bool:
        return bool({n.address for n in self.nodes} & set(self.servers))

    @property
    def endpoint(self) -> str:
        """The URL servers, agents and kubeconfigs use for the API: https://VIP:PORT."""
        return f"https://{self.vip}:{self.port}"

    def node(self, address: str) -> LBNode:
        for n in self.nodes:
            if n.address == address:
                return n
        raise ConfigError(f"{self._at('LB_IPS')}: {address} is not one of the load balancer nodes "
                          f"{', '.join(n.address for n in self.nodes)}")

    def _at(self, key: str) -> str:
        return self.origins.get(key, "the settings")


def _fail(cfg: LBConfig, key: str, message: str) -> ConfigError:
    return ConfigError(f"{cfg._at(key)}: {key}: {message}")


def validate(cfg: LBConfig) -> LBConfig:
    """Refuse a configuration that cannot give a working VIP (ConfigError, exit 2); return cfg."""
    if not cfg.interface or not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", cfg.interface):
        raise _fail(cfg, "LB_INTERFACE", f"{cfg.interface!r} is not an interface name; give the interface "
                    "that carries the load balancer nodes' addresses, e.g. LB_INTERFACE=eth1")
    if not 1 <= cfg.router_id <= 255:
        raise _fail(cfg, "LB_VRRP_ROUTER_ID", f"{cfg.router_id} is outside 1..255")
    if not 1 <= cfg.advert_int <= 255:
        raise _fail(cfg, "LB_ADVERT_INT", f"{cfg.advert_int} is outside 1..255 seconds")
    if not AUTH_PASS_RE.fullmatch(cfg.auth_pass):
        raise _fail(cfg, "LB_VRRP_PASSWORD_FILE", "the VRRP password must be 1 to 8 characters from "
                    "A-Z a-z 0-9 . _ + = - (VRRP PASS authentication ignores anything longer)")
    if len(cfg.nodes) < 2:
        raise _fail(cfg, "LB_IPS", f"{len(cfg.nodes)} load balancer node(s); failover needs at least 2 "
                    "(list them in LB_IPS, or leave LB_IPS empty to use the servers)")
    if not cfg.servers:
        raise _fail(cfg, "CONTROL_PLANE_IPS", "no k3s servers to balance")
    try:
        vip = ipaddress.IPv4Address(cfg.vip)
        subnet = ipaddress.IPv4Network(f"{cfg.vip}/{cfg.prefix}", strict=False)
    except ValueError as exc:
        raise _fail(cfg, "API_VIP", f"{cfg.vip}/{cfg.prefix} is not an IPv4 address/prefix ({exc})") from None
    if not 8 <= cfg.prefix <= 30:
        raise _fail(cfg, "API_VIP_PREFIX", f"/{cfg.prefix}: expected 8..30, the prefix of the nodes' subnet")
    if vip in (subnet.network_address, subnet.broadcast_address):
        raise _fail(cfg, "API_VIP", f"{vip} is the network or broadcast address of {subnet}")
    for key, cidr in (("CLUSTER_CIDR", cfg.cluster_cidr), ("SERVICE_CIDR", cfg.service_cidr)):
        if vip in ipaddress.ip_network(cidr):
            raise _fail(cfg, "API_VIP", f"{vip} is inside {key} {cidr}; the VIP must be a LAN address "
                        "outside the pod and service networks")
    seen_addr: dict[str, str] = {}
    seen_prio: dict[int, str] = {}
    for n in cfg.nodes:
        if n.address in seen_addr:
            raise _fail(cfg, "LB_IPS", f"{n.address} is listed twice; each load balancer node once")
        seen_addr[n.address] = "LB_IPS"
        if not 1 <= n.priority <= 254:
            raise _fail(cfg, "LB_PRIORITIES", f"priority {n.priority} of {n.address} is outside 1..254")
        if n.priority in seen_prio:
            raise _fail(cfg, "LB_PRIORITIES", f"{n.address} and {seen_prio[n.priority]} both have priority "
                        f"{n.priority}; give every load balancer node its own priority (e.g. 150,140,130) "
                        "so the VIP holder is decided, not left to address order")
        seen_prio[n.priority] = n.address
        if ipaddress.IPv4Address(n.address) not in subnet:
            raise _fail(cfg, "API_VIP", f"{vip}/{cfg.prefix} is not in the subnet of load balancer node "
                        f"{n.address}; the VIP must be on the nodes' LAN ({n.address}/{cfg.prefix}), "
                        "or correct API_VIP_PREFIX")
        if n.address in cfg.servers and cfg.port == cfg.api_port:
            raise _fail(cfg, "LB_PORT", f"{n.address} runs both k3s and HAProxy, and both would listen "
                        f"on {cfg.port}; use another LB_PORT (e.g. {cfg.api_port + COLOCATED_PORT_OFFSET})")
    if len(set(cfg.servers)) != len(cfg.servers):
        raise _fail(cfg, "CONTROL_PLANE_IPS", "an address is listed twice")
    for key, addrs in (("LB_IPS", [n.address for n in cfg.nodes]), ("CONTROL_PLANE_IPS", cfg.servers),
                       ("WORKER_IPS", cfg.other_hosts)):
        if cfg.vip in addrs:
            raise _fail(cfg, "API_VIP", f"{cfg.vip} is also a host address in {key}; the VIP must be an "
                        "unused address on the nodes' LAN")
    return cfg


def read_auth_pass(path: str | Path, where: str) -> str:
    """The VRRP password from its 0600 file (ConfigError when missing, readable by others or empty)."""
    return secretfile.read_private(path, what=f"LB_VRRP_PASSWORD_FILE={path}", where=where).decode().strip()


def default_priorities(count: int) -> tuple[int, ...]:
    """150, 140, 130, ... in node order: the first node is the preferred holder."""
    return tuple(max(150 - 10 * i, 1) for i in range(count))


def _origin(settings: Settings, key: str) -> str:
    where = settings.origin(key)
    return "the settings" if where == "default" else where


def nodes_of(settings: Settings) -> tuple[str, ...]:
    """The load balancer nodes: LB_IPS, or the servers (co-located) when LB_IPS is empty."""
    return settings.lb_ips or settings.control_plane_ips


def port_of(settings: Settings) -> int:
    """HAProxy's frontend port: LB_PORT, else API_PORT + 10000 co-located, API_PORT on dedicated nodes."""
    if settings.lb_port:
        return settings.lb_port
    colocated = bool(set(nodes_of(settings)) & set(settings.control_plane_ips))
    return settings.api_port + COLOCATED_PORT_OFFSET if colocated else settings.api_port


def endpoint(settings: Settings) -> str:
    """https://API_VIP:LB_PORT: what joining servers and agents dial (no file is read)."""
    return f"https://{settings.api_vip}:{port_of(settings)}"


def from_settings(settings: Settings) -> LBConfig:
    """The validated LBConfig of the settings (keys: docs/cluster.md); reads the VRRP password file.

    Keys read: API_VIP, API_VIP_PREFIX, API_PORT, LB_IPS, LB_PRIORITIES, LB_PORT, LB_INTERFACE,
    LB_VRRP_ROUTER_ID, LB_VRRP_PASSWORD_FILE, LB_PREEMPT, LB_ADVERT_INT, CONTROL_PLANE_IPS,
    WORKER_IPS, CLUSTER_CIDR, SERVICE_CIDR.
    """
    keys = ("API_VIP", "API_VIP_PREFIX", "LB_IPS", "LB_PRIORITIES", "LB_PORT", "LB_INTERFACE",
            "LB_VRRP_ROUTER_ID", "LB_VRRP_PASSWORD_FILE", "LB_ADVERT_INT", "CONTROL_PLANE_IPS",
            "WORKER_IPS")
    origins = {k: _origin(settings, k) for k in keys}
    if not settings.api_vip:
        raise ConfigError(f"{origins['API_VIP']}: API_VIP is empty; the HA load balancer needs the virtual "
                          "IP, e.g. API_VIP=192.168.56.100")
    addresses = nodes_of(settings)
    priorities = settings.lb_priorities or default_priorities(len(addresses))
    if len(priorities) != len(addresses):
        raise ConfigError(f"{origins['LB_PRIORITIES']}: LB_PRIORITIES has {len(priorities)} value(s) for "
                          f"{len(addresses)} load balancer node(s) ({', '.join(addresses)}); give one each")
    if not settings.lb_vrrp_password_file:
        raise ConfigError(f"{origins['LB_VRRP_PASSWORD_FILE']}: LB_VRRP_PASSWORD_FILE is empty; create a "
                          "0600 file holding a VRRP password of up to 8 characters and name it there")
    cfg = LBConfig(
        vip=settings.api_vip, prefix=settings.api_vip_prefix, port=port_of(settings),
        nodes=tuple(LBNode(a, p) for a, p in zip(addresses, priorities)), servers=settings.control_plane_ips,
        api_port=settings.api_port, router_id=settings.lb_vrrp_router_id,
        auth_pass=read_auth_pass(settings.lb_vrrp_password_file, origins["LB_VRRP_PASSWORD_FILE"]),
        interface=settings.lb_interface, preempt=settings.lb_preempt, advert_int=settings.lb_advert_int,
        cluster_cidr=settings.cluster_cidr, service_cidr=settings.service_cidr,
        other_hosts=settings.worker_ips, origins=origins)
    return validate(cfg)


# --- rendering ---------------------------------------------------------------------------------
HEADER = "# Managed by GL-Native Deploy (API VIP {vip}); local edits are overwritten.\n"


def render_haproxy(cfg: LBConfig) -> str:
    """haproxy.cfg: one tcp frontend on *:port, k3s servers as backends with TLS GET /ping checks
    and client-IP affinity (balance source, consistent hashing: one server leaving moves only its
    own clients)."""
    servers = "".join(f"    server k3s-{i} {addr}:{cfg.api_port}\n" for i, addr in enumerate(cfg.servers, 1))
    return (HEADER.format(vip=cfg.vip)
            + "global\n"
            "    log /dev/log local0 warning\n"
            "\n"
            "defaults\n"
            "    mode tcp\n"
            "    log global\n"
            "    option tcplog\n"
            "    option dontlognull\n"
            "    timeout connect 2s\n"
            "    # a server that fails a connection is marked down and the client retried elsewhere\n"
            "    retries 2\n"
            "    option redispatch 1\n"
            "    # kubectl watches and agent tunnels are long-lived connections\n"
            "    timeout client 1h\n"
            "    timeout server 1h\n"
            "\n"
            "frontend gl-k3s-api\n"
            f"    bind *:{cfg.port}\n"
            "    default_backend gl-k3s-servers\n"
            "\n"
            "backend gl-k3s-servers\n"
            "    balance source\n"
            "    hash-type consistent\n"
            "    option httpchk GET /ping\n"
            "    http-check expect status 200\n"
            "    default-server check check-ssl verify none inter 1s downinter 2s fall 2 rise 2 "
            "observe layer4 error-limit 1 on-error mark-down on-marked-down shutdown-sessions\n"
            + servers)


def render_check_script(cfg: LBConfig) -> str:
    """The keepalived track script: healthy while HAProxy accepts connections on its frontend port
    in this network namespace (a process check would see other namespaces' HAProxy too)."""
    return ("#!/bin/bash\n"
            "# Managed by GL-Native Deploy: keepalived track script for HAProxy.\n"
            f"exec 3<>/dev/tcp/127.0.0.1/{cfg.port}\n")


def render_keepalived(cfg: LBConfig, address: str) -> str:
    """keepalived.conf for one load balancer node (holds the VRRP password: install it 0600).

    Every block spans several lines: keepalived silently drops a one-line `authentication { ... }`.
    All nodes start as BACKUP; with `nopreempt` (the default) a recovered node does not take the VIP
    back from a healthy holder. A failing track script (no weight) puts the node in FAULT, which
    gives the VIP up at once with a priority-0 advert.
    """
    me = cfg.node(address)
    peers = "".join(f"        {n.address}\n" for n in cfg.nodes if n.address != address)
    return (HEADER.format(vip=cfg.vip)
            + "global_defs {\n"
            f"    router_id gl-lb-{address}\n"
            "    enable_script_security\n"
            "    script_user root\n"
            "}\n"
            "\n"
            "vrrp_script gl_haproxy {\n"
            f"    script \"{cfg.check_script}\"\n"
            "    interval 1\n"
            "    timeout 1\n"
            "    fall 2\n"
            "    rise 2\n"
            "}\n"
            "\n"
            "vrrp_instance GL_API {\n"
            "    state BACKUP\n"
            f"    interface {cfg.interface}\n"
            f"    virtual_router_id {cfg.router_id}\n"
            f"    priority {me.priority}\n"
            f"    advert_int {cfg.advert_int}\n"
            + ("" if cfg.preempt else "    nopreempt\n")
            + f"    unicast_src_ip {address}\n"
            "    unicast_peer {\n"
            f"{peers}"
            "    }\n"
            "    check_unicast_src\n"
            "    authentication {\n"
            "        auth_type PASS\n"
            f"        auth_pass {cfg.auth_pass}\n"
            "    }\n"
            "    virtual_ipaddress {\n"
            f"        {cfg.vip}/{cfg.prefix} dev {cfg.interface}\n"
            "    }\n"
            "    track_script {\n"
            "        gl_haproxy\n"
            "    }\n"
            "}\n")


def write_node_files(cfg: LBConfig, address: str, dest: Path, secret_dest: Path | None = None) -> list[Path]:
    """Write haproxy.cfg (0644), keepalived.conf (0600: VRRP password) and the track script (0755)
    for one node into dest (keepalived.conf into secret_dest when given: the bundle keeps it under
    secrets/, out of the rendered SHA256SUMS); scripts/lib/loadbalancer.sh installs them on the host."""
    dest.mkdir(parents=True, exist_ok=True)
    if secret_dest is not None:
        secret_dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = []
    for name, text, mode in ((HAPROXY_CFG, render_haproxy(cfg), 0o644),
                             (KEEPALIVED_CONF, render_keepalived(cfg, address), 0o600),
                             (CHECK_NAME, render_check_script(cfg), 0o755)):
        path = (secret_dest if name == KEEPALIVED_CONF and secret_dest is not None else dest) / name
        path.touch(mode=0o600)  # never world-readable, not even between create and chmod
        path.chmod(0o600)
        path.write_text(text)
        path.chmod(mode)
        out.append(path)
    return out
