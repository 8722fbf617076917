"""The day-2 lab without VMs: the snapshot comparison, the allowlist, the step wiring, the drill scripts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gldeploy.errors import DeployError
from gldeploy.lab import day2_faults, day2_steps, nodes, runner, snapshot


def snap(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"format": 1, "host": "h", "entries": [], "hashes": [], "units": [], "mounts": [],
                            "netns": [], "firewall": [], "sockets": [], "links": [], "addrs": []}
    base.update(sections)
    return base


ETC = ["d 755 /etc", "f 644 /etc/hosts", "l 777 /etc/mtab -> ../proc/self/mounts"]
SUMS = ["aa  /etc/hosts"]


def test_identical_snapshots_have_no_difference() -> None:
    a = snap(entries=ETC, hashes=SUMS, units=["k.service enabled", "active ssh.service"])
    assert snapshot.diff(a, json.loads(json.dumps(a))) == []


def test_added_removed_changed_files_are_named() -> None:
    before = snap(entries=ETC, hashes=SUMS)
    after = snap(entries=[*ETC[:2], "l 777 /etc/mtab -> /elsewhere", "f 600 /etc/gl-test-x"],
                 hashes=["bb  /etc/hosts", "cc  /etc/gl-test-x"])
    got = {(d.kind, d.key) for d in snapshot.diff(before, after)}
    assert got == {("changed", "/etc/hosts"), ("changed", "/etc/mtab"), ("added", "/etc/gl-test-x")}
    removed = snapshot.diff(after, before)
    assert ("removed", "/etc/gl-test-x") in {(d.kind, d.key) for d in removed}


def test_mode_change_is_a_difference() -> None:
    before = snap(entries=["f 644 /etc/x"], hashes=["aa  /etc/x"])
    after = snap(entries=["f 600 /etc/x"], hashes=["aa  /etc/x"])
    [d] = snapshot.diff(before, after)
    assert d.kind == "changed" and "644" in d.before and "600" in d.after


def test_units_mounts_network_firewall_sockets() -> None:
    before = snap(units=["ssh.service enabled", "active ssh.service"], mounts=["/ ext4 /dev/vda1 rw"],
                  links=[{"ifname": "eth0", "link_type": "ether", "mtu": 1500}],
                  addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.2", "prefixlen": 24,
                                                           "valid_life_time": 100}]}])
    after = snap(units=["ssh.service enabled", "k3s.service enabled", "active ssh.service", "active k3s.service"],
                 mounts=["/ ext4 /dev/vda1 rw", "/var/lib/kubelet/pods/x tmpfs tmpfs rw"],
                 links=[{"ifname": "eth0", "link_type": "ether", "mtu": 1500},
                        {"ifname": "cni0", "link_type": "ether", "mtu": 1450}],
                 addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.2", "prefixlen": 24,
                                                          "valid_life_time": 5}]}],
                 netns=["cni-1234"], firewall=["iptables -A KUBE-FORWARD -j ACCEPT"], sockets=["tcp *:6443"])
    got = {(d.section, d.key) for d in snapshot.diff(before, after)}
    assert got == {("units", "k3s.service"), ("units", "active k3s.service"),
                   ("mounts", "/var/lib/kubelet/pods/x tmpfs tmpfs rw"), ("links", "cni0"),
                   ("netns", "cni-1234"), ("firewall", "iptables -A KUBE-FORWARD -j ACCEPT"),
                   ("sockets", "tcp *:6443")}  # the address lifetime is not a difference


def test_allowlist_is_tiny_and_every_entry_has_a_reason() -> None:
    assert 0 < len(snapshot.ALLOWLIST) <= 3
    for entry in snapshot.ALLOWLIST:
        assert entry.section in snapshot.SECTIONS and entry.patterns and len(entry.reason) > 40


def test_split_keeps_allowed_apart_and_fails_the_rest() -> None:
    before = snap(entries=["d 755 /etc"])
    after = snap(entries=["d 755 /etc", "d 755 /etc/gl-deploy", "f 644 /etc/gl-deploy/CHANGELOG",
                          "f 644 /etc/gl-deploy/versions.json", "d 700 /var/lib/gl-deploy-day2-backups",
                          "d 700 /var/lib/gl-deploy-day2-backups/gl-backup-x", "d 755 /var/lib/rancher"])
    failing, ok = snapshot.split(snapshot.diff(before, after))
    assert sorted(d.key for d in failing) == ["/etc/gl-deploy/versions.json", "/var/lib/rancher"]
    assert len(ok) == 4 and all(a.reason for _, a in ok)


def test_parse_refuses_what_is_not_a_snapshot() -> None:
    with pytest.raises(DeployError, match="vm1"):
        snapshot.parse("bash: line 1: oops", "vm1")
    with pytest.raises(DeployError, match="format 1"):
        snapshot.parse('{"format": 2}', "vm1")


# --- the shipped script, on this host, in a small directory tree standing in for /etc ---
@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils")
def test_snapshot_script_prints_a_parsable_snapshot() -> None:
    first = snapshot.parse(subprocess.run(["bash", str(snapshot.SCRIPT), "/var/lib", "/usr/local", "/opt",
                                           "/run/systemd"], capture_output=True, text=True, check=True).stdout, "here")
    assert any(e.endswith(" /etc/hostname") or e.endswith(" /etc/passwd") for e in first["entries"])
    assert isinstance(first["links"], list) and isinstance(first["units"], list)


def test_snapshot_script_is_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    subprocess.run(["shellcheck", "-S", "warning", str(snapshot.SCRIPT)], check=True)


# --- wiring ---
def test_day2_table_is_the_single_node() -> None:
    day2, single = nodes.load("day2"), nodes.load("single")
    assert day2.env_file == single.env_file and [n.ip for n in day2.nodes] == [n.ip for n in single.nodes]
    assert day2.nodes[0].role == "single" and not day2.vip


def test_day2_steps_order() -> None:
    names = [n for n, _ in runner.STEPS_OF["day2"]]
    for first, then in (("ssh ready", "host snapshot (before)"), ("host snapshot (before)", "deploy (1st)"),
                        ("deploy (2nd, idempotency)", "doctor (healthy)"), ("doctor (healthy)", "doctor fault drill"),
                        ("doctor fault drill", "backup + restore"), ("backup + restore", "uninstall"),
                        ("uninstall", "host snapshot (after)")):
        assert names.index(first) < names.index(then)
    assert names[-1] == "host snapshot (after)"
    actions = dict(runner.STEPS_OF["day2"])
    assert actions["deploy (1st)"] is runner.step_deploy_1  # the single lab's own deploy
    assert actions["uninstall"] is day2_steps.step_uninstall


def test_nox_and_make_have_the_day2_lab() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert 'def lab_day2' in (repo / "noxfile.py").read_text()
    assert "nox -s lab_day2" in (repo / "Makefile").read_text()


def test_drill_covers_the_documented_single_node_faults() -> None:
    table = (Path(__file__).resolve().parents[2] / "scripts/lib/doctor_table.sh").read_text()
    names = {f.name for f in day2_faults.FAULTS}
    assert {"k3s stopped", "port 6443 taken", "registry CA replaced", "wrong registry password",
            "disk nearly full"} <= names and any(n.startswith("clock skewed") for n in names)
    for fault in day2_faults.FAULTS:
        for check in fault.expect:
            assert f"check: {check}\n" in table, check
    assert day2_faults.CLUSTER_ONLY == ("config-drift-between-servers", "vip-held")


def test_drill_scripts_are_shellcheck_clean(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    files = []
    for i, f in enumerate(day2_faults.FAULTS):
        for part, body in (("inject", f.inject), ("undo", f.undo + "\n" + day2_faults.CLEANUP)):
            path = tmp_path / f"{i}-{part}.sh"
            path.write_text("#!/usr/bin/env bash\n" + day2_faults.HEAD + body + "\n")
            files.append(str(path))
    path = tmp_path / "restore-case.sh"
    path.write_text("#!/usr/bin/env bash\n" + day2_faults.RESTORE_CASE_SCRIPT)
    subprocess.run(["shellcheck", "-S", "warning", *files, str(path)], check=True)


# --- the restore refusal cases against the real restore.sh verification (lib/day2_backup.sh) ---
def _backup(dir_: Path) -> None:
    """A backup directory as backup.sh writes it (sums and manifest over its files)."""
    import hashlib
    import sqlite3
    (dir_ / "datastore").mkdir(parents=True)
    db = sqlite3.connect(dir_ / "datastore" / "state.db")
    db.execute("create table kine (id integer primary key, name text)")
    db.executemany("insert into kine (name) values (?)", [(f"row-{i}" * 20,) for i in range(400)])
    db.commit()
    db.close()
    (dir_ / "token").write_text("K10" + "a" * 64 + "::server:secret\n")
    (dir_ / "config.yaml").write_text("write-kubeconfig-mode: '0600'\n")
    files = sorted(p for p in dir_.rglob("*") if p.is_file())
    rels = [p.relative_to(dir_).as_posix() for p in files]
    sums = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    (dir_ / "SHA256SUMS").write_text("".join(f"{s}  {r}\n" for s, r in zip(sums, rels)))
    listed = ", ".join(f'{{"path": "{r}", "sha256": "{s}", "size": {p.stat().st_size}}}'
                       for r, s, p in zip(rels, sums, files))
    (dir_ / "manifest.json").write_text(f'{{"format": 1, "kind": "sqlite", "files": [{listed}]}}\n')


@pytest.mark.parametrize("case", ["corrupt", "truncated", "no-token"])
def test_restore_case_script_damages_the_copy_as_named(tmp_path: Path, case: str) -> None:
    """The drill's damaged copy is what its name says (the refusal itself is restore.sh's, on the VM):
    a stub restore.sh records the copy it was given."""
    src = tmp_path / "backup"
    _backup(src)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "restore.sh").write_text('cp -a -- "$3" "$GL_SEEN"; exit 2\n')
    seen = tmp_path / "seen"
    res = subprocess.run(["bash", "-c", day2_faults.RESTORE_CASE_SCRIPT, "x", case, str(src), str(tools)],
                         env={**os.environ, "GL_SEEN": str(seen)}, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert not (tmp_path / f"backup-{case}").exists()  # the damaged copy is removed afterwards
    orig, got = (src / "datastore/state.db").read_bytes(), (seen / "datastore/state.db").read_bytes()
    if case == "corrupt":
        assert len(got) == len(orig) and sum(a != b for a, b in zip(orig, got)) == 1
    elif case == "truncated":
        assert len(got) == len(orig) // 2
    else:
        assert not (seen / "token").exists() and got == orig
        assert "token" not in (seen / "SHA256SUMS").read_text()
        manifest = json.loads((seen / "manifest.json").read_text())
        assert [f["path"] for f in manifest["files"]] == ["config.yaml", "datastore/state.db"]


def test_restore_refusal_phrases_are_the_scripts_words_and_never_in_a_path() -> None:
    """The lab once passed the corrupt and truncated cases on 'no such backup directory': the phrase it
    looked for ('corrupt') was in the case's directory name. Each phrase must come from restore's own
    messages and must not occur in the path of the case's copy."""
    from gldeploy.lab.day2_faults import REFUSALS
    from gldeploy.paths import REPO
    lib = "".join((REPO / "scripts/lib" / name).read_text() for name in ("day2_backup.sh", "day2_restore.sh"))
    for case, phrase in REFUSALS.items():
        assert phrase in lib, phrase
        assert phrase not in f"/var/lib/gl-deploy-day2-restore/backup-{case}: no such backup directory"
