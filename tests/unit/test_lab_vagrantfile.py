"""vagrant/Vagrantfile takes every lab name from gldeploy.lab (one place), and refuses to guess."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from gldeploy.lab import host, nodes
from gldeploy.lab.vagrant import LabVMs
from gldeploy.paths import VAGRANT_DIR

pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None,
                                reason="vagrant is not installed (tools/bootstrap.sh lab installs it)")


@pytest.mark.parametrize("lab", nodes.available())
def test_vagrantfile_validates_with_the_environment_the_lab_sets(lab: str) -> None:
    vms = LabVMs(nodes.load(lab), box="gldeploy/debian12", accel=host.Accel(False, "test"))
    assert vms.env["GL_LAB_MGMT_NET"] == host.MGMT_NET and vms.env["GL_LAB_PREFIX"] == f"gl-lab-{lab}-"
    proc = subprocess.run(["vagrant", "validate"], cwd=VAGRANT_DIR, env=vms.env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vagrantfile_run_by_hand_says_how_to_run_it() -> None:
    env = {k: v for k, v in LabVMs(nodes.load("single"), box="b", accel=host.Accel(False, "t")).env.items()
           if k != "GL_LAB_PRIVATE_NET"}
    proc = subprocess.run(["vagrant", "validate"], cwd=VAGRANT_DIR, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "GL_LAB_PRIVATE_NET is not set: run the lab through `invoke lab.up`" in proc.stdout + proc.stderr
