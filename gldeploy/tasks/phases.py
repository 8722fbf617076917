"""Top-level single-node tasks: one per phase of the single-node sequence, plus `deploy` running them all.

The phases, their order and their one-line summaries come from gldeploy/sequences.py.
"""
from __future__ import annotations

from typing import Any, Callable

from invoke import Context, Task

from gldeploy import sequences
from gldeploy.errors import guarded
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, run_phases

# task name per single-node phase (the script name without its number)
TASK_NAMES = {p.name: p.name[3:].replace("_", "-") for p in sequences.sequence("single")}


def _phase_task(name: str, phases: tuple[str, ...], doc: str) -> Task[Any]:
    """A task running `phases` with the common options (one signature, no copy-pasted parameters)."""

    def body(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
             json_report: str = "", role: str = "", sample_image: bool = False) -> None:
        run_phases(phases, env=env, set_=set_ or [], hosts=hosts, dry_run=dry_run, json_report=json_report,
                   role=role, sample_image=sample_image)

    body.__name__ = body.__qualname__ = name.replace("-", "_")
    body.__doc__ = doc
    wrapped: Callable[..., None] = guarded(body)
    return gl_task(name=name, help=dict(COMMON_HELP), iterable=["set_"])(wrapped)


TASKS = tuple(
    _phase_task(TASK_NAMES[p.name], (p.name,), f"{p.summary[0].upper()}{p.summary[1:]} ({p.name[:2]}).")
    for p in sequences.sequence("single")
) + (_phase_task("deploy", sequences.names("single"),
                 "Run every single-node phase in order: " + ", ".join(sequences.names("single")) + "."),)
