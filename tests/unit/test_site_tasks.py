"""invoke ca.init / site.deploy / site.checklist from the command line; the bastion sequence table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
from invoke import Program

from gldeploy import paths, sequences
from gldeploy.site import ca
from tests.unit.test_tasks import _namespace

REPO = Path(__file__).resolve().parents[2]
NS = _namespace()


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The `invoke` command as an operator runs it (a new Python process): kept for one end-to-end test."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GL_")}, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, check=False)


@pytest.fixture
def invoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """The same tasks run in-process (tasks.py's namespace, invoke's Program): exit code and output."""
    for name in list(os.environ):
        if name.startswith("GL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(REPO)

    def run(*args: str) -> Ran:
        code = 0
        capsys.readouterr()
        try:
            Program(namespace=NS, name="gldeploy", binary="invoke").run(["invoke", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def write_env(tmp_path: Path, *lines: str) -> Path:
    env = tmp_path / "site.env"
    env.write_text("\n".join(["CONTROL_PLANE_IPS=192.168.56.10", "REGISTRY=registry.gov.local:5000", *lines]) + "\n")
    return env


def test_ca_init_twice_then_the_checks_pass(tmp_path: Path, invoke: Callable[..., Ran]) -> None:
    env = write_env(tmp_path, "BASTION_IP=192.168.56.5", f"SITE_CA_DIR={tmp_path / 'ca'}")
    first = invoke_cli("ca.init", "--env", str(env))  # the command an operator types, end to end
    assert first.returncode == 0, first.stderr
    assert "ca.init: created" in first.stdout
    second = invoke("ca.init", "--env", str(env))  # the same task in-process
    assert "ca.init: unchanged" in second.stdout
    names = ca.Names.of(["registry.gov.local", "192.168.56.5"])
    assert ca.problems(tmp_path / "ca/registry.crt", tmp_path / "ca/ca.crt", names) == []


def test_site_deploy_dry_run_lists_the_bastion_then_the_nodes(tmp_path: Path, invoke: Callable[..., Ran]) -> None:
    invoke("ca.init", "--env", str(write_env(tmp_path, "BASTION_IP=192.168.56.5", f"SITE_CA_DIR={tmp_path / 'ca'}")))
    env = write_env(tmp_path, "BASTION_IP=192.168.56.5", f"SITE_CA_DIR={tmp_path / 'ca'}",
                    "WORKER_IPS=192.168.56.21")
    done = invoke("site.deploy", "--env", str(env), "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["192.168.56.5 (bastion)", "192.168.56.5 (bastion)",
                                                 "192.168.56.10 (node)", "192.168.56.21 (node)"]
    assert "01_site_check.sh --json" in lines[0] and "03_site_node.sh" in lines[3]
    check = invoke("site.checklist", "--env", str(env), "--dry-run")
    assert "checklist.sh --json --role node --address 192.168.56.21" in check.stdout


def test_site_tasks_refuse_bad_input_with_exit_2(tmp_path: Path, invoke: Callable[..., Ran]) -> None:
    done = invoke("site.deploy", "--env", str(write_env(tmp_path)), "--dry-run")
    assert done.returncode == 2 and "BASTION_IP is empty" in done.stderr
    done = invoke("site.deploy", "--env", str(write_env(tmp_path, "BASTION_IP=192.168.56.5",
                                                        f"SITE_CA_DIR={tmp_path / 'none'}")), "--dry-run")
    assert done.returncode == 2 and "invoke ca.init" in done.stderr
    done = invoke("ca.init", "--env", str(write_env(tmp_path, "SITE_TIMEZONE=utc")))
    assert done.returncode == 2 and "SITE_TIMEZONE" in done.stderr


def test_bastion_sequence_scripts_exist_and_checklist_is_a_tool() -> None:
    for p in sequences.BASTION:
        assert (paths.SCRIPTS_DIR / "bastion" / p.script).is_file(), p.script
    assert [p.on for p in sequences.BASTION] == ["bastion", "bastion", "node"]
    assert "checklist" in [t.name for t in sequences.TOOLS]
    assert (paths.SCRIPTS_DIR / "checklist.sh").is_file()


def test_site_scripts_are_shellcheck_clean() -> None:
    scripts = [str(p) for p in sorted((paths.SCRIPTS_DIR / "bastion").glob("*.sh"))]
    scripts += [str(paths.SCRIPTS_DIR / "checklist.sh")]
    scripts += [str(p) for p in sorted((paths.SCRIPTS_DIR / "lib").glob("site_*.sh"))]
    done = subprocess.run(["shellcheck", "-S", "warning", "-x", *scripts], capture_output=True, text=True,
                          cwd=paths.SCRIPTS_DIR, check=False)
    assert done.returncode == 0, done.stdout
