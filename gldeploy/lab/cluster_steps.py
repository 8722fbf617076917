"""The steps of the cluster lab (vagrant/labs/cluster.yml) after the shared bring-up: secrets, the HA
sequence through `invoke cluster.deploy` twice, worker join timing, the offline path on a worker,
testinfra on every node, the VIP failover drill, a k3s server taken out of HAProxy's rotation, and a
load balancer node reset. runner.CLUSTER_STEPS lists them; each is timed in the report."""
from __future__ import annotations

import secrets
import time
from pathlib import Path

from gldeploy import loadbalancer
from gldeploy import settings as settings_lib
from gldeploy.errors import DeployError
from gldeploy.lab import drill as drill_lib
from gldeploy.lab import offline, rotation
from gldeploy.lab.nodes import Node
from gldeploy.lab.proc import say
from gldeploy.lab.report import Row
from gldeploy.lab.runner import LabRun, need
from gldeploy.lab.vagrant import ssh
from gldeploy.lab.verify import run_deploy, run_testinfra, write_inventory
from gldeploy.lab.vip import ApiProbe, fetch_ca, holder, wait_answer

LAB_CA = "~/.gl-lab/api-ca.crt"
LB_FILES = ("/etc/keepalived/keepalived.conf", "/etc/keepalived/gl-check-haproxy.sh")


def _secret_file(path: Path, value: str) -> str:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(value + "\n")
    return str(path)


def step_secrets(r: LabRun) -> None:
    """The join token and the VRRP password, 0600 files in the lab's private state dir."""
    token = _secret_file(r.work / "k3s-token", secrets.token_hex(24))
    vrrp = _secret_file(r.work / "vrrp-password", secrets.token_urlsafe(6)[:8].replace("_", "."))
    r.sets += [f"K3S_TOKEN_FILE={token}", f"LB_VRRP_PASSWORD_FILE={vrrp}"]
    r.lb = loadbalancer.from_settings(settings_lib.load(r.table.env_file, overrides=r.sets))
    if r.table.vip and r.lb.vip != r.table.vip:
        raise DeployError(f"{r.table.env_file}: API_VIP {r.lb.vip} differs from the lab table's vip {r.table.vip}")


def step_deploy_1(r: LabRun) -> None:
    run_deploy(r.report, "deploy 1", r.table.env_file, r.sets, r.work / "deploy-1.json", task="cluster.deploy")


def step_deploy_2(r: LabRun) -> None:
    second = run_deploy(r.report, "deploy 2", r.table.env_file, r.sets, r.work / "deploy-2.json",
                        task="cluster.deploy")
    r.report.extra["second_run_changed"] = [f"{x['phase']}@{x['host']}" for x in second["results"]
                                            if x.get("changed")]


def step_vip(r: LabRun) -> None:
    """The cluster CA from the first server; /ping through https://VIP:LB_PORT from the host; the CA
    copied to every node (for the verifiers and the agents' probe)."""
    lb = need(r.lb, "the load balancer settings")
    r.ca_file = fetch_ca(r.ssh_config, r.table.servers[0], r.work / "api-ca.crt")
    probe = ApiProbe(lb.vip, lb.port, r.ca_file)
    took = wait_answer(probe, 60, "the API VIP after the deploy")
    for node in r.table.nodes:
        ssh(r.ssh_config, node.ip, ["bash", "-c", "umask 077; mkdir -p ~/.gl-lab; cat > ~/.gl-lab/api-ca.crt"],
            input_text=r.ca_file.read_text())
    say(f"VIP: https://{lb.vip}:{lb.port}/ping answers from the host ({took:.1f} s)")


def _reset_agents(r: LabRun, agents: list[Node]) -> None:
    for node in agents:
        ssh(r.ssh_config, node.ip, ["sudo", offline.uninstall_on(node)], timeout=300)
        if r.report.k3s_mode == "real":  # k3s keeps the node password: the node object must go first
            ssh(r.ssh_config, r.table.servers[0].ip, ["sudo", "k3s", "kubectl", "delete", "node", node.name,
                                                     "--ignore-not-found"], timeout=120)


def _join(r: LabRun, agents: list[Node], label: str) -> float:
    start = time.monotonic()
    run_deploy(r.report, label, r.table.env_file, r.sets, r.work / f"{label.replace(' ', '-')}.json",
               task="cluster.init", extra=("--role", "agent", "--hosts", ",".join(n.ip for n in agents)))
    return time.monotonic() - start


def step_join_timing(r: LabRun) -> None:
    """Wall time of `invoke cluster.init --role agent` for one worker alone, then for all workers
    joined concurrently (each from a clean k3s-agent-uninstall.sh); goal: N together <= 1.5x one alone."""
    agents = r.table.agents
    if len(agents) < 2:
        raise DeployError(f"lab {r.table.name}: join timing needs two workers, the table has {len(agents)}")
    _reset_agents(r, agents)
    alone = _join(r, agents[:1], "join 1 worker")
    _reset_agents(r, agents[:1])
    together = _join(r, agents, f"join {len(agents)} workers")
    ratio = together / alone
    r.report.extra["join"] = {"workers": len(agents), "one_alone_s": round(alone, 1),
                              "together_s": round(together, 1), "ratio": round(ratio, 2),
                              "goal_ratio_le": 1.5, "goal_met": ratio <= 1.5}
    say(f"join: 1 worker {alone:.1f} s, {len(agents)} together {together:.1f} s (ratio {ratio:.2f}, goal <= 1.5)")


JOIN_TOKEN = "/var/lib/rancher/k3s/server/token"
REMOTE_TOKEN = "/root/gl-offline-k3s-token"


def step_offline(r: LabRun) -> None:
    """The rendered standalone scripts on the last worker (k3s-agent-uninstall.sh, copy, sha256sum -c, bash),
    as an operator joins a worker offline: the render bakes the settings (the plain join password is
    the first server's), and the worker's join gets the first server's full K10<ca-hash>::server:<secret>
    token as a 0600 file (carried over ssh stdin, never a command line) plus the VIP endpoint, through
    the join arguments of the sequences table (--token-file, --server-url)."""
    lb = need(r.lb, "the load balancer settings")
    topology = offline.topology_of(settings_lib.load(r.table.env_file, overrides=r.sets).topology)
    token = ssh(r.ssh_config, r.table.servers[0].ip, ["sudo", "cat", JOIN_TOKEN], timeout=60).stdout.strip()
    if not token.startswith("K10") or "\n" in token:
        raise DeployError(f"offline: {JOIN_TOKEN} on {r.table.servers[0].name} holds no K10<ca-hash>::... token")
    r.offline_nodes = r.table.agents[-1:]
    for node in r.offline_nodes:
        ssh(r.ssh_config, node.ip, ["sudo", "bash", "-c", 'umask 077; cat >"$1"', "gl-token", REMOTE_TOKEN],
            input_text=token + "\n", timeout=60)
    offline.run_offline(r.report, r.table, r.table.env_file, r.sets, r.ssh_config, r.work / "offline", topology,
                        targets=r.offline_nodes, arg_values={"server_url": lb.endpoint, "token_file": REMOTE_TOKEN})


def step_testinfra(r: LabRun) -> None:
    lb = need(r.lb, "the load balancer settings")
    ha = {"vip": lb.vip, "lb_port": lb.port, "interface": lb.interface, "lb_nodes": [n.address for n in lb.nodes]}
    inventory = write_inventory(r.work, r.table, r.ssh_config, need(r.source, "the k3s artifacts"),
                                need(r.reg, "the lab registry"), *r.image, r.table.env_file,
                                extra={"ha": ha, "offline_nodes": [n.name for n in r.offline_nodes]})
    run_testinfra(r.report, r.table, r.ssh_config, inventory, r.work)


def _drill(r: LabRun) -> drill_lib.Drill:
    lb, ca = need(r.lb, "the load balancer settings"), need(r.ca_file, "the cluster CA")
    if r.drill is None:
        r.drill = drill_lib.Drill(r.table, r.ssh_config, ApiProbe(lb.vip, lb.port, ca), lb.interface, lb.api_port, ca)
    return r.drill


def step_failover(r: LabRun) -> None:
    d = _drill(r)
    try:
        d.run(r.options.drill_rounds)
    finally:
        summary = d.result.summary()
        r.report.extra["drill"] = summary
        for t in d.result.trials:
            r.report.rows.append(Row("failover", t.kind, f"{t.node}->{t.new_holder}", "pass", t.seconds,
                                     f"{t.failed_probes} failed probe(s); command latency {t.command_latency_s:.2f} s"))
        for j in d.result.rejoins:
            r.report.rows.append(Row("rejoin", "power on", j.node, "pass", j.seconds, j.state))
    agent = summary.get("agent_probe", {})
    if agent and (not agent.get("answering_at_end") or agent.get("agent_restarted")):
        raise DeployError(f"the agent {agent.get('node')} lost the API through the VIP during the drill: {agent}")


def step_rotation(r: LabRun) -> None:
    out = rotation.rotation(_drill(r))
    r.report.rows.append(Row("rotation", "k3s killed", out["victim"], "pass", out["marked_down_within_s"],
                             f"{out['backend']} DOWN on {out['lb']}; while DOWN {out['probes_while_down']} /ping ok "
                             f"(by {', '.join(out['answered_while_down_by'])}); UP after {out['back_up_after_s']} s"))


RESET_CHECK = r"""set -u
vip=$1 iface=$2; shift 2
bad=()
ip -o -4 addr show dev "$iface" | grep -qF " $vip/" && bad+=("VIP $vip still on $iface")
for f in "$@"; do [[ -e "$f" ]] && bad+=("$f still there"); done
grep -qF 'Managed by GL-Native Deploy' /etc/haproxy/haproxy.cfg 2>/dev/null && bad+=("haproxy.cfg still ours")
for s in haproxy keepalived; do systemctl is-active --quiet "$s" && bad+=("$s still active"); done
printf '%s\n' "${bad[@]}"
"""


def step_lb_reset(r: LabRun) -> None:
    """k3s-uninstall.sh (the node reset) on the VIP holder removes its VIP, HAProxy and Keepalived
    configuration; the VIP moves to another node and keeps answering."""
    lb, d = need(r.lb, "the load balancer settings"), _drill(r)
    node = holder(r.ssh_config, r.table, r.table.servers, lb.vip, lb.interface)
    uninstall = offline.uninstall_on(node)
    name = Path(uninstall).name
    say(f"lb reset: {uninstall} on {node.name} (the VIP holder)")
    start = time.monotonic()
    ssh(r.ssh_config, node.ip, ["sudo", uninstall], timeout=300)
    left = ssh(r.ssh_config, node.ip, ["sudo", "bash", "-c", RESET_CHECK, "gl-reset-check", lb.vip, lb.interface,
                                       *LB_FILES], timeout=60).stdout.split("\n")
    left = [x for x in left if x.strip()]
    r.report.extra["lb_reset"] = {"node": node.name, "left_behind": left}
    if left:
        r.report.rows.append(Row("lb reset", name, node.name, "fail", round(time.monotonic() - start, 1),
                                 "; ".join(left)))
        raise DeployError(f"lb reset: {uninstall} on {node.name} left the load balancer behind: {'; '.join(left)}")
    took = wait_answer(d.probe, 60, f"the API VIP after resetting {node.name}")
    new = holder(r.ssh_config, r.table, [n for n in r.table.servers if n != node], lb.vip, lb.interface)
    r.report.extra["lb_reset"].update({"vip_now_on": new.name, "vip_answered_after_s": round(took, 1)})
    r.report.rows.append(Row("lb reset", name, node.name, "pass", round(time.monotonic() - start, 1),
                             f"VIP, HAProxy and Keepalived config removed; VIP now on {new.name}"))
