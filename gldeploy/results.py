"""Per phase and host results: parsed from the scripts' `--json` object, shown as a table, saved as JSON.

Exit codes (scripts and the controller alike, docs/architecture.md): 0 passed, 3 passed with
warnings only, 1 failed, 2 bad input (nothing touched).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, get_args

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import EXIT_BAD_INPUT, EXIT_FAILED

Status = Literal["pass", "warn", "fail", "skipped", "not run"]
CheckStatus = Literal["pass", "warn", "fail", "skipped"]
Overall = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = get_args(Status)
EXIT_PASSED = 0
EXIT_WARNINGS = 3

STATUS_STYLE: dict[Status, str] = {"pass": "green", "warn": "yellow", "fail": "red", "skipped": "dim",
                                   "not run": "dim"}
# the keys of the architecture's result object; json_object prefers a line carrying them
RESULT_KEYS = frozenset({"phase", "status", "checks"})
_OBJECT_START = '{"phase"'


@dataclass
class PhaseResult:
    """What one phase script reported on one host."""

    phase: str
    host: str
    role: str
    status: Status
    rc: int | None
    duration: float
    changed: bool = False
    k3s_mode: str = "none"
    checks: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "warn", "skipped")


def _parse(candidate: str) -> dict[str, Any] | None:
    try:
        # strict=False: a raw control character inside a string (an older script) stays readable
        value = json.loads(candidate, strict=False)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def json_object(stdout: str) -> dict[str, Any] | None:
    """The result object a script prints with --json, found robustly in what reached stdout.

    Scripts print the object on a line of its own, preceded by a newline; stdout may also carry a
    login banner or other stray text (possibly without a trailing newline, so glued to the object's
    line). Preferred: the last line that is, or ends in, an object with the result keys; else any
    JSON object (whole text or the last line that parses as one)."""
    lines = stdout.splitlines()
    fallback: dict[str, Any] | None = None
    for line in reversed(lines):
        text = line.strip()
        if not text:
            continue
        found = _parse(text) if text.startswith("{") else None
        if found is None and _OBJECT_START in text:  # a banner glued before the object
            found = _parse(text[text.rfind(_OBJECT_START):])
        if found is None:
            continue
        if RESULT_KEYS <= found.keys():
            return found
        fallback = fallback or found
    return fallback or _parse(stdout.strip())


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def check_summary(checks: Sequence[Mapping[str, Any]]) -> str:
    """The notes for a phase: its failures and warnings, else how many checks were skipped and why
    (under the k3s stand-in: "needs real k3s"), so a skipped check never reads as a plain pass."""
    problems = [c for c in checks if c.get("status") in ("fail", "warn")]
    if problems:
        return "; ".join(f"{c.get('name')}: {c.get('message', '')}" for c in problems[:3])
    skipped = [c for c in checks if c.get("status") == "skipped"]
    if skipped:
        return f"{len(skipped)} check(s) skipped: {skipped[0].get('message', '')}"
    return ""


def _status(rc: int, reported: str) -> Status:
    """The phase status from the exit code and the status the script reported."""
    if rc in (EXIT_FAILED, EXIT_BAD_INPUT) or reported == "fail":
        return "fail"
    if rc == EXIT_WARNINGS and reported == "pass":
        return "warn"
    if reported == "pass":
        return "pass"
    if reported == "warn":
        return "warn"
    if reported == "skipped":
        return "skipped"
    return "fail" if rc else "warn"


def from_script(phase: str, host: str, role: str, rc: int, stdout: str, stderr: str,
                duration: float) -> PhaseResult:
    """Build a result from a script's exit code and --json output."""
    report = json_object(stdout)
    if report is None:
        status: Status = "fail" if rc not in (EXIT_PASSED, EXIT_WARNINGS) else "warn"
        message = _last_line(stderr) or f"exit {rc}, no JSON report on stdout"
        return PhaseResult(phase, host, role, status, rc, duration, message=message)
    raw_checks = report.get("checks", [])
    checks = [c for c in raw_checks if isinstance(c, dict)] if isinstance(raw_checks, list) else []
    message = check_summary(checks)
    if rc == EXIT_BAD_INPUT and not message:
        message = _last_line(stderr) or "bad input"
    return PhaseResult(phase, host, role, _status(rc, str(report.get("status", ""))), rc, duration,
                       changed=report.get("changed") is True, k3s_mode=str(report.get("k3s_mode", "none")),
                       checks=checks, message=message)


def not_run(phase: str, host: str, role: str, reason: str) -> PhaseResult:
    """A phase skipped because an earlier phase failed on the host."""
    return PhaseResult(phase, host, role, "not run", None, 0.0, message=reason)


def overall(results: Sequence[PhaseResult]) -> Overall:
    """The worst outcome: fail (any phase failed), warn (warnings only), else pass."""
    if any(r.status == "fail" for r in results):
        return "fail"
    if any(r.status == "warn" for r in results):
        return "warn"
    return "pass"


def exit_code(results: Sequence[PhaseResult]) -> int:
    """0 all passed; 3 passed with warnings only; 2 when the only failures were bad input; else 1."""
    worst = overall(results)
    if worst == "warn":
        return EXIT_WARNINGS
    if worst == "pass":
        return EXIT_PASSED
    failed = [r for r in results if r.status == "fail"]
    if all(r.rc == EXIT_BAD_INPUT for r in failed):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def summary(results: Sequence[PhaseResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def print_table(results: Sequence[PhaseResult], console: Console) -> None:
    """Human table: one row per phase and host. Everything a host sent is plain Text, never markup:
    a `[/]` in a message cannot crash the controller, a `[word]` does not vanish."""
    table = Table(title="GL-Native Deploy results")
    for column in ("phase", "host", "role", "status", "changed", "k3s", "time"):
        table.add_column(column, no_wrap=True)
    table.add_column("notes", overflow="fold", min_width=20)
    for r in results:
        table.add_row(Text(r.phase), Text(r.host), Text(r.role), Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                      "yes" if r.changed else "no change", Text(r.k3s_mode), f"{r.duration:.1f}s",
                      Text(r.message))
    console.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary(results).items()))
    console.print(Text(f"summary: {counts or 'nothing ran'}"))


def write_report(path: str | Path, results: Sequence[PhaseResult], meta: Mapping[str, Any]) -> Path:
    """Write the JSON report file: results, summary, the overall status and the exit code the
    controller ends with (the same exit_code()), plus meta such as the env file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = {**meta, "status": overall(results), "exit_code": exit_code(results), "summary": summary(results),
            "results": [asdict(r) for r in results]}
    target.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return target
