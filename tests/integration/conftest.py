"""Integration fixtures: a real TLS + htpasswd docker registry on a free loopback port.

``tls_registry`` (session scope, one per xdist worker) yields a TLSRegistry named tuple:
``host`` ("127.0.0.1:PORT"), ``ca_file`` (PEM of the throwaway CA that signed the registry's
certificate, SAN IP:127.0.0.1 and DNS:localhost), ``user`` and ``password_file`` (0600). The
password itself is random and is never put on a command line (htpasswd reads it from stdin).
"""
from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest


class TLSRegistry(NamedTuple):
    host: str
    ca_file: Path
    user: str
    password_file: Path


REQUIRED = ("docker-registry", "openssl", "htpasswd", "skopeo")
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], cwd: Path, stdin: bytes | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")


def make_ca_and_cert(workdir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca.crt, server.crt, server.key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
          "-subj", "/CN=gl-deploy test CA", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], workdir)
    _run(["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
          "-subj", "/CN=localhost"], workdir)
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                     "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "san.ext"], workdir)
    for key in ("ca.key", "server.key"):
        (workdir / key).chmod(0o600)
    return workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"


def _answers_401(port: int, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status == 401
    except OSError:
        return False
    finally:
        conn.close()


def start_tls_registry(workdir: Path) -> Iterator[TLSRegistry]:
    """Generator behind the fixture: start the registry, yield it, stop it (usable outside pytest too)."""
    missing = [tool for tool in REQUIRED if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"integration tests need {', '.join(missing)} (apt-get install docker-registry openssl "
                    f"apache2-utils skopeo)")
    workdir.mkdir(parents=True, exist_ok=True)
    ca_file, cert, key = make_ca_and_cert(workdir)
    user, password = "gl-pusher", secrets.token_urlsafe(24)
    password_file = workdir / "registry-password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    # -i: password from stdin, never on the command line; -B: bcrypt (required by distribution)
    _run(["htpasswd", "-B", "-i", "-c", str(workdir / "htpasswd"), user], workdir, stdin=password.encode())
    (workdir / "storage").mkdir()
    for attempt in range(3):  # the free port may be taken between probing and binding; try another
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: '{workdir / 'storage'}'}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}', secret: '{secrets.token_hex(16)}',"
            f" tls: {{certificate: '{cert}', key: '{key}'}}}}\n"
            f"auth: {{htpasswd: {{realm: gl-test-registry, path: '{workdir / 'htpasswd'}'}}}}\n")
        config.chmod(0o600)
        log_path = workdir / "registry.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers_401(port, ca_file):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            else:
                yield TLSRegistry(f"127.0.0.1:{port}", ca_file, user, password_file)
                return
            output = log_path.read_text(errors="replace")
            if proc.poll() is not None and "address already in use" in output and attempt < 2:
                continue
            why = f"exited with {proc.returncode}" if proc.poll() is not None else \
                f"did not answer 401 on https://127.0.0.1:{port}/v2/ within {START_TIMEOUT:.0f} s"
            pytest.fail(f"docker-registry {why}; log:\n{output[-2000:]}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def loopback_port() -> int:
    """A free TCP port on 127.0.0.1 (for daemons a test starts itself)."""
    return free_port()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    """A running docker-registry with TLS (throwaway CA) and htpasswd auth on 127.0.0.1:<free port>."""
    yield from start_tls_registry(tmp_path_factory.mktemp("tls-registry"))
