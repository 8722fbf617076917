"""The stand-in's join handshake on its own, and k3s' CA hash of a multi-certificate CA bundle
(pkg/clientaccess/token.go hashCA: the DER of the root, not the bundle bytes) end to end with phase 03."""
from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import free_port, https_get, stop_standin
from tests.scripts.k3s_doubles import wait_for_ping

VERSION = "v1.28.3+k3s2"


def openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def ca_chain(tls: Path) -> bytes:
    """server-ca.crt = intermediate + root (the intermediate signs the serving certificate); returns
    the root's DER."""
    tls.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    root, root_key = tls / "root.crt", tls / "root.key"
    openssl("req", "-x509", *ec, "-keyout", str(root_key), "-out", str(root), "-days", "30", "-subj", "/CN=test-root",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ext = tls / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("req", "-new", *ec, "-keyout", str(tls / "server-ca.key"), "-out", str(tls / "i.csr"), "-subj", "/CN=test-intermediate")
    openssl("x509", "-req", "-in", str(tls / "i.csr"), "-CA", str(root), "-CAkey", str(root_key), "-CAcreateserial",
            "-out", str(tls / "i.crt"), "-days", "30", "-extfile", str(ext))
    (tls / "server-ca.crt").write_bytes((tls / "i.crt").read_bytes() + root.read_bytes())
    return openssl("x509", "-in", str(root), "-outform", "DER")


class Server:
    def __init__(self, tmp: Path, chain: bool) -> None:
        self.root = tmp / "srv"
        self.port = free_port()
        self.binary = make_release(tmp / "release", VERSION)
        data = self.root / "var/lib/rancher/k3s"
        self.root_der = ca_chain(data / "server/tls") if chain else b""
        self.config = self.root / "config.yaml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"https-listen-port: {self.port}\ndata-dir: {data}\n"
                               f"write-kubeconfig: {self.root}/k3s.yaml\ntoken: s3cret\n")
        self.log = tmp / "srv.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(self.binary), "server", "--config", str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_ping(self.port, self.proc, self.log)
        self.token = (data / "server/token").read_text().strip()
        self.joins = data / "server/standin-joins.log"

    def agent(self, tmp: Path, config: str, timeout: float = 20) -> subprocess.CompletedProcess[str] | str:
        """Run `k3s agent` with CONFIG; returns the finished process, or its first lines once joined."""
        cfg = tmp / "agent.yaml"
        cfg.write_text(config)
        proc = subprocess.Popen([str(self.binary), "agent", "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            for line in proc.stderr:
                lines.append(line)
                if "joined" in line:
                    return "".join(lines)
            proc.wait(timeout=timeout)
            return subprocess.CompletedProcess(proc.args, proc.returncode, "", "".join(lines))
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    made = Server(tmp_path, chain=getattr(request, "param", False))
    yield made
    made.stop()


@pytest.mark.parametrize("server", [True], indirect=True)
def test_multi_certificate_ca_is_hashed_by_its_root_der(server: Server, tmp_path: Path,
                                                        run_phase: Callable[..., Any], sandbox_root: Path) -> None:
    served = https_get(server.port, "/cacerts", None)
    assert served.count(b"BEGIN CERTIFICATE") == 2
    root_hash = hashlib.sha256(server.root_der).hexdigest()
    assert root_hash != hashlib.sha256(served).hexdigest()
    assert server.token.startswith(f"K10{root_hash}::server:s3cret")
    # phase 03 computes the same hash (lib/k3s_join.sh) and joins; the bundle's bytes hash would be refused
    token = tmp_path / "token"
    token.write_text(server.token)
    token.chmod(0o600)
    values = {"K3S_ARTIFACTS_DIR": str(server.binary.parent), "K3S_VERSION": VERSION, "HEALTH_TIMEOUT": "30",
              "API_PORT": str(server.port), "CONTROL_PLANE_IPS": "127.0.0.1"}
    result = run_phase("03_join_worker_node", "--json", "--server-url", f"https://127.0.0.1:{server.port}",
                       "--token-file", str(token), overrides=values, timeout=120)
    try:
        assert result.returncode == 0, result.stderr
        bytes_hash = f"K10{hashlib.sha256(served).hexdigest()}::server:s3cret"
        token.write_text(bytes_hash)
        other = tmp_path / "other-root"
        other.mkdir()
        refused = run_phase("03_join_worker_node", "--server-url", f"https://127.0.0.1:{server.port}",
                            "--token-file", str(token), overrides=values, env={"GL_ROOT": str(other)})
        assert refused.returncode == 1 and "token CA hash does not match" in refused.stderr
    finally:
        stop_standin(sandbox_root)


def test_agent_skips_server_only_keys_as_k3s_does_and_joins(server: Server, tmp_path: Path) -> None:
    out = server.agent(tmp_path, f"server: https://127.0.0.1:{server.port}\ntoken: {server.token}\n"
                                 f"data-dir: {tmp_path}/agent-data\ncluster-init: true\nnode-name: worker-1\n")
    assert isinstance(out, str), out
    assert "Unknown flag --cluster-init found in config.yaml, skipping" in out
    assert (tmp_path / "agent-data/agent/client-kubelet.crt").exists()
    subject = openssl("x509", "-noout", "-subject", "-in", str(tmp_path / "agent-data/agent/client-kubelet.crt"))
    assert b"system:node:worker-1" in subject
    records = [json.loads(line) for line in server.joins.read_text().splitlines()]
    assert [(r["path"], r["user"], r["node"], r["status"]) for r in records] == \
        [("/v1-k3s/client-kubelet.crt", "node", "worker-1", 200)]


def test_agent_with_a_wrong_secret_gets_k3s_401(server: Server, tmp_path: Path) -> None:
    wrong = server.token.split("::")[0] + "::server:wrong"
    out = server.agent(tmp_path, f"server: https://127.0.0.1:{server.port}\ntoken: {wrong}\ndata-dir: {tmp_path}/a\n")
    assert isinstance(out, subprocess.CompletedProcess)
    assert out.returncode == 1
    assert f"https://127.0.0.1:{server.port}/v1-k3s/client-kubelet.crt: 401 Unauthorized" in out.stderr
    assert "Failed to authenticate request from 127.0.0.1" in server.log.read_text()
    assert json.loads(server.joins.read_text())["status"] == 401


@pytest.mark.parametrize("token, message", [
    ("K10{hash}::abcdef.0123456789abcdef", ("failed to normalize server token; must be in format "
                                            "K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>")),
    ("K10{hash}::server:wrong", "/v1-k3s/server-bootstrap: 401 Unauthorized"),
    ("K10" + "1" * 64 + "::server:s3cret", "token CA hash does not match the Cluster CA certificate hash"),
])
def test_joining_server_is_refused_like_k3s(server: Server, tmp_path: Path, token: str, message: str) -> None:
    data = tmp_path / "joiner"
    config = tmp_path / "joiner.yaml"
    config.write_text(f"server: https://127.0.0.1:{server.port}\ntoken: {token.format(hash=server.token[3:67])}\n"
                      f"https-listen-port: {free_port()}\ndata-dir: {data}\nwrite-kubeconfig: {tmp_path}/k.yaml\n")
    proc = subprocess.run([str(server.binary), "server", "--config", str(config)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (data / "server/tls/server-ca.crt").exists()
