"""Top-level phase tasks: one per numbered script, plus `deploy` running them all in order."""
from __future__ import annotations

from typing import Any, Callable

from invoke import Context, Task, task

from gldeploy import plan
from gldeploy.errors import guarded
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, run_phases


def _phase_task(name: str, phases: tuple[str, ...], doc: str) -> Task[Any]:
    """A task running `phases` with the common options (one signature, no copy-pasted parameters)."""

    def body(c: Context, env: str = DEFAULT_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
             json_report: str = "", role: str = "", sample_image: bool = False) -> None:
        run_phases(phases, env=env, set_=set_ or [], hosts=hosts, dry_run=dry_run, json_report=json_report,
                   role=role, sample_image=sample_image)

    body.__name__ = body.__qualname__ = name.replace("-", "_")
    body.__doc__ = doc
    wrapped: Callable[..., None] = guarded(body)
    return task(name=name, help=dict(COMMON_HELP), iterable=["set_"])(wrapped)


pre_install_check = _phase_task("pre-install-check", ("01_pre_install_check",),
                                "Check every host is ready for k3s (01, read-only).")
install_k3s = _phase_task("install-k3s", ("02_install_k3s",),
                          "Install the pinned k3s release on the server (02).")
deploy_gl_backend = _phase_task("deploy-gl-backend", ("03_deploy_gl_backend",),
                                "Deploy the GL-Native Execution Backend into its namespace (03).")
health_check = _phase_task("health-check", ("04_health_check",),
                           "Check k3s and the backend are healthy (04, read-only).")
deploy = _phase_task("deploy", plan.SINGLE_NODE,
                     "Run all single-node phases in order: check, install k3s, deploy backend, health.")

TASKS = (pre_install_check, install_k3s, deploy_gl_backend, health_check, deploy)
