"""upgrade.sh on a sandbox node with stand-in releases of two versions: verified artifacts, pre-upgrade
backup, previous binary/config kept, health check, automatic and manual rollback, interrupted runs,
downgrade refusal, and the append-only CHANGELOG."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fixtures.k3s_standin.release import make_release, write_sums
from tests.fixtures.k3s_standin.testing import free_port, standin_pid, stop_standin

OLD, NEW = "v1.28.3+k3s2", "v1.29.4+k3s1"
BIN = "usr/local/bin/k3s"
DB = "var/lib/rancher/k3s/server/db/state.db"


def version(root: Path) -> str:
    return subprocess.run([str(root / BIN), "--version"], capture_output=True, text=True, check=True).stdout.split()[2]


def rows(root: Path) -> set[str]:
    with sqlite3.connect(f"file:{root / DB}?mode=ro", uri=True) as con:
        return {r[0] for r in con.execute("SELECT name FROM kine")}


def put(root: Path, name: str) -> None:
    with sqlite3.connect(root / DB) as con:
        con.execute("INSERT INTO kine (name, value) VALUES (?, 'x')", (name,))


@pytest.fixture
def node(run_phase: Callable[..., Any], sandbox_root: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    old = tmp_path / "old"
    make_release(old, OLD)
    values = {"K3S_ARTIFACTS_DIR": str(old), "API_PORT": str(free_port()), "HEALTH_TIMEOUT": "15", "K3S_VERSION": OLD}

    def run(script: str, *args: str) -> Any:
        return run_phase(script, *args, overrides=values)

    assert run("02_install_k3s", "--role", "single").returncode == 0
    yield run
    stop_standin(sandbox_root)


@pytest.fixture
def new_release(tmp_path: Path) -> Path:
    dest = tmp_path / "new"
    make_release(dest, NEW)
    return dest


def test_upgrade_keeps_previous_and_records_the_change(node: Callable[..., Any], sandbox_root: Path,
                                                       new_release: Path) -> None:
    result = node("upgrade", "--json", "--to", NEW, "--artifacts", str(new_release))
    assert result.returncode == 0, result.stderr
    assert version(sandbox_root) == NEW and standin_pid(sandbox_root) is not None
    assert subprocess.run([str(sandbox_root / (BIN + ".prev")), "--version"], capture_output=True,
                          text=True).stdout.split()[2] == OLD
    assert (sandbox_root / "etc/rancher/k3s/config.yaml.prev").is_file()
    state = (sandbox_root / "var/lib/gl-deploy/upgrade.state").read_text()
    assert "phase=done" in state and f"from={OLD}" in state
    backups = list((sandbox_root / "var/lib/gl-deploy/upgrade-backups").iterdir())
    assert len(backups) == 1 and (backups[0] / "datastore/state.db").is_file()
    log = (sandbox_root / "etc/gl-deploy/CHANGELOG").read_text().splitlines()
    assert len(log) == 1 and log[0].endswith(f"k3s upgraded {OLD} -> {NEW}")
    again = node("upgrade", "--json", "--to", NEW, "--artifacts", str(new_release))
    assert again.returncode == 0 and again.report["changed"] is False and "already at" in again.stderr + again.stdout
    # manual rollback: previous binary and datastore back
    put(sandbox_root, "/registry/after-upgrade")
    back = node("upgrade", "--json", "--rollback")
    assert back.returncode == 3, back.stderr
    assert version(sandbox_root) == OLD and "/registry/after-upgrade" not in rows(sandbox_root)
    assert len((sandbox_root / "etc/gl-deploy/CHANGELOG").read_text().splitlines()) == 2


def test_downgrade_refused_unless_allowed(node: Callable[..., Any], sandbox_root: Path, tmp_path: Path) -> None:
    older = tmp_path / "older"
    make_release(older, "v1.27.9+k3s1")
    result = node("upgrade", "--to", "v1.27.9+k3s1", "--artifacts", str(older))
    assert result.returncode == 2 and "downgrades are refused" in result.stderr
    assert version(sandbox_root) == OLD
    assert node("upgrade", "--to", "v1.27.9+k3s1", "--artifacts", str(older), "--allow-downgrade").returncode == 0
    assert version(sandbox_root) == "v1.27.9+k3s1"


@pytest.mark.parametrize("fault", ["missing", "checksum", "wrong-version"])
def test_bad_artifact_changes_nothing(node: Callable[..., Any], sandbox_root: Path, new_release: Path,
                                      tmp_path: Path, fault: str) -> None:
    if fault == "missing":
        (new_release / "k3s").unlink()
    elif fault == "checksum":
        with (new_release / "k3s").open("ab") as fh:
            fh.write(b"\n# tampered\n")
    else:
        shutil.rmtree(new_release)
        make_release(new_release, "v1.29.5+k3s1")
    before = {p: p.read_bytes() for p in (sandbox_root / BIN, sandbox_root / DB)}
    pid = standin_pid(sandbox_root)
    result = node("upgrade", "--to", NEW, "--artifacts", str(new_release))
    assert result.returncode == 2, result.stderr
    assert "nothing was changed" in result.stderr
    assert {p: p.read_bytes() for p in before} == before and standin_pid(sandbox_root) == pid
    assert not (sandbox_root / "var/lib/gl-deploy/upgrade.state").exists()
    assert not (sandbox_root / (BIN + ".prev")).exists()


def test_failed_health_check_rolls_back_automatically(node: Callable[..., Any], sandbox_root: Path,
                                                      tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "k3s").write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "k3s version {NEW} (broken)" && exit 0\n'
                                'echo "fatal: broken release" >&2; exit 1\n')
    (broken / "k3s").chmod(0o755)
    write_sums(broken)
    put(sandbox_root, "/registry/before")
    result = node("upgrade", "--json", "--to", NEW, "--artifacts", str(broken))
    assert result.returncode == 1, result.stderr
    checks = {c["name"]: c for c in result.report["checks"]}
    assert checks["upgrade"]["status"] == "fail" and checks["rollback"]["status"] == "warn"
    assert version(sandbox_root) == OLD and standin_pid(sandbox_root) is not None
    assert "/registry/before" in rows(sandbox_root)
    assert "phase=rolled-back" in (sandbox_root / "var/lib/gl-deploy/upgrade.state").read_text()


def test_interrupted_upgrade_is_completed_or_rolled_back(node: Callable[..., Any], sandbox_root: Path,
                                                         new_release: Path) -> None:
    """The state a run killed right after the binary swap leaves: the next run finishes it."""
    shutil.copy2(sandbox_root / BIN, sandbox_root / (BIN + ".prev"))
    shutil.copy2(new_release / "k3s", sandbox_root / BIN)
    state = sandbox_root / "var/lib/gl-deploy/upgrade.state"
    state.parent.mkdir(parents=True)
    state.write_text(f"phase=swapped\nfrom={OLD}\nto={NEW}\nbackup=\nstarted=x\n")
    status = node("upgrade", "--status")
    assert status.returncode == 0 and f"swapped: {OLD} -> {NEW}" in status.stderr
    result = node("upgrade", "--to", NEW, "--artifacts", str(new_release))
    assert result.returncode == 0, result.stderr
    assert "completing the interrupted upgrade" in result.stderr and "phase=done" in state.read_text()
    # interrupted again, but the next run asks for something else: roll back first
    state.write_text(f"phase=swapped\nfrom={OLD}\nto={NEW}\nbackup=\nstarted=x\n")
    result = node("upgrade", "--to", "v1.30.0+k3s1")
    assert result.returncode == 3, result.stderr
    assert version(sandbox_root) == OLD and "phase=rolled-back" in state.read_text()


def test_interrupted_before_the_swap_is_completed_with_the_artifact_checked_again(
        node: Callable[..., Any], sandbox_root: Path, new_release: Path) -> None:
    """Killed after the backup and k3s.prev (state 'prepared'): the next run re-verifies the artifact
    (a damaged one is refused, nothing changed, the state still explains), then finishes."""
    shutil.copy2(sandbox_root / BIN, sandbox_root / (BIN + ".prev"))
    state = sandbox_root / "var/lib/gl-deploy/upgrade.state"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(f"phase=prepared\nfrom={OLD}\nto={NEW}\nbackup=\nstarted=x\n")
    good = (new_release / "k3s").read_bytes()
    (new_release / "k3s").write_bytes(good + b"\n# damaged on the media\n")
    pid = standin_pid(sandbox_root)
    refused = node("upgrade", "--to", NEW, "--artifacts", str(new_release))
    assert refused.returncode == 2, refused.stderr
    assert "completing the interrupted upgrade" in refused.stderr and "fails its checksum" in refused.stderr
    assert version(sandbox_root) == OLD and standin_pid(sandbox_root) == pid and "phase=prepared" in state.read_text()
    (new_release / "k3s").write_bytes(good)
    done = node("upgrade", "--to", NEW, "--artifacts", str(new_release))
    assert done.returncode == 0, done.stderr
    assert version(sandbox_root) == NEW and "phase=done" in state.read_text()


def test_interrupted_after_the_swap_rolls_back_the_datastore_too(node: Callable[..., Any], sandbox_root: Path,
                                                                 new_release: Path, tmp_path: Path) -> None:
    """Killed after the swap, with a pre-upgrade backup recorded; the next run asks for another version:
    the previous binary AND the pre-upgrade datastore come back, and the CHANGELOG says why."""
    put(sandbox_root, "/registry/before")
    backups = sandbox_root / "var/lib/gl-deploy/upgrade-backups"
    made = node("backup", "--out", str(backups), "--name", "pre")
    assert made.returncode == 0, made.stderr
    put(sandbox_root, "/registry/written-by-the-new-version")
    shutil.copy2(sandbox_root / BIN, sandbox_root / (BIN + ".prev"))
    shutil.copy2(new_release / "k3s", sandbox_root / BIN)
    state = sandbox_root / "var/lib/gl-deploy/upgrade.state"
    state.write_text(f"phase=swapped\nfrom={OLD}\nto={NEW}\nbackup={backups / 'pre'}\nstarted=x\n")
    result = node("upgrade", "--to", "v1.30.0+k3s1")
    assert result.returncode == 3, result.stderr
    assert "interrupted at 'swapped'" in result.stderr
    assert version(sandbox_root) == OLD and "phase=rolled-back" in state.read_text()
    assert "/registry/before" in rows(sandbox_root) and "/registry/written-by-the-new-version" not in rows(sandbox_root)
    assert "interrupted" in (sandbox_root / "etc/gl-deploy/CHANGELOG").read_text()
