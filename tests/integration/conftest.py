"""Integration fixtures: a real TLS + htpasswd docker registry on a free loopback port.

``tls_registry`` (session scope, one per xdist worker) is the same registry the VM lab runs
(gldeploy.lab.registry.LabRegistry), bound to 127.0.0.1: a throwaway CA signs its certificate,
the htpasswd user has a random password kept in a 0600 file (never on a command line).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from gldeploy.errors import DeployError
from gldeploy.lab.registry import LabRegistry
from tests.fixtures.k3s_standin.testing import free_port

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
