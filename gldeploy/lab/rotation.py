"""A k3s server process killed behind HAProxy is taken out of rotation by HAProxy's /ping health check
(cluster lab step "health-check rotation")."""
from __future__ import annotations

import time
from typing import Any

from gldeploy.errors import DeployError
from gldeploy.lab.drill import Drill
from gldeploy.lab.proc import say, wait_for
from gldeploy.lab.vagrant import ssh

# the holder's HAProxy log (journald) since epoch $1: its health-check verdicts on one server ($2)
HAPROXY_LOG = r"""journalctl -b -t haproxy --since "@$1" -o cat --no-pager 2>/dev/null | grep -F "/$2 is " || true"""
ROTATION_PROBES = 40


def rotation(drill: Drill) -> dict[str, Any]:
    """Kill (SIGKILL) the k3s server process that answers the host's connections through the VIP:
    HAProxy on the VIP holder must mark it DOWN by its /ping health check and send the host's new
    connections to another server (no failed /ping through the VIP), then mark it UP again once
    systemd has restarted k3s. DeployError when any of that does not happen."""
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
    ssh(drill.ssh_config, victim.ip, ["sudo", "systemctl", "kill", "--signal=SIGKILL", "k3s"], timeout=60)
    answers = [drill.probe.ping(2.0) for _ in range(ROTATION_PROBES)]
    failed = [a.error for a in answers if not a.ok]
    by = sorted({name for a in answers if a.ok for name in a.names if name in {n.name for n in drill.servers}})

    def verdicts() -> str:
        return ssh(drill.ssh_config, lb.ip, ["sudo", "bash", "-c", HAPROXY_LOG, "gl-haproxy-log", since, backend],
                   timeout=60, check=False).stdout
    wait_for(lambda: " is DOWN" in verdicts(), timeout=30, interval=1,
             what=f"HAProxy on {lb.name} to mark {backend} ({victim.name}) DOWN")
    down_s = time.monotonic() - t_kill
    wait_for(lambda: " is UP" in verdicts(), timeout=180, interval=2,
             what=f"HAProxy on {lb.name} to mark {backend} ({victim.name}) UP after k3s restarted")
    out = {"victim": victim.name, "backend": backend, "lb": lb.name, "probes": len(answers),
           "failed": len(failed), "answered_by": by, "marked_down_within_s": round(down_s, 1),
           "back_up_after_s": round(time.monotonic() - t_kill, 1), "log": verdicts().strip().splitlines()[-4:]}
    drill.result.rotation = out
    if failed:
        raise DeployError(f"rotation: {len(failed)} of {len(answers)} /ping through the VIP failed while k3s "
                          f"on {victim.name} was down (first: {failed[0]}); HAProxy should redispatch")
    if victim.name in by and by == [victim.name]:
        raise DeployError(f"rotation: every /ping was still answered by {victim.name} after its k3s was killed")
    say(f"rotation: {backend} marked DOWN within {down_s:.1f} s; {len(answers)} /ping through the VIP all "
        f"answered (by {', '.join(by)}); UP again after {out['back_up_after_s']} s")
    return out
