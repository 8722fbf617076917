"""Box cache key: a content hash of the build inputs (stable, and sensitive to every input)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gldeploy.lab import box


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    dest = tmp_path / "box"
    shutil.copytree(box.BOX_INPUTS, dest)
    return dest


def test_key_is_stable(inputs: Path) -> None:
    assert box.cache_key(inputs, b"pub") == box.cache_key(inputs, b"pub")
    assert box.cache_key(inputs, b"pub") == box.cache_key(box.BOX_INPUTS, b"pub")


@pytest.mark.parametrize("change", ["packages", "hook", "new-file", "pubkey", "rename"])
def test_key_changes_with_any_input(inputs: Path, change: str) -> None:
    before = box.cache_key(inputs, b"pub")
    pub = b"pub"
    if change == "packages":
        (inputs / "packages.txt").write_text((inputs / "packages.txt").read_text() + "htop\n")
    elif change == "hook":
        (inputs / "customize.sh").write_text((inputs / "customize.sh").read_text() + "\n# x\n")
    elif change == "new-file":
        (inputs / "extra.conf").write_text("x\n")
    elif change == "rename":
        (inputs / "Vagrantfile.box").rename(inputs / "Vagrantfile.other")
    else:
        pub = b"other"
    assert box.cache_key(inputs, pub) != before


def test_packages_list_has_what_the_lab_needs() -> None:
    names = set(box.packages())
    assert {"systemd-sysv", "openssh-server", "sudo", "python3", "curl", "iproute2", "iptables",
            "ca-certificates", "kmod", "linux-image-cloud-amd64", "openssl", "systemd-timesyncd"} <= names
    assert not any(n.startswith("#") or " " in n for n in names)


def test_the_added_box_is_known_by_the_key_in_its_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The added box is shared by every checkout on the machine: its own metadata says which inputs
    built it (a marker file in one checkout could not)."""
    import json
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vh"))
    assert box.installed_key("gldeploy/debian12") == ""
    d = box.installed_dir("gldeploy/debian12")
    assert d == tmp_path / "vh/boxes/gldeploy-VAGRANTSLASH-debian12/0/libvirt"
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps({"provider": "libvirt", box.KEY_FIELD: "abc123"}))
    assert box.installed_key("gldeploy/debian12") == "abc123"
    (d / "metadata.json").write_text("{not json")
    assert box.installed_key("gldeploy/debian12") == ""


def test_a_killed_build_leaves_nothing_behind_for_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(box, "CACHE", tmp_path)
    (tmp_path / "debian12-abc.partial").write_bytes(b"half")
    (tmp_path / "gl-box-xyz/rootfs/etc").mkdir(parents=True)
    (tmp_path / "debian12-abc.box").write_bytes(b"whole")
    box.clean_stale_builds()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debian12-abc.box"]
