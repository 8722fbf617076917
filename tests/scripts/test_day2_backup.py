"""backup.sh / restore.sh run for real in sandbox roots with the k3s stand-in, which keeps a small real
SQLite datastore (state.db, or its etcd stand-in store + `k3s etcd-snapshot save`). Kubernetes-level
restore checks are reported skipped: needs real k3s."""
from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, standin_pid, stop_standin

VERSION = "v1.28.3+k3s2"
DATA = "var/lib/rancher/k3s"


class Node:
    """One sandbox host: runs phase scripts and tools with its own GL_ROOT and API port."""

    def __init__(self, run_phase: Callable[..., Any], root: Path, release: Path, **settings: str) -> None:
        self.run_phase, self.root, self.port = run_phase, root, free_port()
        self.settings = {"K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(self.port), "HEALTH_TIMEOUT": "30",
                         "K3S_VERSION": VERSION, **settings}

    def run(self, script: str, *args: str) -> Any:
        return self.run_phase(script, *args, overrides=self.settings, env={"GL_ROOT": str(self.root)})

    def install(self, role: str = "single") -> None:
        result = self.run("02_install_k3s", "--role", role)
        assert result.returncode == 0, result.stderr

    @property
    def db(self) -> Path:
        store = self.root / DATA / "server/db"
        return store / "etcd/standin-etcd.db" if (store / "etcd").is_dir() else store / "state.db"

    def put(self, name: str) -> None:
        with sqlite3.connect(self.db) as con:
            con.execute("INSERT INTO kine (name, value) VALUES (?, ?)", (name, "x"))

    def names(self) -> set[str]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as con:
            return {row[0] for row in con.execute("SELECT name FROM kine")}


@pytest.fixture
def release(tmp_path: Path) -> Path:
    dest = tmp_path / "release"
    make_release(dest, VERSION)
    return dest


@pytest.fixture
def nodes(run_phase: Callable[..., Any], tmp_path: Path, release: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(name: str = "a", **settings: str) -> Node:
        root = tmp_path / f"root-{name}"
        root.mkdir()
        made.append(Node(run_phase, root, release, **settings))
        return made[-1]

    yield make
    for node in made:
        stop_standin(node.root)


def backup(node: Node, out: Path, name: str = "b1") -> Path:
    result = node.run("backup", "--json", "--out", str(out), "--name", name)
    assert result.returncode == 0, result.stderr
    assert result.report["status"] == "pass"
    return out / name


def rewrite_sums(dest: Path) -> None:
    """Re-list every file (as an attacker or a buggy copy tool could): only integrity_check is left."""
    manifest = json.loads((dest / "manifest.json").read_text())
    files = sorted(p for p in dest.rglob("*") if p.is_file() and p.name not in ("SHA256SUMS", "manifest.json"))
    entries = [{"path": str(p.relative_to(dest)), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                "size": p.stat().st_size} for p in files]
    (dest / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {e['path']}\n" for e in entries))
    manifest["files"] = entries
    (dest / "manifest.json").write_text(json.dumps(manifest))


def test_sqlite_backup_is_consistent_private_and_checksummed(nodes: Callable[..., Node], tmp_path: Path) -> None:
    node = nodes()
    node.install()
    node.put("/registry/before-backup")
    dest = backup(node, tmp_path / "backups")
    assert oct(dest.stat().st_mode & 0o777) == "0o700"
    for private in ("token", "config.yaml", "datastore/state.db", "tls/server-ca.key", "manifest.json"):
        assert oct((dest / private).stat().st_mode & 0o777) == "0o600", private
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["kind"] == "sqlite" and manifest["k3s_version"] == VERSION
    ca = (node.root / DATA / "server/tls/server-ca.crt").read_bytes()
    assert manifest["ca_sha256"] == hashlib.sha256(ca).hexdigest()
    assert {f["path"] for f in manifest["files"]} >= {"datastore/state.db", "token", "config.yaml", "tls/server-ca.crt"}
    assert not any("serving" in f["path"] for f in manifest["files"])  # leaf certificates are issued again
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dest, check=True)  # checkable anywhere
    with sqlite3.connect(dest / "datastore/state.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert "/registry/before-backup" in {r[0] for r in con.execute("SELECT name FROM kine")}
    token = (node.root / DATA / "server/token").read_text()
    older = f"gl-backup-{socket.gethostname()}-20200101T000000Z"
    backup(node, tmp_path / "backups", older)
    result = node.run("backup", "--out", str(tmp_path / "backups"), "--keep", "1")  # default name: now
    assert result.returncode == 0 and token not in result.stdout + result.stderr
    kept = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert "b1" in kept and older not in kept and len(kept) == 2  # only this host's gl-backup-* are pruned


def test_restore_same_node_brings_the_datastore_back(nodes: Callable[..., Node], tmp_path: Path) -> None:
    node = nodes()
    node.install()
    node.put("/registry/before-backup")
    dest = backup(node, tmp_path / "backups")
    node.put("/registry/after-backup")
    result = node.run("restore", "--json", "--from", str(dest))
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in result.report["checks"]}
    assert checks["kubernetes"]["status"] == "skipped" and "needs real k3s" in checks["kubernetes"]["message"]
    assert standin_pid(node.root) is not None
    names = node.names()
    assert "/registry/before-backup" in names and "/registry/after-backup" not in names
    kept = list((node.root / DATA / "server").glob("db.before-restore-*"))
    assert len(kept) == 1 and (kept[0] / "state.db").is_file()


@pytest.mark.parametrize("damage,reason", [
    ("flip", "sha256"),
    ("truncate-relisted", "integrity_check"),
    ("drop-sums", "manifest.json or SHA256SUMS missing"),
    ("truncate", "corrupt or truncated"),
])
def test_restore_refuses_a_damaged_backup(nodes: Callable[..., Node], tmp_path: Path, damage: str, reason: str) -> None:
    node = nodes()
    node.install()
    for i in range(200):  # a datastore of several pages, so truncation cuts real content
        node.put(f"/registry/item-{i}-" + "x" * 64)
    dest = backup(node, tmp_path / "backups")
    db = dest / "datastore/state.db"
    data = db.read_bytes()
    if damage == "flip":
        db.write_bytes(data[:4096] + bytes([data[4096] ^ 0xFF]) + data[4097:])
    elif damage.startswith("truncate"):
        db.write_bytes(data[: len(data) // 2])
        if damage == "truncate-relisted":
            rewrite_sums(dest)
    else:
        (dest / "SHA256SUMS").unlink()
    before = node.db.read_bytes()
    pid = standin_pid(node.root)
    result = node.run("restore", "--json", "--from", str(dest))
    assert result.returncode == 2, result.stderr
    assert reason in result.stderr and "refusing" in result.stderr
    assert result.report["status"] == "fail"
    assert node.db.read_bytes() == before and standin_pid(node.root) == pid  # nothing touched


def test_restore_refuses_a_missing_token(nodes: Callable[..., Node], tmp_path: Path) -> None:
    node = nodes()
    node.install()
    dest = backup(node, tmp_path / "backups")
    (dest / "token").unlink()
    rewrite_sums(dest)
    result = node.run("restore", "--from", str(dest))
    assert result.returncode == 2 and "the token is missing" in result.stderr
    token = tmp_path / "old-token"
    token.write_text((node.root / DATA / "server/token").read_text())
    token.chmod(0o600)
    result = node.run("restore", "--from", str(dest), "--token-file", str(token))
    assert result.returncode == 0, result.stderr


def test_restore_refuses_another_clusters_backup(nodes: Callable[..., Node], tmp_path: Path) -> None:
    a, b = nodes("a"), nodes("b")
    a.install()
    b.install()
    dest = backup(a, tmp_path / "backups")
    b.put("/registry/b-data")
    result = b.run("restore", "--json", "--from", str(dest))
    assert result.returncode == 2, result.stderr
    assert "another secret" in result.stderr
    assert "/registry/b-data" in b.names()
    # a token of yet another cluster offered for the backup: its CA hash differs
    other = tmp_path / "other-token"
    other.write_text((b.root / DATA / "server/token").read_text())
    other.chmod(0o600)
    result = b.run("restore", "--from", str(dest), "--token-file", str(other))
    assert result.returncode == 2 and "for another cluster: its CA hash" in result.stderr


def test_restore_onto_a_new_machine_with_new_addresses(nodes: Callable[..., Node], tmp_path: Path) -> None:
    a = nodes("a", CONTROL_PLANE_IPS="192.168.56.10")
    a.install()
    a.put("/registry/workload")
    dest = backup(a, tmp_path / "backups")
    old_token = (a.root / DATA / "server/token").read_text().strip()
    stop_standin(a.root)  # the old machine is gone
    secret = tmp_path / "secret"
    secret.write_text(old_token.rsplit(":", 1)[1] + "\n")
    secret.chmod(0o600)
    b = nodes("b", CONTROL_PLANE_IPS="192.168.56.20", K3S_TOKEN_FILE=str(secret))
    b.install()  # phases 01/02 with the new settings: config.yaml carries the new addresses
    result = b.run("restore", "--json", "--from", str(dest))
    assert result.returncode == 0, result.stderr
    assert "/registry/workload" in b.names()
    assert (b.root / DATA / "server/token").read_text().strip() == old_token
    ca = "server/tls/server-ca.crt"
    assert (b.root / DATA / ca).read_bytes() == (a.root / DATA / ca).read_bytes()
    config = yaml.safe_load((b.root / "etc/rancher/k3s/config.yaml").read_text())
    assert "192.168.56.20" in config["tls-san"] and "192.168.56.10" not in config["tls-san"]
    serving = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                              str(b.root / DATA / "server/tls/serving-kube-apiserver.crt")],
                             capture_output=True, text=True, check=True).stdout
    assert "192.168.56.20" in serving  # issued again by the restored CA for the new address
    subprocess.run(["openssl", "verify", "-CAfile", str(b.root / DATA / "server/tls/server-ca.crt"),
                    str(b.root / DATA / "server/tls/serving-kube-apiserver.crt")], check=True, capture_output=True)


def test_etcd_snapshot_backup_and_cluster_reset_restore(nodes: Callable[..., Node], tmp_path: Path) -> None:
    node = nodes(TOPOLOGY="ha", CONTROL_PLANE_IPS="192.168.57.11,192.168.57.12,192.168.57.13",
                 API_VIP="192.168.57.100")
    node.install("first-server")
    node.put("/registry/before-snapshot")
    dest = backup(node, tmp_path / "backups")
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["kind"] == "etcd" and manifest["snapshot"].startswith("gl-backup-")
    assert (dest / "datastore" / manifest["snapshot"]).is_file()
    node.put("/registry/after-snapshot")
    result = node.run("restore", "--json", "--from", str(dest))
    assert result.returncode == 0, result.stderr
    assert {c["name"] for c in result.report["checks"]} >= {"cluster reset", "restore"}
    names = node.names()
    assert "/registry/before-snapshot" in names and "/registry/after-snapshot" not in names
    # a SQLite backup does not fit an etcd node
    single = nodes("single")
    single.install()
    result = node.run("restore", "--from", str(backup(single, tmp_path / "b2")))
    assert result.returncode == 2 and "sqlite datastore but this node is configured for etcd" in result.stderr
