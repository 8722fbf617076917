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
