"""The VIP failover drill of the cluster lab, for real on the lab's VMs.

Each trial takes the node holding the API VIP, applies one fault, and measures from the fault to the
first good /ping through https://VIP:LB_PORT answered after the VIP moved (the host's ARP entry for
the VIP names another node's MAC). Fault kinds, in the order of a round:
  keepalived-stopped  `systemctl stop keepalived` on the holder (a goodbye advert is sent)
  haproxy-killed      SIGKILL to the holder's HAProxy, its restart held off (a runtime drop-in
                      Restart=no on every server for the whole drill): the track script must put
                      the node in FAULT
  power-off           `virsh destroy` of the holder's VM (no goodbye); it is started again and must
                      rejoin (k3s, HAProxy and Keepalived active, BACKUP, /ping on its own address)
The fault time is taken on the host just before the fault command starts, so an ssh-driven fault's
figure includes the ssh round trip (an upper bound). Meanwhile a worker probes the VIP every 0.2 s
(agents keep reaching the API), and `rotation` kills a k3s server process behind HAProxy.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gldeploy import sequences
from gldeploy.errors import DeployError
from gldeploy.lab import shared
from gldeploy.lab.host import VIRSH
from gldeploy.lab.nodes import Lab, Node
from gldeploy.lab.proc import finish, run, say, ssh_argv, start, wait_for
from gldeploy.lab.vagrant import ssh, wait_ssh
from gldeploy.lab.vip import ApiProbe, holder, holders, neighbour_mac, node_macs, stats

FaultKind = Literal["keepalived-stopped", "haproxy-killed", "power-off"]
FAULT_KINDS: tuple[FaultKind, ...] = ("keepalived-stopped", "haproxy-killed", "power-off")
FAILOVER_BOUND = 60.0  # seconds a failover may take before the drill fails
SETTLE_BOUND = 15.0  # seconds two VRRP masters may coexist right after a failover before the drill fails
REJOIN_BOUND = 900.0  # seconds a powered-off server may take to boot and rejoin (TCG)
GOAL_MEDIAN_S = 3.0

HOLD_HAPROXY = r"""set -euo pipefail
mkdir -p /run/systemd/system/haproxy.service.d
printf '[Service]\nRestart=no\n' >/run/systemd/system/haproxy.service.d/gl-drill.conf
systemctl daemon-reload
"""
RELEASE_HAPROXY = r"""set -euo pipefail
rm -f /run/systemd/system/haproxy.service.d/gl-drill.conf
systemctl daemon-reload
"""
RESTORE = r"""set -euo pipefail
date +%s
systemctl reset-failed haproxy keepalived 2>/dev/null || true
systemctl start haproxy keepalived
"""
# prints the node's VRRP state as keepalived last logged it since epoch $1
VRRP_STATE = r"""journalctl -b -u keepalived --since "@$1" -o cat --no-pager 2>/dev/null \
  | grep -o 'Entering [A-Z]* STATE' | tail -n 1 || true"""
AGENT_PROBE = r"""set -u
vip_url=$1 ca=$2 log=$3
: >"$log"
while :; do
  t=$(date +%s.%N)
  if curl -fsS --max-time 3 --cacert "$ca" "$vip_url/ping" >/dev/null 2>&1; then r=ok; else r=fail; fi
  printf '%s %s\n' "$t" "$r" >>"$log"
  sleep 0.2
done
"""
TRACK_TIMEOUTS = "journalctl -b -u keepalived -o cat --no-pager | grep -c 'gl_haproxy) timed_out' || true"
AGENT_UNIT = sequences.service_of("agent")  # k3s-agent, as k3s' install.sh names an agent's service
SERVER_UNIT = sequences.service_of("server")  # k3s
AGENT_LOG = "/tmp/gl-lab-agent-probe.log"
AGENT_PID = "/tmp/gl-lab-agent-probe.pid"


@dataclass
class Trial:
    kind: FaultKind
    node: str  # the holder the fault hit
    new_holder: str
    seconds: float  # fault -> first good /ping through the VIP on its new holder
    failed_probes: int
    command_latency_s: float = 0.0  # ssh + sudo + systemctl on the holder just before (in `seconds`)


@dataclass
class Rejoin:
    node: str
    seconds: float  # virsh start -> rejoined
    state: str


@dataclass
class DrillResult:
    trials: list[Trial] = field(default_factory=list)
    rejoins: list[Rejoin] = field(default_factory=list)
    agent: dict[str, Any] = field(default_factory=dict)
    rotation: dict[str, Any] = field(default_factory=dict)
    track_timeouts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, Any] = {}
        for kind in FAULT_KINDS:
            st = stats([t.seconds for t in self.trials if t.kind == kind])
            st["goal_median_lt_s"] = GOAL_MEDIAN_S
            st["goal_met"] = bool(st.get("n")) and float(st.get("median_s", 1e9)) < GOAL_MEDIAN_S
            kinds[kind] = st
        return {"failover": kinds, "trials": [asdict(t) for t in self.trials],
                "rejoins": [asdict(r) for r in self.rejoins], "agent_probe": self.agent,
                "rotation": self.rotation, "track_script_timeouts": self.track_timeouts}


class Drill:
    """The drill on one cluster lab: servers are the load balancer nodes (co-located)."""

    def __init__(self, lab: Lab, ssh_config: Path, probe: ApiProbe, interface: str, api_port: int,
                 ca_file: Path) -> None:
        self.lab, self.ssh_config, self.probe = lab, ssh_config, probe
        self.interface, self.api_port, self.ca_file = interface, api_port, ca_file
        self.servers = lab.servers
        self.prefix = shared.load().prefix(lab.name)
        self.macs = node_macs(ssh_config, self.servers, interface)
        self.result = DrillResult()
        self.down: tuple[Node, float] | None = None  # a powered-off server booting again, since when
        self.agent_before = ""

    def up_servers(self) -> list[Node]:
        """The servers not powered off (ssh to a booting VM would wait for its connect timeout)."""
        return [n for n in self.servers if self.down is None or n != self.down[0]]

    def holder(self) -> Node:
        return holder(self.ssh_config, self.lab, self.up_servers(), self.probe.address, self.interface)

    def stable_holder(self, timeout: float = 90) -> Node:
        """The holder, once the host reaches the VIP at its MAC and /ping answers (no trial starts while
        the VIP is still settling, or the host's ARP entry is stale)."""
        start = time.monotonic()
        while True:
            node = self.holder()
            if self.probe.ping().ok and neighbour_mac(self.probe.address) == self.macs[node.name]:
                return node
            if time.monotonic() - start > timeout:
                raise DeployError(f"drill: the VIP did not settle on {node.name} within {timeout:.0f} s (the host "
                                  f"resolves it to {neighbour_mac(self.probe.address) or 'nothing'})")
            time.sleep(0.5)

    def settled_holder(self, nodes: list[Node], timeout: float = SETTLE_BOUND) -> Node:
        """The one node holding the VIP once VRRP has settled: right after a failover two backups may both
        enter MASTER for a moment under TCG (bounded; said in the output when it happened)."""
        start = time.monotonic()
        while True:
            found = holders(self.ssh_config, nodes, self.probe.address, self.interface)
            if len(found) == 1:
                if time.monotonic() - start > 1:
                    say(f"drill: VRRP settled on {found[0].name} after {time.monotonic() - start:.1f} s")
                return found[0]
            if time.monotonic() - start > timeout:
                raise DeployError(f"lab {self.lab.name}: {len(found)} node(s) hold the API VIP {self.probe.address} "
                                  f"({', '.join(n.name for n in found) or 'none'}) {timeout:.0f} s after the "
                                  "failover; VRRP should give it to exactly one")
            time.sleep(0.5)

    def track_timeouts(self) -> dict[str, int]:
        """How often each server's HAProxy track script timed out this boot (a loaded host: spurious FAULTs)."""
        count = ["bash", "-c", TRACK_TIMEOUTS]
        return {n.name: int(ssh(self.ssh_config, n.ip, ["sudo", *count], timeout=60, check=False).stdout.strip() or 0)
                for n in self.up_servers()}

    def owner_of(self, mac: str) -> str:
        return next((name for name, m in self.macs.items() if m == mac), "")

    # --- one trial -----------------------------------------------------------------------------
    def trial(self, kind: FaultKind) -> Trial:
        if kind == "power-off":
            self.wait_rejoined()  # two healthy backups before the next holder goes away
        node = self.stable_holder()
        old_mac = self.macs[node.name]
        latency = 0.0
        if kind != "power-off":  # how long the same kind of command takes to start on this node now
            t0 = time.monotonic()
            ssh(self.ssh_config, node.ip, ["sudo", "systemctl", "is-active", "--quiet", "keepalived"], timeout=60)
            latency = time.monotonic() - t0
        if kind == "power-off":  # no ssh master may hang on the VM that disappears
            run(["ssh", "-F", str(self.ssh_config), "-O", "exit", node.ip], timeout=30, check=False)
            self.down = (node, time.monotonic())  # from now on no step may ssh to it until it rejoined
        say(f"drill: {kind} on {node.name} (VIP holder)")
        if kind == "keepalived-stopped":
            argv = ssh_argv(self.ssh_config, node.ip, ["sudo", "systemctl", "stop", "keepalived"])
        elif kind == "haproxy-killed":
            argv = ssh_argv(self.ssh_config, node.ip, ["sudo", "systemctl", "kill", "--signal=SIGKILL", "haproxy"])
        else:
            argv = [*VIRSH, "destroy", self.prefix + node.name]
        # the probes start with the fault command, not after it returns (a TCG guest takes seconds to
        # finish `systemctl stop`, while the VIP may have moved long before)
        t_fault = time.monotonic()
        fault = start(argv)
        try:
            seconds, failed, new_mac = self.measure(t_fault, old_mac, f"{kind} on {node.name}")
        finally:
            rc, out = finish(fault, 120)
        if rc != 0:
            raise DeployError(f"drill: the fault command for {kind} on {node.name} failed (exit {rc}): "
                              f"{out.strip()[-300:]}")
        new = self.settled_holder([n for n in self.up_servers() if n != node] if kind == "power-off"
                                  else self.up_servers())
        if self.macs[new.name] != new_mac:
            raise DeployError(f"drill: the host reaches the VIP at {new_mac} but {new.name} holds it")
        trial = Trial(kind, node.name, new.name, round(seconds, 3), failed, round(latency, 3))
        say(f"drill: {kind}: VIP {node.name} -> {new.name}, /ping answered again after {seconds:.2f} s "
            f"({failed} failed probe(s); ssh+sudo+systemctl on {node.name} took {latency:.2f} s just before)")
        self.result.trials.append(trial)
        self.restore(kind, node)
        return trial

    def measure(self, t_fault: float, old_mac: str, what: str) -> tuple[float, int, str]:
        """Probe until a good /ping reaches the VIP at another node's MAC; (seconds, failures, mac)."""
        failed = 0
        while time.monotonic() - t_fault < FAILOVER_BOUND:
            answer = self.probe.ping()
            mac = neighbour_mac(self.probe.address)
            if answer.ok and mac and mac != old_mac and self.owner_of(mac):
                return time.monotonic() - t_fault, failed, mac
            failed += not answer.ok
            time.sleep(0.05)
        raise DeployError(f"drill: after {what} the VIP {self.probe.address} did not answer /ping from "
                          f"another node within {FAILOVER_BOUND:.0f} s")

    def restore(self, kind: FaultKind, node: Node) -> None:
        """Undo the fault; a restarted node must come back as a healthy VRRP BACKUP (bounded)."""
        if kind == "power-off":
            run([*VIRSH, "start", self.prefix + node.name], timeout=120, what="virsh start")
            self.down = (node, time.monotonic())  # the rejoin is timed from its power-on
            return
        since = ssh(self.ssh_config, node.ip, ["sudo", "bash", "-c", RESTORE], timeout=120).stdout.split()[0]
        self.wait_backup(node, since, 60)

    def vrrp_state(self, node: Node, since: str) -> str:
        out = ssh(self.ssh_config, node.ip, ["sudo", "bash", "-c", VRRP_STATE, "gl-vrrp", since], timeout=60,
                  check=False).stdout.strip()
        return out.removeprefix("Entering ").removesuffix(" STATE")

    def wait_backup(self, node: Node, since: str, timeout: float) -> float:
        return wait_for(lambda: self.vrrp_state(node, since) == "BACKUP", timeout=timeout, interval=1,
                        what=f"{node.name}: keepalived back in BACKUP state (track script healthy)")

    def wait_rejoined(self) -> None:
        """The powered-off server is up again: SSH, k3s + HAProxy + Keepalived active, BACKUP, /ping."""
        if self.down is None:
            return
        node, started = self.down
        left = max(REJOIN_BOUND - (time.monotonic() - started), 30)
        wait_ssh(self.ssh_config, node.ip, timeout=left)
        units = ["systemctl", "is-active", "--quiet", SERVER_UNIT, "haproxy", "keepalived"]
        wait_for(lambda: ssh(self.ssh_config, node.ip, units, check=False, timeout=60).returncode == 0,
                 timeout=left, interval=2, what=f"{node.name}: k3s, haproxy and keepalived active after boot")
        own = ApiProbe(node.ip, self.api_port, self.ca_file)
        wait_for(lambda: own.ping(2.0).ok, timeout=left, interval=1, what=f"{node.name}: /ping on its address")
        self.wait_backup(node, "0", left)
        if self.holder() == node:
            raise DeployError(f"drill: {node.name} took the VIP back after its reboot (LB_PREEMPT is false)")
        took = time.monotonic() - started
        self.result.rejoins.append(Rejoin(node.name, round(took, 1), "BACKUP"))
        self.hold_haproxy([node], HOLD_HAPROXY)  # the runtime drop-in did not survive the power-off
        say(f"drill: {node.name} rejoined after {took:.0f} s: services active, VRRP BACKUP, /ping answers")
        self.down = None

    # --- the whole drill -------------------------------------------------------------------------
    def run(self, rounds: int) -> DrillResult:
        agent = self.lab.agents[0] if self.lab.agents else None
        if agent is not None:
            self.start_agent_probe(agent)
        try:
            self.hold_haproxy(self.servers, HOLD_HAPROXY)
            for _ in range(rounds):
                for kind in FAULT_KINDS:
                    self.trial(kind)
            self.wait_rejoined()
        except BaseException:
            self.clean_up(agent, strict=False)  # the trial's error is the one to report, not the clean-up's
            raise
        self.clean_up(agent, strict=True)
        return self.result

    def clean_up(self, agent: Node | None, *, strict: bool) -> None:
        """Release HAProxy's restart hold on the servers that are up and collect the agent probe; after a
        failed trial (strict=False) a clean-up error is only printed."""
        try:
            self.hold_haproxy(self.up_servers(), RELEASE_HAPROXY)
            if agent is not None:
                self.result.agent = self.stop_agent_probe(agent)
            self.result.track_timeouts = self.track_timeouts()
        except DeployError as exc:
            if strict:
                raise
            say(f"drill: clean-up after the failed trial also failed: {exc}")

    def agent_process(self, agent: Node) -> str:
        """MainPID and NRestarts of the agent's k3s unit: unchanged means the agent never restarted."""
        values = ssh(self.ssh_config, agent.ip, ["systemctl", "show", AGENT_UNIT, "-p", "MainPID", "-p", "NRestarts",
                                                 "--value"], timeout=60, check=False).stdout.split()
        return f"MainPID={values[0]} NRestarts={values[1]}" if len(values) == 2 else "unknown"

    def hold_haproxy(self, servers: list[Node], script: str) -> None:
        """Hold off (or release) systemd's restart of HAProxy on these servers. Done once, not right
        before a fault: a daemon-reload under TCG can starve the track script and move the VIP early."""
        for node in servers:
            ssh(self.ssh_config, node.ip, ["sudo", "bash", "-c", script], timeout=120)

    def start_agent_probe(self, agent: Node) -> None:
        self.agent_before = self.agent_process(agent)
        ssh(self.ssh_config, agent.ip, ["bash", "-c", "umask 077; mkdir -p ~/.gl-lab; cat > ~/.gl-lab/api-ca.crt"],
            input_text=self.ca_file.read_text())
        url = f"https://{self.probe.address}:{self.probe.port}"
        start = ("nohup setsid bash -c \"$1\" gl-agent-probe \"$2\" \"$3\" \"$4\" >/dev/null 2>&1 & "
                 "echo $! >\"$5\"")
        ssh(self.ssh_config, agent.ip, ["bash", "-c", start, "gl-start", AGENT_PROBE, url,
                                        "/home/vagrant/.gl-lab/api-ca.crt", AGENT_LOG, AGENT_PID], timeout=60)

    def stop_agent_probe(self, agent: Node) -> dict[str, Any]:
        ssh(self.ssh_config, agent.ip, ["bash", "-c", 'kill -- "-$(cat "$1")" 2>/dev/null || kill "$(cat "$1")"',
                                        "gl-stop", AGENT_PID], timeout=60, check=False)
        text = ssh(self.ssh_config, agent.ip, ["cat", AGENT_LOG], timeout=60, check=False).stdout
        out = agent_outages(text)
        after = self.agent_process(agent)
        out.update({"node": agent.name, "agent_process": after,
                    "agent_restarted": after != self.agent_before or after == "unknown" or "MainPID=0 " in after})
        return out


def agent_outages(log: str) -> dict[str, Any]:
    """From the worker's probe log ('<epoch> ok|fail' lines): probes, failures, longest outage (s) =
    from the first failed probe of a run to the next good one."""
    probes = [(float(t), r) for t, r in (ln.split() for ln in log.splitlines() if len(ln.split()) == 2)]
    longest, begin, fails = 0.0, None, 0
    for when, result in probes:
        if result != "ok":
            fails += 1
            begin = when if begin is None else begin
        elif begin is not None:
            longest, begin = max(longest, when - begin), None
    still_down = begin is not None
    return {"probes": len(probes), "failed": fails, "longest_outage_s": round(longest, 2),
            "answering_at_end": bool(probes) and not still_down}
