"""Watching the API VIP from the lab host: a TLS /ping probe through https://VIP:PORT (verified against
the cluster's server CA, the VIP must be in the certificate), which server answered, which MAC the host
resolves the VIP to, and which node holds the VIP. The failover drill (gldeploy/lab/drill.py) is built
on these."""
from __future__ import annotations

import socket
import ssl
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gldeploy.errors import DeployError
from gldeploy.lab.nodes import Lab, Node
from gldeploy.lab.vagrant import ssh

SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
PROBE_TIMEOUT = 0.5  # seconds per attempt: a VIP whose holder vanished answers nothing at all


@dataclass(frozen=True)
class Answer:
    """One probe: whether /ping answered 200 pong, and the DNS names of the answering certificate."""

    ok: bool
    names: tuple[str, ...] = ()
    error: str = ""


class ApiProbe:
    """GET /ping over TLS to ADDRESS:PORT with a fresh connection each time (as a new client would)."""

    def __init__(self, address: str, port: int, ca_file: Path) -> None:
        self.address, self.port = address, port
        self.ctx = ssl.create_default_context(cafile=str(ca_file))  # checks the IP is in the cert SANs

    def ping(self, timeout: float = PROBE_TIMEOUT) -> Answer:
        request = (f"GET /ping HTTP/1.1\r\nHost: {self.address}:{self.port}\r\n"
                   "Connection: close\r\n\r\n").encode()
        try:
            with socket.create_connection((self.address, self.port), timeout=timeout) as raw, \
                    self.ctx.wrap_socket(raw, server_hostname=self.address) as tls:
                names = _dns_names(tls.getpeercert())  # before the server's close ends the session
                tls.sendall(request)
                data = b""
                while len(data) < 4096:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except (OSError, ssl.SSLError, ValueError) as exc:
            return Answer(False, error=f"{type(exc).__name__}: {exc}"[:160])
        head, _, body = data.partition(b"\r\n\r\n")
        ok = head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0] and body.strip() == b"pong"
        return Answer(ok, names, "" if ok else f"unexpected answer {data[:80]!r}")


def _dns_names(cert: Any) -> tuple[str, ...]:
    if not isinstance(cert, dict):
        return ()
    return tuple(str(v) for k, v in cert.get("subjectAltName", ()) if k == "DNS")


def neighbour_mac(ip: str, arp_table: Path = Path("/proc/net/arp")) -> str:
    """The MAC this host resolves `ip` to (its ARP cache), '' when unresolved or incomplete."""
    for line in arp_table.read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[0] == ip and parts[3] != "00:00:00:00:00:00":
            return parts[3].lower()
    return ""


def node_macs(ssh_config: Path, nodes: list[Node], interface: str) -> dict[str, str]:
    """MAC of each node's interface on the lab network, by node name."""
    return {n.name: ssh(ssh_config, n.ip, ["cat", f"/sys/class/net/{interface}/address"],
                        timeout=60).stdout.strip().lower() for n in nodes}


def holders(ssh_config: Path, nodes: list[Node], vip: str, interface: str) -> list[Node]:
    """The nodes that have the VIP on their interface right now (exactly one when VRRP is healthy)."""
    found = []
    for node in nodes:
        out = ssh(ssh_config, node.ip, ["ip", "-o", "-4", "addr", "show", "dev", interface], timeout=60,
                  check=False).stdout
        if f" {vip}/" in out:
            found.append(node)
    return found


def holder(ssh_config: Path, lab: Lab, nodes: list[Node], vip: str, interface: str) -> Node:
    """The one node holding the VIP; DeployError when none or several do."""
    found = holders(ssh_config, nodes, vip, interface)
    if len(found) != 1:
        raise DeployError(f"lab {lab.name}: {len(found)} node(s) hold the API VIP {vip} "
                          f"({', '.join(n.name for n in found) or 'none'}); VRRP should give it to exactly one")
    return found[0]


def fetch_ca(ssh_config: Path, server: Node, dest: Path) -> Path:
    """The cluster's server CA from the first server, for verified probes from the host."""
    pem = ssh(ssh_config, server.ip, ["sudo", "cat", SERVER_CA], timeout=60).stdout
    if "BEGIN CERTIFICATE" not in pem:
        raise DeployError(f"{server.name}: {SERVER_CA} holds no certificate; did 02 install k3s there?")
    dest.write_text(pem)
    return dest


def wait_answer(probe: ApiProbe, timeout: float, what: str) -> float:
    """Bounded wait for a good /ping; seconds it took."""
    start = time.monotonic()
    last = Answer(False, error="not tried")
    while time.monotonic() - start < timeout:
        last = probe.ping()
        if last.ok:
            return time.monotonic() - start
        time.sleep(0.2)
    raise DeployError(f"{what}: https://{probe.address}:{probe.port}/ping did not answer within "
                      f"{timeout:.0f} s (last: {last.error})")


def stats(values: list[float]) -> dict[str, float | int]:
    """n, median, max, min of a list of seconds (rounded to ms)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3),
            "min_s": round(min(values), 3)}
