"""A real TLS + htpasswd docker registry on the lab's private network (host side, 192.168.56.1)."""
from __future__ import annotations

import http.client
import os
import secrets
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gldeploy.errors import DeployError
from gldeploy.lab.host import pid_alive
from gldeploy.lab.proc import run, say, wait_for

START_TIMEOUT = 30.0
COMM = "docker-registry"
USER = "gl-lab"


@dataclass(frozen=True)
class RegistryInfo:
    """How to reach the lab registry: host:port, CA, user and the 0600 password file."""

    address: str
    ca_file: Path
    user: str
    password_file: Path


def _certs(workdir: Path, ip: str) -> tuple[Path, Path, Path]:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-days", "365", "-keyout", "ca.key", "-out", "ca.crt", "-subj",
         "/CN=gl-lab CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
         "keyUsage=critical,keyCertSign,cRLSign"], cwd=workdir, what="openssl CA")
    run(["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={ip}"],
        cwd=workdir, what="openssl csr")
    (workdir / "san.ext").write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"
                                     "basicConstraints=CA:FALSE\n")
    run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "365", "-out", "server.crt", "-extfile", "san.ext"], cwd=workdir,
        what="openssl sign")
    for key in ("ca.key", "server.key"):
        (workdir / key).chmod(0o600)
    return workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"


class LabRegistry:
    """docker-registry bound to ip:port with a throwaway CA and a random htpasswd user."""

    def __init__(self, workdir: Path, ip: str, port: int = 5000) -> None:
        self.workdir, self.ip, self.port = workdir, ip, port
        # one registry per address, whichever checkout started it: a killed run's is found again
        self.pidfile = Path(f"/run/gl-lab-registry-{ip}-{port}.pid")
        self.proc: subprocess.Popen[bytes] | None = None

    def _answers_401(self, ca_file: Path) -> bool:
        context = ssl.create_default_context(cafile=str(ca_file))
        conn = http.client.HTTPSConnection(self.ip, self.port, context=context, timeout=2)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status == 401
        except OSError:
            return False
        finally:
            conn.close()

    def reclaim(self) -> None:
        """Stop a lab registry left running by a killed run (any checkout), found by its pidfile."""
        if pid_alive(self.pidfile, COMM):
            pid = int(self.pidfile.read_text().strip())
            say(f"stopping a lab registry left running by an earlier run (pid {pid})")
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not pid_alive(self.pidfile, COMM), timeout=15,
                     what=f"the old lab registry (pid {pid}) to stop")
        self.pidfile.unlink(missing_ok=True)

    def start(self) -> RegistryInfo:
        """Write certs/htpasswd/config (0600 where secret), start the registry, wait for 401 on /v2/."""
        self.reclaim()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        ca_file, cert, key = _certs(self.workdir, self.ip)
        password_file = self.workdir / "registry-password"
        password_file.unlink(missing_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        password = secrets.token_urlsafe(24)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        run(["htpasswd", "-B", "-i", "-c", str(self.workdir / "htpasswd"), USER], cwd=self.workdir,
            input_text=password, what="htpasswd")
        (self.workdir / "htpasswd").chmod(0o600)
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: '{storage}'}}}}\n"
            f"http: {{addr: '{self.ip}:{self.port}', secret: '{secrets.token_hex(16)}',"
            f" tls: {{certificate: '{cert}', key: '{key}'}}}}\n"
            f"auth: {{htpasswd: {{realm: gl-lab-registry, path: '{self.workdir / 'htpasswd'}'}}}}\n")
        config.chmod(0o600)
        log = (self.workdir / "registry.log").open("wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pidfile.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_401(ca_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.workdir / "registry.log").read_text(errors="replace")[-500:]
                raise DeployError(f"lab registry did not answer on https://{self.ip}:{self.port}/v2/ "
                                  f"within {START_TIMEOUT:.0f} s (is the private network up?): {tail}")
            time.sleep(0.2)
        say(f"lab registry up at https://{self.ip}:{self.port} (TLS + htpasswd)")
        return RegistryInfo(f"{self.ip}:{self.port}", ca_file, USER, password_file)

    def stop(self) -> None:
        """Stop the registry process this object started."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.pidfile.unlink(missing_ok=True)
        self.proc = None


def push_sample_image(info: RegistryInfo, ref: str, version: str, dest_dir: Path) -> tuple[str, str]:
    """Build the sample backend image and push it as `ref`; returns (reference, manifest digest)."""
    from gldeploy import image as image_lib
    from gldeploy import registry as registry_lib
    archive = image_lib.build_sample_image(version, dest_dir)
    digest = registry_lib.push(archive, ref, ca_file=info.ca_file, user=info.user,
                               password_file=info.password_file)
    say(f"pushed sample image {ref} ({digest[:19]}...)")
    return ref, digest
