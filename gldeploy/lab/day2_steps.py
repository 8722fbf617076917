"""The day-2 lab's steps (runner.STEPS_OF["day2"], table vagrant/labs/day2.yml = the single node): a host
snapshot before anything is installed, the single lab's deploy, doctor on the healthy node (timed per
check), the doctor fault drill (gldeploy/lab/day2_faults.py), backup + restore with refused bad backups,
the uninstall, and a second snapshot that must equal the first (gldeploy/lab/snapshot.py). What a step
makes for a later one is a file in the lab's state dir; every figure goes to report.extra["day2"]."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gldeploy import results
from gldeploy import settings as settings_lib
from gldeploy.day2 import remote
from gldeploy.errors import DeployError
from gldeploy.lab import snapshot
from gldeploy.lab.day2_faults import REFUSALS, RESTORE_CASE_SCRIPT, run_drill
from gldeploy.lab.nodes import Node
from gldeploy.lab.offline import uninstall_on
from gldeploy.lab.proc import invoke_argv, run, say
from gldeploy.lab.report import Row
from gldeploy.lab.vagrant import ssh
from gldeploy.paths import REPO
from gldeploy.settings import Settings

if TYPE_CHECKING:
    from gldeploy.lab.runner import LabRun

DOCTOR_GOAL_S = 5.0  # goal for one doctor run on a node under TCG (reported, never failed on)
TASK_TIMEOUT = 900


def day2(r: LabRun) -> dict[str, Any]:
    """The report's day-2 figures (report.extra["day2"])."""
    data: dict[str, Any] = r.report.extra.setdefault("day2", {})
    return data


def node_of(r: LabRun) -> Node:
    if len(r.table.nodes) != 1:
        raise DeployError(f"day-2 lab: the table {r.table.name} must have exactly one node (single), "
                          f"it has {len(r.table.nodes)}")
    return r.table.nodes[0]


def loaded(r: LabRun) -> Settings:
    return settings_lib.load(r.table.env_file, overrides=r.sets)


def doctor_dir(s: Settings) -> str:
    return (s.work_dir.rstrip("/") or "/var/lib/gl-deploy") + "-doctor"


# --- snapshots ---
def take_snapshot(r: LabRun, node: Node) -> dict[str, Any]:
    """host_snapshot.sh over ssh stdin as root; the parsed JSON object."""
    out = ssh(r.ssh_config, node.ip, ["sudo", "bash", "-s"], input_text=snapshot.SCRIPT.read_text(), timeout=900)
    return snapshot.parse(out.stdout, node.name)


def step_snapshot_before(r: LabRun) -> None:
    node = node_of(r)
    start = time.monotonic()
    snap = take_snapshot(r, node)
    (r.work / "snapshot-before.json").write_text(json.dumps(snap))
    day2(r)["snapshot_before"] = {"seconds": round(time.monotonic() - start, 1),
                                  "files": len(snap.get("entries", [])), "units": len(snap.get("units", []))}


def step_snapshot_after(r: LabRun) -> None:
    """The second snapshot; every difference not on snapshot.ALLOWLIST fails the lab."""
    node = node_of(r)
    path = r.work / "snapshot-before.json"
    if not path.exists():
        raise DeployError("lab step order: the host snapshot (before) step did not run")
    before = json.loads(path.read_text())
    after = take_snapshot(r, node)
    (r.work / "snapshot-after.json").write_text(json.dumps(after))
    failing, ok = snapshot.split(snapshot.diff(before, after))
    day2(r)["uninstall_diff"] = {
        "differences": len(failing), "goal": 0, "listed": [str(d) for d in failing[:200]],
        "allowed": [{"difference": str(d), "reason": a.reason} for d, a in ok],
        "allowlist": [{"section": a.section, "patterns": list(a.patterns), "reason": a.reason}
                      for a in snapshot.ALLOWLIST]}
    status = "pass" if not failing else "fail"
    r.report.rows.append(Row("uninstall diff", "host snapshot", node.name, status, 0.0,
                             f"{len(failing)} difference(s) left (goal 0), {len(ok)} allowed"))
    if failing:
        shown = "; ".join(str(d) for d in failing[:15])
        raise DeployError(f"uninstall left {len(failing)} difference(s) against the snapshot taken before the "
                          f"install: {shown}{' ...' if len(failing) > 15 else ''}")


# --- doctor ---
def doctor_direct(r: LabRun, node: Node) -> tuple[dict[str, Any], float]:
    """doctor.sh --json on the node, from the directory `invoke doctor` shipped; (result, wall seconds)."""
    d = doctor_dir(loaded(r))
    start = time.monotonic()
    res = ssh(r.ssh_config, node.ip, ["sudo", "env", f"GL_BUNDLE_DIR={d}", "bash", f"{d}/doctor.sh", "--json",
                                      "--role", node.role], timeout=300, check=False)
    wall = time.monotonic() - start
    data = results.json_object(res.stdout)
    if data is None:
        raise DeployError(f"doctor.sh on {node.name} printed no JSON result (exit {res.returncode}): "
                          f"{res.stderr.strip()[-300:]}")
    return data, wall


def failing_checks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("name")): c for c in data.get("checks", []) if c.get("status") == "fail"}


def step_doctor_healthy(r: LabRun) -> None:
    """`invoke doctor` (the operator path, ships doctor.sh), then doctor.sh timed on the node."""
    node = node_of(r)
    out = r.work / "doctor-healthy.json"
    start = time.monotonic()
    task = run(invoke_argv("doctor", r.table.env_file, r.sets, "--json-report", str(out)), cwd=REPO,
               timeout=TASK_TIMEOUT, check=False, capture=False, what="invoke doctor")
    invoke_s = time.monotonic() - start
    data, wall = doctor_direct(r, node)
    checks = {str(c.get("name")): {"status": c.get("status"), "seconds": c.get("seconds"),
                                   **({"message": c.get("message")} if c.get("status") != "pass" else {})}
              for c in data.get("checks", [])}
    total = float(data.get("seconds", wall))
    day2(r)["doctor_healthy"] = {
        "invoke_doctor_exit": task.returncode, "invoke_doctor_s": round(invoke_s, 1),
        "doctor_sh_total_s": total, "doctor_sh_wall_s": round(wall, 2), "goal_s": DOCTOR_GOAL_S,
        "goal_met": total < DOCTOR_GOAL_S, "accel": r.report.accel, "k3s_mode": data.get("k3s_mode"),
        "checks": checks}
    fails = failing_checks(data)
    r.report.rows.append(Row("doctor (healthy)", "doctor.sh", node.name, "fail" if fails else "pass", round(wall, 1),
                             f"{total:.2f} s in doctor (goal < {DOCTOR_GOAL_S:.0f} s under {r.report.accel}: "
                             f"{'met' if total < DOCTOR_GOAL_S else 'missed'}), k3s {data.get('k3s_mode')}"))
    if fails or task.returncode not in (0, 3):
        raise DeployError(f"doctor on the healthy node: invoke doctor exit {task.returncode}; failed checks: "
                          + "; ".join(f"{n}: {c.get('message')}" for n, c in fails.items()))


def step_fault_drill(r: LabRun) -> None:
    node = node_of(r)
    s = loaded(r)
    rows, summary = run_drill(r.ssh_config, node, lambda: doctor_direct(r, node), s, doctor_dir(s))
    r.report.rows.extend(rows)
    day2(r)["fault_drill"] = summary
    bad = [row for row in rows if row.status == "fail"]
    if bad:
        raise DeployError("doctor fault drill: " + "; ".join(f"{b.phase}: {b.reason}" for b in bad))


# --- backup + restore ---
def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def step_backup_restore(r: LabRun) -> None:
    """backup.create (copied off, sums checked), backup.restore onto the same node, then corrupt,
    truncated and token-less copies refused by restore.sh on the node, the node healthy after each."""
    node, s = node_of(r), loaded(r)
    out = r.work / "backups"
    start = time.monotonic()
    run(invoke_argv("backup.create", r.table.env_file, r.sets, "--out", str(out)), cwd=REPO,
        timeout=TASK_TIMEOUT, capture=False, what="invoke backup.create")
    backup_s = time.monotonic() - start
    made = sorted(out.glob("gl-backup-*"))
    if not made:
        raise DeployError(f"invoke backup.create reported success but wrote nothing under {out}")
    backup = made[-1]
    manifest = json.loads((backup / "manifest.json").read_text())
    start = time.monotonic()
    run(invoke_argv("backup.restore", r.table.env_file, r.sets, "--from", str(backup)), cwd=REPO,
        timeout=TASK_TIMEOUT, capture=False, what="invoke backup.restore")
    restore_s = time.monotonic() - start
    after, _ = doctor_direct(r, node)
    if failing_checks(after):
        raise DeployError(f"after the restore doctor reports: {sorted(failing_checks(after))}")
    figures: dict[str, Any] = {"backup_s": round(backup_s, 1), "backup_bytes": _bytes(backup),
                               "kind": manifest.get("kind"), "files": len(manifest.get("files", [])),
                               "restore_s": round(restore_s, 1), "refusals": {}}
    r.report.rows.append(Row("backup + restore", "backup.create", node.name, "pass", round(backup_s, 1),
                             f"{manifest.get('kind')} backup, {figures['backup_bytes']} bytes, copied off, sums ok"))
    r.report.rows.append(Row("backup + restore", "backup.restore", node.name, "pass", round(restore_s, 1),
                             "restored onto the same node; doctor: no failed check"))
    tools = remote.tool_dir(s)  # where backup.restore staged the backup: the task's own rule
    restored = f"{tools}-restore/backup"
    for case, want in REFUSALS.items():
        res = ssh(r.ssh_config, node.ip, ["sudo", "bash", "-c", RESTORE_CASE_SCRIPT, "gl-restore-case", case,
                                          restored, tools], timeout=300, check=False)
        data = results.json_object(res.stdout) or {}
        reason = str(data.get("message") or "".join(res.stderr.strip().splitlines()[-1:]))
        health, _ = doctor_direct(r, node)
        still = not failing_checks(health)
        said = want in reason  # the refusal's own words (the case's directory name is in every message)
        ok = res.returncode == 2 and said and still
        figures["refusals"][case] = {"exit": res.returncode, "reason": reason[:300], "expected": want,
                                     "reason_named": said, "node_healthy_after": still}
        r.report.rows.append(Row("backup + restore", f"restore refused: {case}", node.name,
                                 "pass" if ok else "fail", 0.0,
                                 f"exit {res.returncode}: {reason[:160]}; node healthy after: {still}"))
    day2(r)["backup_restore"] = figures
    bad = [c for c, v in figures["refusals"].items()
           if v["exit"] != 2 or not v["node_healthy_after"] or not v["reason_named"]]
    if bad:
        raise DeployError(f"restore.sh did not refuse (exit 2, with the reason) or left the node unhealthy: "
                          f"{', '.join(bad)}")


# --- uninstall ---
def step_uninstall(r: LabRun) -> None:
    node = node_of(r)
    uninstall = uninstall_on(node)  # k3s' name for the node's service: k3s-uninstall.sh on a server
    start = time.monotonic()
    ssh(r.ssh_config, node.ip, ["sudo", uninstall], timeout=600)
    took = time.monotonic() - start
    day2(r)["uninstall_s"] = round(took, 1)
    r.report.rows.append(Row("uninstall", Path(uninstall).name, node.name, "pass", round(took, 1), ""))
    say(f"uninstall: {uninstall} on {node.name} in {took:.1f} s")
