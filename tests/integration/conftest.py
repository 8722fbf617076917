"""Integration fixtures: a real TLS + htpasswd docker registry and real sshds on free loopback ports.

``tls_registry`` (session scope, one per xdist worker) is the same registry the VM lab runs
(gldeploy.lab.registry.LabRegistry), bound to 127.0.0.1: a throwaway CA signs its certificate,
the htpasswd user has a random password kept in a 0600 file (never on a command line).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pytest

from gldeploy.errors import DeployError
from gldeploy.lab.registry import LabRegistry
from tests.fixtures.k3s_standin.testing import free_port
from tests.fixtures.sshd import client_config, keys, require_sshd, start_sshd

REQUIRED = ("docker-registry", "openssl", "htpasswd", "skopeo")


class TLSRegistry(NamedTuple):
    host: str
    ca_file: Path
    user: str
    password_file: Path


@pytest.fixture
def loopback_port() -> int:
    """A free TCP port on 127.0.0.1 (for daemons a test starts itself)."""
    return free_port()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    """A running docker-registry with TLS (throwaway CA) and htpasswd auth on 127.0.0.1:<free port>."""
    missing = [tool for tool in REQUIRED if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"integration tests need {', '.join(missing)} (run tools/bootstrap.sh test)")
    for attempt in range(3):  # the free port may be taken between probing and binding
        registry = LabRegistry(tmp_path_factory.mktemp("tls-registry"), "127.0.0.1", free_port())
        try:
            info = registry.start()
        except DeployError as exc:
            if attempt == 2:
                pytest.fail(str(exc))
            continue
        try:
            yield TLSRegistry(info.address, info.ca_file, info.user, info.password_file)
        finally:
            registry.stop()
        return


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """start(server_extra="", known_hosts=None) -> ssh_config: a real sshd on 127.0.0.1:<free port>
    (throwaway keys in its own directory) and a client config whose Host `testhost` reaches it."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(server_extra: str = "", known_hosts: str | None = None) -> Path:
        require_sshd()
        d = tmp_path / f"ssh{len(procs)}"
        d.mkdir(mode=0o700)
        keys(d)
        port = free_port()
        procs.append(start_sshd(d, port, server_extra))
        return client_config(d, port, known_hosts)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def sshd(sshd_factory: Callable[..., Path]) -> Path:
    """A real sshd for root by key; yields an ssh_config whose Host `testhost` reaches it."""
    return sshd_factory()
