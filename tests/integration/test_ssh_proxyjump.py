"""ProxyJump through a bastion: two hosts in network namespaces, the target unreachable directly.

root namespace --veth-- bastion (sshd) --veth-- target (sshd). The root namespace has no route to
the target's network, so only ssh_config's ProxyJump can reach it: this is the bastion set-up of
government sites, exercised with real sshd processes.
"""
from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy.transport import Ssh
from tests.fixtures.sshd import SSHD, keys, known_host_line, require_sshd, sshd_config

pytestmark = pytest.mark.integration


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _wait_port(ns: str, addr: str, deadline: float) -> None:
    while subprocess.run(["ip", "netns", "exec", ns, "bash", "-c", f"exec 3<>/dev/tcp/{addr}/22"],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"sshd in {ns} did not listen on {addr}:22")
        time.sleep(0.1)


@pytest.fixture
def bastion_and_target(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    require_sshd()
    tag = f"{os.getpid() % 10000}{random.randint(0, 99)}"
    bastion, target = f"gltrb{tag}", f"gltrt{tag}"  # "gltr": this suite's namespaces, not another's
    net = random.randint(16, 250)
    a_net, b_net = f"10.{net}.1", f"10.{net}.2"
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    keys(d)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ip("netns", "add", bastion)
        ip("netns", "add", target)
        ip("link", "add", f"v{tag}a", "type", "veth", "peer", "name", f"v{tag}b")
        ip("link", "set", f"v{tag}b", "netns", bastion)
        ip("addr", "add", f"{a_net}.1/24", "dev", f"v{tag}a")
        ip("link", "set", f"v{tag}a", "up")
        ip("-n", bastion, "addr", "add", f"{a_net}.2/24", "dev", f"v{tag}b")
        ip("-n", bastion, "link", "add", f"w{tag}a", "type", "veth", "peer", "name", f"w{tag}b")
        ip("-n", bastion, "link", "set", f"w{tag}b", "netns", target)
        ip("-n", bastion, "addr", "add", f"{b_net}.1/24", "dev", f"w{tag}a")
        ip("-n", target, "addr", "add", f"{b_net}.2/24", "dev", f"w{tag}b")
        for ns, devs in ((bastion, ["lo", f"v{tag}b", f"w{tag}a"]), (target, ["lo", f"w{tag}b"])):
            for dev in devs:
                ip("-n", ns, "link", "set", dev, "up")
        for ns in (bastion, target):
            config = sshd_config(d, ns, 22)
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(config)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        _wait_port(bastion, f"{a_net}.2", deadline)
        _wait_port(target, f"{b_net}.2", deadline)
        (d / "known_hosts").write_text(known_host_line(d, f"{a_net}.2") + known_host_line(d, f"{b_net}.2"))
        common = (f"  IdentityFile {d}/client_key\n  UserKnownHostsFile {d}/known_hosts\n"
                  "  StrictHostKeyChecking yes\n  ConnectTimeout 5\n")
        ssh_config = d / "ssh_config"
        ssh_config.write_text(f"Host bastion\n  HostName {a_net}.2\n  User root\n{common}"
                              f"Host {b_net}.2\n  ProxyJump bastion\n{common}")
        yield ssh_config, f"{b_net}.2"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        for ns in (bastion, target):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"v{tag}a"], capture_output=True)


def test_target_is_reached_only_through_the_bastion(bastion_and_target: tuple[Path, str], tmp_path: Path) -> None:
    ssh_config, target_ip = bastion_and_target
    direct = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                             f"root@{target_ip}", "true"], capture_output=True)
    assert direct.returncode != 0, "the target must not be reachable without the bastion"

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "hello.sh").write_text("#!/usr/bin/env bash\nip -4 -o addr show | awk '{print $4}'\n")
    link = Ssh(target_ip, "root", ssh_config=str(ssh_config), echo=None)
    try:
        link.put_dir(bundle, str(tmp_path / "remote"))
        result = link.run(["bash", str(tmp_path / "remote" / "hello.sh")])
    finally:
        link.close()
    assert result.rc == 0, result.stderr
    assert f"{target_ip}/24" in result.stdout  # the command ran inside the target's namespace
