"""vagrant/Vagrantfile and gldeploy/lab read the same vagrant/lab.yml, and the Vagrantfile loads in any
environment (Vagrant loads it for global commands such as `vagrant box remove`, not only for the lab)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gldeploy.errors import ConfigError
from gldeploy.lab import host, nodes, shared
from gldeploy.lab.vagrant import LabVMs
from gldeploy.paths import VAGRANT_DIR

needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None,
                                   reason="vagrant is not installed (tools/bootstrap.sh lab installs it)")
RUBY_DUMP = """
require "yaml"; require "json"
s = YAML.safe_load(File.read(ARGV[0]))
puts JSON.generate({"prefix" => format(s["domain_prefix"], lab: "single"), "box" => s["box"],
                    "mgmt" => s["management_network"]["name"], "private" => s["private_network"]["name"]})
"""


@needs_vagrant
@pytest.mark.parametrize("lab", nodes.available())
def test_vagrantfile_validates_with_the_environment_the_lab_sets(lab: str) -> None:
    vms = LabVMs(nodes.load(lab), box="gldeploy/debian12", accel=host.Accel(False, "test"))
    proc = subprocess.run(["vagrant", "validate"], cwd=VAGRANT_DIR, env=vms.env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_vagrant
def test_vagrantfile_loads_without_any_lab_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
    proc = subprocess.run(["vagrant", "validate"], cwd=VAGRANT_DIR, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed (comes with vagrant)")
def test_ruby_and_python_read_the_same_names_from_lab_yml() -> None:
    out = subprocess.run(["ruby", "-e", RUBY_DUMP, str(shared.SHARED_FILE)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    s = shared.load()
    assert json.loads(out) == {"prefix": s.prefix("single"), "box": s.box, "mgmt": s.mgmt.name,
                               "private": s.private.name}
    assert s.prefix("single") == "gl-lab-single-" and host.PRIVATE_HOST_IP == "192.168.56.1"


GOOD = ("box: b\nboot_timeout: 5\ndomain_prefix: 'x-%{lab}-'\nconsole_log: '/tmp/%{domain}.log'\n"
        "management_network: {name: m, bridge: bm, cidr: 10.9.0.0/24}\n"
        "private_network: {name: p, bridge: bp, cidr: 10.8.0.0/24}\n")


@pytest.mark.parametrize("change, needle", [
    (("boot_timeout: 5", ""), "missing key(s) boot_timeout"),
    (("boot_timeout: 5", "boot_timeout: soon"), "boot_timeout 'soon'"),
    (("'x-%{lab}-'", "fixed-"), "must contain %{lab}"),
    (("'/tmp/%{domain}.log'", "/tmp/console.log"), "must contain %{domain}"),
    (("cidr: 10.9.0.0/24", "cidr: 300.1.1.0/24"), "management_network.cidr"),
    (("{name: p, bridge: bp, cidr: 10.8.0.0/24}", "{name: p}"), "private_network needs name, bridge and cidr"),
])
def test_a_broken_lab_yml_is_named(tmp_path: Path, change: tuple[str, str], needle: str) -> None:
    path = tmp_path / "lab.yml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError, match="lab.yml") as err:
        shared.load(path)
    assert needle in str(err.value)


def test_the_good_example_loads_and_names_each_console(tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_text(GOOD)
    loaded = shared.load(path)
    assert loaded.prefix("cluster") == "x-cluster-" and loaded.private.host_ip == "10.8.0.1"
    assert loaded.console("cluster", "server1") == Path("/tmp/x-cluster-server1.log")
