"""gldeploy.day2: backups copied off a host and checked, versions and settings diffs, rolling order."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from invoke import Context

from gldeploy import settings
from gldeploy.day2 import fetch, versions
from gldeploy.errors import DeployError
from gldeploy.tasks import day2_tasks, settings_tasks
from gldeploy.transport import Local


def make_backup(dest: Path) -> Path:
    (dest / "datastore").mkdir(parents=True)
    (dest / "datastore/state.db").write_bytes(b"SQLite format 3\0" + b"x" * 5000)
    (dest / "token").write_text("K10abc::server:secret\n")
    files = [p for p in sorted(dest.rglob("*")) if p.is_file()]
    entries = [{"path": str(p.relative_to(dest)), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                "size": p.stat().st_size} for p in files]
    (dest / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {e['path']}\n" for e in entries))
    (dest / "manifest.json").write_text(json.dumps({"format": 1, "kind": "sqlite", "files": entries}))
    return dest


def test_fetch_copies_off_and_verifies(tmp_path: Path) -> None:
    remote = make_backup(tmp_path / "on-host" / "b1")
    local = tmp_path / "here" / "b1"
    manifest = fetch.fetch(Local(echo=None), str(remote), local)
    assert manifest["kind"] == "sqlite"
    assert (local / "datastore/state.db").read_bytes() == (remote / "datastore/state.db").read_bytes()
    assert oct(local.stat().st_mode & 0o777) == "0o700" and oct((local / "token").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("damage,words", [("truncate", "corrupt or truncated"), ("remove", "missing"),
                                          ("escape", "not a path inside"), ("no-sums", "SHA256SUMS missing")])
def test_verify_refuses_a_damaged_copy(tmp_path: Path, damage: str, words: str) -> None:
    dest = make_backup(tmp_path / "b")
    db = dest / "datastore/state.db"
    if damage == "truncate":
        db.write_bytes(db.read_bytes()[:100])
    elif damage == "remove":
        db.unlink()
    elif damage == "escape":
        (dest / "SHA256SUMS").write_text("00  ../../etc/passwd\n")
    else:
        (dest / "SHA256SUMS").unlink()
    with pytest.raises(DeployError, match=words):
        fetch.verify(dest)


def loaded(**overrides: str) -> settings.Settings:
    values = {"CONTROL_PLANE_IPS": "192.168.56.10", **overrides}
    return settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in values.items()])


def test_pinned_versions_and_diff() -> None:
    old, new = loaded(), loaded(K3S_VERSION="v1.29.4+k3s1", NAMESPACE="other")
    pins = versions.pinned(old)
    assert pins["k3s"] == old.k3s_version and pins["chart"]["name"] and pins["images"]["backend"]
    lines = "\n".join(versions.diff(old, new))
    assert "K3S_VERSION: 'v1.28.3+k3s2' -> 'v1.29.4+k3s1'" in lines and "invoke upgrade --to" in lines
    assert "NAMESPACE" in lines and "HelmChart" in lines
    assert "versions.json k3s: v1.28.3+k3s2 -> v1.29.4+k3s1" in lines
    assert versions.diff(old, loaded()) == ["no change: the hosts would be left as they are"]


def test_settings_show_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after = tmp_path / "old.env", tmp_path / "new.env"
    before.write_text("TOPOLOGY=single\nCONTROL_PLANE_IPS=192.168.56.10\nK3S_VERSION=v1.28.3+k3s2\n")
    after.write_text("TOPOLOGY=single\nCONTROL_PLANE_IPS=192.168.56.10\nK3S_VERSION=v1.29.4+k3s1\n")
    settings_tasks.show(Context(), env=str(after), diff=str(before))
    out = capsys.readouterr().out
    assert "K3S_VERSION" in out and "CONTROL_PLANE_IPS" not in out


def test_rolling_order_is_servers_one_by_one_then_agents() -> None:
    ha = loaded(TOPOLOGY="ha", CONTROL_PLANE_IPS="192.168.57.11,192.168.57.12,192.168.57.13",
                WORKER_IPS="192.168.57.21", API_VIP="192.168.57.100")
    pairs = day2_tasks.targets(ha, "", "", day2_tasks.ORDER)
    assert [r for _, r in pairs] == ["first-server", "server", "server", "agent"]
    assert pairs[0][0] == "192.168.57.11" and pairs[-1][0] == "192.168.57.21"
