"""Shared fixtures for script tests: run a phase script against a bundle dir and a sandbox root."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from gldeploy import bundle as gl_bundle
from gldeploy import settings
from tests.fixtures.k3s_standin.testing import SMALL_HOST

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


@dataclass
class PhaseRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def check(self, name: str) -> dict[str, Any]:
        for item in self.report["checks"]:
            if item["name"] == name:
                return item
        raise AssertionError(f"no check {name!r} in {[c['name'] for c in self.report['checks']]}")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle dir (as on a host) holding a copy of scripts/ and a place for settings.env."""
    dest = tmp_path / "bundle"
    shutil.copytree(SCRIPTS, dest)
    return dest


@pytest.fixture
def sandbox_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


ADDRESS_KEYS = ("CONTROL_PLANE_IPS", "WORKER_IPS", "API_VIP", "LB_IPS")


def _on_loopback(value: str) -> bool:
    return bool(value) and all(item.strip().startswith("127.") for item in value.split(","))


def checked_settings_env(values: dict[str, str]) -> dict[str, str]:
    """settings.env values as gldeploy writes them (validated by settings.load, plus derived values).

    Script tests run whole clusters on this machine, with their nodes and VIP on loopback addresses
    (127.0.0.x), which the settings rightly refuse for real hosts. Such address keys are validated
    as stand-in addresses of the same count and then written as given: the scripts trust settings.env.
    """
    loopback = {k: v for k, v in values.items() if k in ADDRESS_KEYS and _on_loopback(v)}
    stand_ins = {k: ",".join(f"10.255.{n}.{i + 1}" for i in range(len(v.split(","))))
                 for n, (k, v) in enumerate(loopback.items())}
    loaded = settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in {**values, **stand_ins}.items()])
    derived = gl_bundle.derived_values(loaded)
    if "API_VIP" in loopback and derived["API_SERVER_URL"]:  # derived from the VIP: from the one given
        derived["API_SERVER_URL"] = derived["API_SERVER_URL"].replace(stand_ins["API_VIP"], loopback["API_VIP"])
    return {**loaded.to_env(), **derived, **loopback}


@pytest.fixture
def run_phase(bundle: Path, sandbox_root: Path) -> Callable[..., PhaseRun]:
    """run_phase("01_pre_install_check", "--json", overrides={...}, env={...}, root=True)."""
    return phase_runner(bundle, sandbox_root)


def phase_runner(bundle: Path, sandbox_root: Path) -> Callable[..., PhaseRun]:
    """The run_phase function for a given bundle copy and sandbox root (module-scoped fixtures use it)."""

    def run(script: str, *args: str, overrides: dict[str, str] | None = None,
            env: dict[str, str] | None = None, root: bool = True, timeout: float = 60) -> PhaseRun:
        values = checked_settings_env({"CONTROL_PLANE_IPS": "192.168.56.10", **SMALL_HOST, **(overrides or {})})
        env_file = bundle / "settings.env"
        # as gldeploy writes it (marker line, derived values), but with the file keys left absolute
        env_file.write_text(gl_bundle.settings_env_text(values, "written by tests/scripts/conftest.py"))
        env_file.chmod(0o600)
        full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
                    "GL_BUNDLE_DIR": str(bundle), "GL_ENV_FILE": str(env_file)}
        if root:
            full_env["GL_ROOT"] = str(sandbox_root)
        full_env.update(env or {})
        proc = subprocess.run(["bash", str(bundle / f"{script}.sh"), *args], env=full_env,
                              capture_output=True, text=True, timeout=timeout)
        return PhaseRun(proc.returncode, proc.stdout, proc.stderr)

    return run
