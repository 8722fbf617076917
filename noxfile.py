"""nox sessions for GL-Native Deploy: `nox` runs lint + tests; labs are opt-in (`nox -s lab_single`).

Sessions run in the interpreter that tools/bootstrap.sh provisioned (venv_backend "none"): the
dependencies are pinned in pyproject.toml and some tests need root and real system daemons.
"""
from __future__ import annotations

import os

import nox

nox.needs_version = ">=2024.3.2"
nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "none"

SHELL_SOURCES = ["scripts", "tools"]


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Shellcheck every bash script, ruff on the Python sources, mypy --strict on gldeploy/."""
    scripts = sorted(
        os.path.join(root, name)
        for top in SHELL_SOURCES
        for root, _, files in os.walk(top)
        for name in files
        if name.endswith(".sh")
    )
    session.run("shellcheck", "-S", "warning", "-x", *scripts, external=True)
    session.run("python", "-m", "ruff", "check", "gldeploy", "tasks.py", "noxfile.py", "tests")
    session.run("python", "-m", "mypy", "--strict", "gldeploy")


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run unit, script and integration tests in parallel (pytest-xdist), lab tests excluded."""
    args = session.posargs or ["tests/unit", "tests/scripts", "tests/integration"]
    session.run("python", "-m", "pytest", "-n", "2", "--durations=8", *args)


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Build the operator handbook (English + zh-TW) with mkdocs --strict: a broken link or anchor fails."""
    session.run("python", "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml",
                "--site-dir", "build/site")


def _lab(session: nox.Session, lab: str) -> None:
    """Bring a VM lab up, run the phases and the verifiers, then destroy it."""
    session.run("invoke", "lab.run", "--lab", lab, *session.posargs, external=True)


@nox.session(python=False, default=False, tags=["lab"])
def lab_single(session: nox.Session) -> None:
    """Single-node VM lab end to end: box, VM, phases twice, standalone scripts, testinfra, report."""
    _lab(session, "single")


@nox.session(python=False, default=False, tags=["lab"])
def lab_cluster(session: nox.Session) -> None:
    """HA VM lab: 3 servers + 2 workers, `invoke cluster.deploy`, joins, offline path on a worker,
    testinfra on every node, VIP failover drill (median/max per fault), rotation, LB node reset."""
    _lab(session, "cluster")


@nox.session(python=False, default=False, tags=["lab"])
def lab_faults(session: nox.Session) -> None:
    """VM lab faults for real: dead daemons, missing box, boot timeout, Ctrl-C, cut-short box volume."""
    session.run("python", "-m", "pytest", "-v", "-rs", "tests/lab_faults", *session.posargs,
                env={"GL_LAB_FAULTS": "1"})


@nox.session(python=False, default=False, tags=["lab"])
def lab_day2(session: nox.Session) -> None:
    """Day-2 VM lab on the single node: host snapshot, deploy, doctor + fault drill, backup/restore
    (bad backups refused), uninstall, and a snapshot diff against the host before the install."""
    _lab(session, "day2")


@nox.session(python=False, default=False, tags=["lab"])
def lab_airgap(session: nox.Session) -> None:
    """Air-gap VM lab: bastion + node on a network without route, NAT or host address; bundle built on
    the host, copied in, verified, bastion then node installed from it; testinfra; per-step times."""
    _lab(session, "airgap")
