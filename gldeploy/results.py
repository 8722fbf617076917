"""Per phase and host results: parsed from the scripts' `--json` object, shown as a table, saved as JSON.

Script exit codes: 0 pass (or warn), 3 warnings only (success with warnings), 1 failed, 2 bad input.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from .errors import EXIT_BAD_INPUT, EXIT_FAILED

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skipped": "dim", "not run": "dim"}


@dataclass
class PhaseResult:
    """What one phase script reported on one host."""

    phase: str
    host: str
    role: str
    status: str  # pass | warn | fail | skipped | not run
    rc: int | None
    duration: float
    changed: bool = False
    k3s_mode: str = "none"
    checks: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "warn", "skipped")


def json_object(stdout: str) -> dict[str, Any] | None:
    """The one JSON object a script prints with --json (tolerates stray lines before it)."""
    text = stdout.strip()
    candidates = [text] + [line for line in reversed(text.splitlines()) if line.startswith("{")]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def check_summary(checks: Sequence[dict[str, Any]]) -> str:
    """The notes for a phase: its failures and warnings, else how many checks were skipped and why
    (under the k3s stand-in: "needs real k3s"), so a skipped check never reads as a plain pass."""
    problems = [c for c in checks if c.get("status") in ("fail", "warn")]
    if problems:
        return "; ".join(f"{c.get('name')}: {c.get('message', '')}" for c in problems[:3])
    skipped = [c for c in checks if c.get("status") == "skipped"]
    if skipped:
        return f"{len(skipped)} check(s) skipped: {skipped[0].get('message', '')}"
    return ""


def from_script(phase: str, host: str, role: str, rc: int, stdout: str, stderr: str,
                duration: float) -> PhaseResult:
    """Build a result from a script's exit code and --json output."""
    report = json_object(stdout)
    if report is None:
        status = "fail" if rc not in (0, 3) else "warn"
        message = _last_line(stderr) or f"exit {rc}, no JSON report on stdout"
        return PhaseResult(phase, host, role, status, rc, duration, message=message)
    status = str(report.get("status", ""))
    if rc in (1, 2) or status == "fail":
        status = "fail"
    elif rc == 3 and status == "pass":
        status = "warn"
    elif status not in ("pass", "warn", "skipped"):
        status = "fail" if rc else "warn"
    checks = [c for c in report.get("checks", []) if isinstance(c, dict)]
    message = check_summary(checks)
    if rc == 2 and not message:
        message = _last_line(stderr) or "bad input"
    return PhaseResult(phase, host, role, status, rc, duration, changed=bool(report.get("changed")),
                       k3s_mode=str(report.get("k3s_mode", "none")), checks=checks, message=message)


def not_run(phase: str, host: str, role: str, reason: str) -> PhaseResult:
    """A phase skipped because an earlier phase failed on the host."""
    return PhaseResult(phase, host, role, "not run", None, 0.0, message=reason)


def exit_code(results: Sequence[PhaseResult]) -> int:
    """0 when every phase passed or warned; 2 when the only failures were bad input; else 1."""
    failed = [r for r in results if r.status == "fail"]
    if not failed:
        return 0
    if all(r.rc == EXIT_BAD_INPUT for r in failed):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def summary(results: Sequence[PhaseResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def print_table(results: Sequence[PhaseResult], console: Console) -> None:
    """Human table: one row per phase and host."""
    table = Table(title="GL-Native Deploy results")
    for column in ("phase", "host", "role", "status", "changed", "k3s", "time"):
        table.add_column(column, no_wrap=True)
    table.add_column("notes", overflow="fold", min_width=20)
    for r in results:
        style = STATUS_STYLE.get(r.status, "")
        table.add_row(r.phase, r.host, r.role, f"[{style}]{r.status}[/]" if style else r.status,
                      "yes" if r.changed else "no change", r.k3s_mode, f"{r.duration:.1f}s", r.message)
    console.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary(results).items()))
    console.print(f"summary: {counts or 'nothing ran'}")


def write_report(path: str | Path, results: Sequence[PhaseResult], meta: dict[str, Any]) -> Path:
    """Write the JSON report file (results, summary, exit code, plus meta such as env file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = {**meta, "exit_code": exit_code(results), "summary": summary(results),
            "results": [asdict(r) for r in results]}
    target.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return target
