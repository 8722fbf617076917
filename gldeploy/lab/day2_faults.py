"""The day-2 lab's doctor fault drill: each documented single-node failure injected on the VM, doctor
must name the right check (failed, with its fix), then the fault is undone and doctor must be clean
again. Also the restore refusal cases (a corrupt, a truncated and a token-less copy of a backup).
Scripts run as root through `sudo bash -c SCRIPT NAME ARGS...`: values are arguments, never code."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gldeploy.lab.nodes import Node
from gldeploy.lab.report import Row
from gldeploy.lab.vagrant import ssh
from gldeploy.settings import Settings

DRILL_DIR = "/run/gl-drill"  # what a fault moved aside (tmpfs; removed by the undo)
CLUSTER_ONLY = ("config-drift-between-servers", "vip-held")

# wait (bounded) until the k3s API answers again; $1 = API port
WAIT_K3S = r"""
for _ in $(seq 1 120); do
  if curl -sk --max-time 2 "https://127.0.0.1:$1/ping" | grep -q pong; then exit 0; fi
  sleep 1
done
echo "k3s did not answer /ping within 120 s" >&2; exit 1
"""


@dataclass(frozen=True)
class Fault:
    """A documented failure: how to cause it, the doctor checks that must name it, how to undo it.
    Scripts get: $1 API port, $2 the doctor directory, $3 the drill directory."""

    name: str
    expect: tuple[str, ...]  # at least one of these checks must fail, with a fix
    inject: str
    undo: str


HEAD = "set -euo pipefail\nport=$1 doctor=$2 drill=$3\nmkdir -p \"$drill\"\n: \"$port\" \"$doctor\"\n"

FAULTS: tuple[Fault, ...] = (
    Fault("k3s stopped", ("k3s-service",), "systemctl stop k3s",
          "systemctl start k3s\n" + WAIT_K3S.replace("$1", "$port")),
    Fault("port 6443 taken", ("port-conflict",),
          "systemctl stop k3s\n"
          "systemd-run --quiet --collect --unit=gl-drill-port python3 -m http.server \"$port\" --bind 0.0.0.0\n"
          "for _ in $(seq 1 30); do ss -ltnH \"sport = :$port\" | grep -q . && exit 0; sleep 1; done\n"
          "echo \"nothing listens on $port\" >&2; exit 1",
          "systemctl stop gl-drill-port 2>/dev/null || true\nsystemctl start k3s\n" + WAIT_K3S.replace("$1", "$port")),
    Fault("clock skewed (-30 min)", ("clock-sync", "clock-cert-skew"),
          "timedatectl set-ntp false\ndate -s \"@$(( $(date +%s) - 1800 ))\" >/dev/null",
          "date -s \"@$(( $(date +%s) + 1800 ))\" >/dev/null\ntimedatectl set-ntp true\n"
          "for _ in $(seq 1 90); do\n"
          "  [[ $(timedatectl show -p NTPSynchronized --value) == yes ]] && exit 0; sleep 1\ndone\n"
          "echo 'clock not synchronised again within 90 s' >&2; exit 1"),
    Fault("registry CA replaced", ("registry-ca",),
          "f=/etc/rancher/k3s/registry-ca.crt\ncp -p \"$f\" \"$drill/registry-ca.crt\"\n"
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \"$drill/wrong.key\" "
          "-subj /CN=gl-drill-wrong-ca -days 1 -out \"$drill/wrong.crt\" 2>/dev/null\ncat \"$drill/wrong.crt\" >\"$f\"",
          "cp -p \"$drill/registry-ca.crt\" /etc/rancher/k3s/registry-ca.crt"),
    Fault("wrong registry password", ("registry-auth",),
          # the password doctor (and the install phase) take: REGISTRY_PASSWORD_FILE of the shipped settings
          "f=$(. \"$doctor/settings.env\"; printf '%s' \"$REGISTRY_PASSWORD_FILE\")\n[[ $f == /* ]] || f=$doctor/$f\n"
          "printf '%s\\n' \"$f\" >\"$drill/password-path\"\ncp -p \"$f\" \"$drill/password\"\n"
          "printf 'wrong-%s\\n' \"$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n')\" >\"$f\"",
          "cp -p \"$drill/password\" \"$(<\"$drill/password-path\")\""),
    Fault("disk nearly full", ("disk-pressure",),
          "dir=/var/lib/rancher\nread -r size avail < <(df -Pk \"$dir\" | awk 'NR == 2 {print $2, $4}')\n"
          "fill=$(( avail - size * 5 / 100 ))\n(( fill > 0 )) || exit 0\n"
          "fallocate -l \"${fill}K\" \"$dir/gl-drill-fill\"",
          "rm -f /var/lib/rancher/gl-drill-fill"),
)
CLEANUP = "rm -rf -- \"$drill\""


def _root(ssh_config: Path, node: Node, script: str, s: Settings, doctor_dir: str, what: str) -> str:
    """Run a drill script as root; "" when it worked, else its last error line."""
    res = ssh(ssh_config, node.ip, ["sudo", "bash", "-c", HEAD + script, f"gl-drill-{what}", str(s.api_port),
                                    doctor_dir, DRILL_DIR], timeout=300, check=False)
    return "" if res.returncode == 0 else (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]


def run_drill(ssh_config: Path, node: Node, doctor: Callable[[], tuple[dict[str, Any], float]], s: Settings,
              doctor_dir: str) -> tuple[list[Row], dict[str, Any]]:
    """Every fault in FAULTS: inject, doctor, undo, doctor; one report row each, and the figures."""
    rows: list[Row] = []
    summary: dict[str, Any] = {}
    for fault in FAULTS:
        start = time.monotonic()
        entry: dict[str, Any] = {"expect": list(fault.expect)}
        try:
            err = _root(ssh_config, node, fault.inject, s, doctor_dir, "inject")
            if err:
                entry["error"] = f"inject failed: {err}"
            else:
                data, wall = doctor()
                failed = {str(c.get("name")): c for c in data.get("checks", []) if c.get("status") == "fail"}
                named = [n for n in fault.expect if n in failed and str(failed[n].get("fix", "")).strip()]
                entry.update({"failed_checks": sorted(failed), "named": named, "doctor_s": round(wall, 2),
                              "fix": str(failed[named[0]].get("fix", ""))[:200] if named else ""})
        finally:
            undo_err = _root(ssh_config, node, fault.undo + "\n" + CLEANUP, s, doctor_dir, "undo")
        after, _ = doctor()
        still = sorted(str(c.get("name")) for c in after.get("checks", []) if c.get("status") == "fail")
        entry.update({"undo_error": undo_err, "failed_after_undo": still})
        ok = bool(entry.get("named")) and not undo_err and not still and "error" not in entry
        summary[fault.name] = entry
        failed_list = ", ".join(entry.get("failed_checks", [])) or "none"
        reason = str(entry.get("error") or (f"doctor named {', '.join(entry['named'])}" if entry.get("named") else
                     f"doctor did not name {' or '.join(fault.expect)} (failed: {failed_list})"))
        if undo_err or still:
            reason += f"; after undo: {undo_err or 'failed checks ' + ', '.join(still)}"
        rows.append(Row("fault drill", fault.name, node.name, "pass" if ok else "fail",
                        round(time.monotonic() - start, 1), reason))
    for name in CLUSTER_ONLY:
        summary[name] = {"skipped": "cluster lab only"}
        rows.append(Row("fault drill", name, node.name, "skipped", 0.0, "cluster lab only"))
    return rows, summary


# restore.sh against a damaged copy of the restored backup: $1 case, $2 the backup on the node, $3 the tools
RESTORE_CASE_SCRIPT = r"""set -uo pipefail
case_=$1 src=$2 tools=$3 dir=$2-$1
rm -rf -- "$dir"; cp -a -- "$src" "$dir"
db=$dir/datastore/state.db
case "$case_" in
  corrupt)
    off=$(( $(stat -c %s "$db") / 2 ))
    byte=$(od -An -tu1 -j "$off" -N1 "$db" | tr -d ' ')
    printf "\\$(printf '%03o' $(( byte ^ 255 )))" | dd of="$db" bs=1 seek="$off" conv=notrunc status=none ;;
  truncated) truncate -s "$(( $(stat -c %s "$db") / 2 ))" "$db" ;;
  no-token)
    rm -f -- "$dir/token"
    sed -i '/  token$/d' "$dir/SHA256SUMS"
    sed -i -E 's/(, )?\{"path": "token", "sha256": "[0-9a-f]+", "size": [0-9]+\}//' "$dir/manifest.json" ;;
esac
GL_BUNDLE_DIR=$tools bash "$tools/restore.sh" --json --from "$dir"
rc=$?
rm -rf -- "$dir"
exit "$rc"
"""
# case -> a phrase the refusal must contain
# (day2_verify_backup's words for a changed file, restore_validate's for a missing token; never a path)
REFUSALS = {"corrupt": "but SHA256SUMS lists", "truncated": "but SHA256SUMS lists", "no-token": "the token is missing"}
