"""Lab measurements and report: step timings, host RAM peak, phase rows, JSON file and a rich table."""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gldeploy.results import check_summary

STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skipped": "dim", "error": "red"}


def host_memory_used_mib(meminfo: str | None = None) -> int:
    """MemTotal - MemAvailable in MiB (from /proc/meminfo, or the given text)."""
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    values = {ln.split(":")[0]: int(ln.split()[1]) for ln in text.splitlines() if ":" in ln}
    return (values["MemTotal"] - values["MemAvailable"]) // 1024


class MemorySampler:
    """Background thread sampling host memory use every `interval` seconds; keeps the peak."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.baseline = host_memory_used_mib()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gl-lab-mem")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, host_memory_used_mib())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Row:
    """One line of the lab table: a deploy phase on a host, an offline script, or a verifier test."""

    step: str
    phase: str
    host: str
    status: str
    duration: float
    reason: str = ""


@dataclass
class LabReport:
    """Everything a lab run measured; `write` saves JSON, `table` renders the human summary."""

    lab: str
    k3s_mode: str
    k3s_reason: str
    accel: str
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    steps: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    result: str = "running"
    error: str = ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a named step (recorded even when it raises)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - start, 1)

    def add_deploy_report(self, step: str, data: dict[str, Any]) -> None:
        """Rows from the JSON report of `invoke deploy` (results per phase and host)."""
        for r in data.get("results", []):
            reason = (r.get("message") or check_summary(r.get("checks", [])))[:200]
            self.rows.append(Row(step, r.get("phase", "?"), r.get("host", "?"), r.get("status", "?"),
                                 round(float(r.get("duration", 0.0)), 1), reason))

    def summary(self) -> dict[str, Any]:
        """Derived numbers: total, share of each step, second-run ratio."""
        total = sum(self.steps.values())
        out: dict[str, Any] = {"total_s": round(total, 1),
                               "share": {k: round(v / total, 3) for k, v in self.steps.items()} if total else {}}
        first, second = self.steps.get("deploy (1st)"), self.steps.get("deploy (2nd, idempotency)")
        if first and second:
            out["second_run_ratio"] = round(second / first, 3)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "k3s_mode": self.k3s_mode, "k3s_reason": self.k3s_reason,
                "accel": self.accel, "started": self.started, "result": self.result, "error": self.error,
                # a stand-in run passes without Kubernetes having been checked at all
                "kubernetes_verified": self.result == "pass" and self.k3s_mode == "real",
                "steps_s": self.steps, **self.summary(), **self.extra,
                "rows": [asdict(r) for r in self.rows]}

    def write(self, directory: Path) -> Path:
        """reports/lab-<lab>-<timestamp>.json (and lab-<lab>-latest.json)."""
        directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps(self.to_dict(), indent=2) + "\n"
        path = directory / f"lab-{self.lab}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(body)
        (directory / f"lab-{self.lab}-latest.json").write_text(body)
        return path

    def print(self, console: Console) -> None:
        """The human table: rows, then steps with their share, then the headline numbers."""
        mode = "REAL k3s" if self.k3s_mode == "real" else "k3s STAND-IN (Kubernetes checks skipped)"
        table = Table(title=Text(f"lab {self.lab}: {mode}, {self.accel}"))
        for col in ("step", "phase", "host", "duration", "result"):
            table.add_column(col)
        for r in self.rows:
            result = Text(r.status, style=STYLE.get(r.status, ""))
            if r.reason:
                result.append(f": {r.reason}")
            table.add_row(Text(r.step), Text(r.phase), Text(r.host), f"{r.duration:.1f}s", result)
        console.print(table)
        summ = self.summary()
        steps = Table(title="timings")
        steps.add_column("step")
        steps.add_column("seconds", justify="right")
        steps.add_column("share", justify="right")
        for name, secs in self.steps.items():
            steps.add_row(Text(name), f"{secs:.1f}", f"{summ['share'].get(name, 0) * 100:.0f}%")
        console.print(steps)
        self.print_cluster(console)
        ratio = summ.get("second_run_ratio")
        console.print(f"k3s mode: {self.k3s_mode} ({self.k3s_reason})", markup=False)
        console.print(f"total {summ['total_s']:.0f} s; second-run ratio "
                      f"{'n/a' if ratio is None else f'{ratio:.2f} (target < 0.2)'}; host RAM peak "
                      f"{self.extra.get('host_ram_peak_mib', '?')} MiB "
                      f"(baseline {self.extra.get('host_ram_baseline_mib', '?')} MiB); result: {self.result}"
                      f"{'' if self.k3s_mode == 'real' else ' (k3s stand-in: Kubernetes not verified)'}",
                      markup=False)

    def print_cluster(self, console: Console) -> None:
        """Cluster labs: VIP failover per fault kind (median/max), rotation, join timing."""
        drill = self.extra.get("drill", {})
        if drill.get("failover"):
            table = Table(title="VIP failover: fault -> first good /ping through the VIP (goal: median < 3 s)")
            for col in ("fault", "trials", "median", "max", "goal"):
                table.add_column(col)
            for kind, st in drill["failover"].items():
                if not st.get("n"):
                    table.add_row(kind, "0", "-", "-", Text("not run", style="red"))
                    continue
                goal = Text("met" if st["goal_met"] else "missed", style="green" if st["goal_met"] else "yellow")
                table.add_row(kind, str(st["n"]), f"{st['median_s']:.2f}s", f"{st['max_s']:.2f}s", goal)
            console.print(table)
            agent = drill.get("agent_probe") or {}
            if agent:
                console.print(f"agent {agent.get('node')}: {agent.get('probes')} /ping through the VIP during the "
                              f"drill, {agent.get('failed')} failed, longest outage {agent.get('longest_outage_s')} s, "
                              f"agent process {'restarted' if agent.get('agent_restarted') else 'never restarted'}",
                              markup=False)
        join = self.extra.get("join")
        if join:
            console.print(f"join: 1 worker alone {join['one_alone_s']} s, {join['workers']} concurrently "
                          f"{join['together_s']} s, ratio {join['ratio']} (goal <= {join['goal_ratio_le']}: "
                          f"{'met' if join['goal_met'] else 'missed'})", markup=False)
