"""k3s as the phases after 02 find it, for the script tests of 03/05 and 04/06: the stand-in server
running from a sandbox root (tracked by lib/k3s.sh's pidfile), and a TLS /ping API double."""
from __future__ import annotations

import contextlib
import http.server
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import PIDFILE, free_port

VERSION = "v1.28.3+k3s2"


def install_standin(root: Path, tmp_path: Path, port: int) -> Path:
    """Put the stand-in at <root>/usr/local/bin/k3s with a sandbox config.yaml; returns the binary."""
    release = make_release(tmp_path / "release", VERSION)
    binary = root / "usr/local/bin/k3s"
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(release, binary)
    etc = root / "etc/rancher/k3s"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "config.yaml").write_text(
        f'write-kubeconfig-mode: "0600"\nhttps-listen-port: {port}\nbind-address: 127.0.0.1\n'
        f'data-dir: "{root}/var/lib/rancher/k3s"\nwrite-kubeconfig: "{etc}/k3s.yaml"\n')
    return binary


def wait_for_ping(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"stand-in exited {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/ping", context=ctx, timeout=1) as resp:
                if resp.read() == b"pong":
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"stand-in did not answer /ping on {port}: {log.read_text()}")


@contextlib.contextmanager
def running_standin(root: Path, tmp_path: Path) -> Iterator[int]:
    """The stand-in k3s server running from the sandbox with its pidfile; yields its API port."""
    port = free_port()
    binary = install_standin(root, tmp_path, port)
    log = tmp_path / "k3s.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "server", "--config", str(root / "etc/rancher/k3s/config.yaml")],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        pidfile = root / PIDFILE
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{proc.pid}\n")
        wait_for_ping(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"pong")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def tls_ping_servers(tmp_path: Path) -> Iterator[list[http.server.HTTPServer]]:
    """Owns the TLS /ping servers started with start_tls_ping; shuts them down afterwards."""
    servers: list[http.server.HTTPServer] = []
    try:
        yield servers
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


def start_tls_ping(servers: list[http.server.HTTPServer], tmp_path: Path, days: int) -> int:
    """Start a TLS /ping server whose self-signed certificate lasts `days`; returns its port."""
    crt, key = tmp_path / f"{days}.crt", tmp_path / f"{days}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", str(days),
                    "-subj", "/CN=kube-apiserver"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Pong)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    servers.append(httpd)
    return int(httpd.server_address[1])
