"""A k3s server process killed behind HAProxy is taken out of rotation by HAProxy's /ping health check
(cluster lab step "health-check rotation")."""
from __future__ import annotations

import time
from typing import Any

from gldeploy.errors import DeployError
from gldeploy.lab.drill import SERVER_UNIT, Drill
from gldeploy.lab.proc import say, wait_for
from gldeploy.lab.vagrant import ssh
from gldeploy.lab.vip import Answer

# the holder's HAProxy log (journald) since epoch $1: its health-check verdicts on one server ($2)
HAPROXY_LOG = r"""journalctl -b -t haproxy --since "@$1" -o cat --no-pager 2>/dev/null | grep -F "/$2 is " || true"""
ROTATION_PROBES = 40  # at most, while the server is DOWN
EARLY_PROBES = 5  # right after the kill, before HAProxy's verdict (counted, not judged)


def rotation(drill: Drill) -> dict[str, Any]:
    """Kill (SIGKILL) the k3s server process that answers the host's connections through the VIP:
    HAProxy on the VIP holder must mark it DOWN by its /ping health check and send the host's new
    connections to another server (no failed /ping through the VIP), then mark it UP again once
    systemd has restarted k3s. DeployError when any of that does not happen. Probes in flight before the
    DOWN mark are counted, not judged (a connection cut by the kill itself)."""
    first = drill.probe.ping()
    victim = next((n for n in drill.servers if n.name in first.names), None)
    if not first.ok or victim is None:
        raise DeployError(f"rotation: /ping through the VIP answered {first} and names no lab server "
                          f"({', '.join(first.names)}): cannot tell which server to take down")
    lb = drill.holder()
    backend = f"k3s-{[n.ip for n in drill.servers].index(victim.ip) + 1}"
    since = ssh(drill.ssh_config, lb.ip, ["date", "+%s"], timeout=60).stdout.strip()
    say(f"rotation: SIGKILL k3s on {victim.name} ({backend} of HAProxy on {lb.name})")
    t_kill = time.monotonic()
    ssh(drill.ssh_config, victim.ip, ["sudo", "systemctl", "kill", "--signal=SIGKILL", SERVER_UNIT], timeout=60)
    early = [drill.probe.ping(2.0) for _ in range(EARLY_PROBES)]

    def verdicts() -> str:
        return ssh(drill.ssh_config, lb.ip, ["sudo", "bash", "-c", HAPROXY_LOG, "gl-haproxy-log", since, backend],
                   timeout=60, check=False).stdout
    wait_for(lambda: " is DOWN" in verdicts(), timeout=30, interval=1,
             what=f"HAProxy on {lb.name} to mark {backend} ({victim.name}) DOWN")
    down_s = time.monotonic() - t_kill
    # out of rotation: while it is DOWN every /ping through the VIP is answered by another server
    late: list[Answer] = []
    while " is UP" not in verdicts() and len(late) < ROTATION_PROBES:
        late.append(drill.probe.ping(2.0))
    servers = {n.name for n in drill.servers}
    late_by = sorted({name for a in late if a.ok for name in a.names if name in servers})
    late_failed = [a.error for a in late if not a.ok]
    wait_for(lambda: " is UP" in verdicts(), timeout=180, interval=2,
             what=f"HAProxy on {lb.name} to mark {backend} ({victim.name}) UP after k3s restarted")
    out = {"victim": victim.name, "backend": backend, "lb": lb.name, "marked_down_within_s": round(down_s, 1),
           "probes_before_down": len(early), "failed_before_down": len([a for a in early if not a.ok]),
           "probes_while_down": len(late), "failed_while_down": len(late_failed), "answered_while_down_by": late_by,
           "back_up_after_s": round(time.monotonic() - t_kill, 1), "log": verdicts().strip().splitlines()[-4:]}
    drill.result.rotation = out
    if late_failed or victim.name in late_by or not late:
        raise DeployError(f"rotation: while HAProxy had {backend} ({victim.name}) DOWN, {len(late_failed)} of "
                          f"{len(late)} /ping through the VIP failed and they were answered by {late_by}: it "
                          f"should have been out of rotation")
    say(f"rotation: {backend} marked DOWN within {down_s:.1f} s ({out['failed_before_down']} of {len(early)} /ping "
        f"failed before); while DOWN {len(late)} /ping all answered by {', '.join(late_by)}; UP again after "
        f"{out['back_up_after_s']} s")
    return out
