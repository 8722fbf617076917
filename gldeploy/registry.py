"""Push OCI image archives to a private TLS registry with skopeo, and read digests back.

Credentials never reach a command line: the password is read from a 0600 file and written, base64
encoded as registries expect, into a 0600 ``auth.json`` in a private (0700) temporary directory that
is passed with ``--authfile`` and removed afterwards. The registry CA is given to skopeo as a
certificate directory (``--dest-cert-dir``/``--cert-dir``) holding ``ca.crt``; without it the system
trust store is used.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .errors import ConfigError, DeployError
from .secretfile import read_private

SKOPEO = "skopeo"
PUSH_TIMEOUT = 900
INSPECT_TIMEOUT = 120
_REF = re.compile(
    r"(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?)/"
    r"(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FALLBACK_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


@dataclass(frozen=True)
class Reference:
    """``host[:port]/repository:tag``; the registry host is required for pushes."""

    host: str
    repo: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"


def parse_ref(ref: str) -> Reference:
    """Parse an image reference or raise ConfigError saying what a valid one looks like."""
    match = _REF.fullmatch(ref)
    if not match:
        raise ConfigError(f"image reference {ref!r} is invalid: expected host[:port]/repository:tag such as "
                          f"registry.gov.local:5000/gov-native/execution-backend:v1.1")
    return Reference(match["host"], match["repo"], match["tag"])


def read_password(password_file: Path) -> str:
    """Read a password from a file that only its owner can read (mode 0600 or stricter)."""
    raw = read_private(password_file, what="registry password file", where=str(password_file))
    try:
        data = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{password_file}: the registry password file is not UTF-8 text") from None
    password = data[:-1] if data.endswith("\n") else data
    if not password or "\n" in password:
        raise ConfigError(f"{password_file}: expected exactly one line holding the registry password")
    return password


@dataclass(frozen=True)
class _Access:
    """Per-call skopeo options: auth file, cert dir, policy; plus what to scrub from messages."""

    authfile: Path | None
    cert_dir: Path | None
    policy: Path | None
    secrets: tuple[str, ...]
    user: str | None


@contextmanager
def _access(host: str, ca_file: Path | None, user: str | None,
            password_file: Path | None) -> Iterator[_Access]:
    if bool(user) != bool(password_file):
        raise ConfigError("registry user and password file go together (REGISTRY_USER and "
                          "REGISTRY_PASSWORD_FILE); set both or neither")
    password = read_password(password_file) if password_file else None
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"{ca_file}: registry CA certificate not found; set REGISTRY_CA_FILE to the PEM "
                          f"file of the CA that signed the registry's certificate")
    tmp = Path(tempfile.mkdtemp(prefix="gl-registry-"))  # mkdtemp: mode 0700
    try:
        authfile = cert_dir = policy = None
        secrets: tuple[str, ...] = ()
        if user and password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            secrets = (password, token)
            authfile = tmp / "auth.json"
            fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump({"auths": {host: {"auth": token}}}, out)
        if ca_file is not None:
            cert_dir = tmp / "certs.d"
            cert_dir.mkdir(mode=0o700)
            shutil.copyfile(ca_file, cert_dir / "ca.crt")
        if not any(p.is_file() for p in (Path.home() / ".config/containers/policy.json",
                                         Path("/etc/containers/policy.json"))):
            policy = tmp / "policy.json"  # skopeo refuses to run without any policy file
            policy.write_text(json.dumps(_FALLBACK_POLICY))
        yield _Access(authfile, cert_dir, policy, secrets, user)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _explain(stderr: str, action: str, ref: Reference, access: _Access) -> DeployError:
    """Turn skopeo's stderr into a message saying what failed and how to fix it (never the password)."""
    low = stderr.lower()
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else "(no output)"
    logged = re.search(r'msg="(.*)"\s*$', tail)  # skopeo logs: time=... level=fatal msg="..."
    tail = _scrub(logged.group(1).replace('\\"', '"') if logged else tail, access.secrets)
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        if access.user:
            why = (f"registry {ref.host} refused the credentials of user {access.user!r}; check "
                   f"REGISTRY_USER and the password in REGISTRY_PASSWORD_FILE")
        else:
            why = (f"registry {ref.host} requires a login; set REGISTRY_USER and REGISTRY_PASSWORD_FILE")
    elif "x509" in low or "certificate" in low or "tls:" in low:
        why = (f"TLS verification of registry {ref.host} failed; set REGISTRY_CA_FILE to the CA that signed "
               f"its certificate (and make sure the certificate names {ref.host.rsplit(':', 1)[0]})")
    elif "connection refused" in low or "no such host" in low or "i/o timeout" in low or "no route" in low:
        why = f"registry {ref.host} is not reachable; check REGISTRY, DNS, firewall and that it is running"
    elif "manifest unknown" in low or "not found" in low:
        why = f"{ref} does not exist in registry {ref.host}"
    else:
        why = f"skopeo failed for registry {ref.host}"
    return DeployError(f"{action} {ref}: {why} (skopeo: {tail})")


def _run(argv: list[str], timeout: int, action: str, ref: Reference,
         access: _Access) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DeployError(f"{action} {ref}: {argv[0]} not found; install it (apt-get install skopeo)") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{action} {ref}: skopeo did not finish within {timeout} s; check the "
                          f"connection to registry {ref.host}") from None
    if proc.returncode != 0:
        raise _explain(proc.stderr.decode(errors="replace"), action, ref, access)
    return proc


def _global_opts(access: _Access) -> list[str]:
    return ["--policy", str(access.policy)] if access.policy else []


def copy_argv(src: str, dest: str, access: _Access, *, push: bool, digestfile: Path | None = None,
              retries: int = 2) -> list[str]:
    """The skopeo copy command line; credentials appear only as the auth file's path."""
    side = "dest" if push else "src"
    argv = [SKOPEO, *_global_opts(access), "copy", f"--retry-times={retries}"]
    if push:
        argv.append("--preserve-digests")  # fail rather than silently rewrite the manifest
    if access.authfile:
        argv += [f"--{side}-authfile", str(access.authfile)]
    if access.cert_dir:
        argv += [f"--{side}-cert-dir", str(access.cert_dir)]
    if digestfile:
        argv += ["--digestfile", str(digestfile)]
    return argv + [src, dest]


def push(archive: Path, ref: str, *, ca_file: Path | None, user: str | None,
         password_file: Path | None, retries: int = 2) -> str:
    """Copy an OCI archive to ``docker://ref``; return the pushed manifest digest (sha256:...)."""
    parsed = parse_ref(ref)
    if not archive.is_file():
        raise ConfigError(f"{archive}: image archive not found; build it first (e.g. "
                          f"gldeploy.image.build_sample_image) or fix the path")
    with _access(parsed.host, ca_file, user, password_file) as access:
        digestfile = Path(tempfile.mkdtemp(prefix="gl-digest-")) / "digest"
        try:
            argv = copy_argv(f"oci-archive:{archive}", f"docker://{parsed}", access, push=True,
                             digestfile=digestfile, retries=retries)
            _run(argv, PUSH_TIMEOUT, "push", parsed, access)
            digest = digestfile.read_text().strip()
        finally:
            shutil.rmtree(digestfile.parent, ignore_errors=True)
    if not _DIGEST.fullmatch(digest):
        raise DeployError(f"push {parsed}: skopeo reported digest {digest!r}, expected sha256:<64 hex>")
    return digest


def pull_digest(ref: str, *, ca_file: Path | None, user: str | None, password_file: Path | None) -> str:
    """Fetch the manifest of ``docker://ref`` and return its sha256 digest (hashed here, not trusted)."""
    parsed = parse_ref(ref)
    with _access(parsed.host, ca_file, user, password_file) as access:
        argv = [SKOPEO, *_global_opts(access), "inspect", "--raw"]
        if access.authfile:
            argv += ["--authfile", str(access.authfile)]
        if access.cert_dir:
            argv += ["--cert-dir", str(access.cert_dir)]
        proc = _run(argv + [f"docker://{parsed}"], INSPECT_TIMEOUT, "inspect", parsed, access)
    if not proc.stdout.strip():
        raise DeployError(f"inspect {parsed}: registry {parsed.host} returned an empty manifest")
    return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()


def pull(ref: str, dest_archive: Path, *, ca_file: Path | None, user: str | None,
         password_file: Path | None) -> Path:
    """Copy ``docker://ref`` into an OCI archive (tagged with the ref's tag) for offline use."""
    parsed = parse_ref(ref)
    dest_archive.parent.mkdir(parents=True, exist_ok=True)
    with _access(parsed.host, ca_file, user, password_file) as access:
        argv = copy_argv(f"docker://{parsed}", f"oci-archive:{dest_archive}:{parsed.tag}", access, push=False)
        _run(argv, PUSH_TIMEOUT, "pull", parsed, access)
    return dest_archive
