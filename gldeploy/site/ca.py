"""The site's internal CA (openssl): create a root CA or take the site's own, issue the registry's
server certificate with the names nodes reach it by, and check certificates (chain, names, expiry).

Files in the CA directory (SITE_CA_DIR): ca.crt (public), ca.key (0600, only when created here),
registry.crt, registry.key (0600). Running init again with the same names and a certificate that is
still valid for RENEW_DAYS changes nothing and says so.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from .. import proc
from ..errors import ConfigError, DeployError

OPENSSL = "openssl"
RENEW_DAYS = 30  # a certificate expiring sooner is re-issued by init and flagged by the checks
CA_SUBJECT = "/CN=GL-Native site CA"
Outcome = Literal["created", "reissued", "unchanged"]


@dataclass(frozen=True)
class Names:
    """The names a certificate must carry: DNS names and IP addresses."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]

    @classmethod
    def of(cls, items: Sequence[str]) -> Names:
        dns: list[str] = []
        ips: list[str] = []
        for item in dict.fromkeys(i.strip().lower() for i in items if i.strip()):
            try:
                ips.append(str(ipaddress.ip_address(item)))
            except ValueError:
                if not re.fullmatch(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?", item):
                    raise ConfigError(f"certificate name {item!r} is neither a DNS name nor an IP address; "
                                      f"give names such as registry.gov.local or 192.168.56.5") from None
                dns.append(item)
        if not dns and not ips:
            raise ConfigError("the registry certificate needs at least one name: set REGISTRY (its host) "
                              "or BASTION_IP")
        return cls(tuple(dns), tuple(ips))

    def san(self) -> str:
        return ",".join([f"DNS:{d}" for d in self.dns] + [f"IP:{i}" for i in self.ips])

    @property
    def common_name(self) -> str:
        return (self.dns or self.ips)[0]


@dataclass(frozen=True)
class Issued:
    ca_cert: Path
    cert: Path
    key: Path
    outcome: Outcome
    reason: str


def _openssl(args: Sequence[str], what: str, cwd: Path | None = None) -> proc.Completed:
    try:
        done = proc.run([OPENSSL, *args], timeout=60, cwd=cwd)
    except FileNotFoundError:
        raise DeployError("openssl not found; install it (apt-get install openssl / dnf install openssl)") from None
    if not done.ok:
        raise DeployError(f"openssl failed to {what}: {done.stderr.strip()[-400:]}")
    return done


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(0o600)


def sans_of(cert: Path) -> Names:
    """The subjectAltName entries of a PEM certificate."""
    text = _openssl(["x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"], f"read {cert}").stdout
    dns = tuple(m.lower() for m in re.findall(r"DNS:([^,\s]+)", text))
    ips = tuple(str(ipaddress.ip_address(m)) for m in re.findall(r"IP Address:([0-9A-Fa-f:.]+)", text))
    return Names(dns, ips)


def problems(cert: Path, ca_cert: Path, names: Names, *, min_days: int = RENEW_DAYS) -> list[str]:
    """What is wrong with `cert` as the registry's certificate, each with its fix; [] when fine."""
    if not cert.is_file():
        return [f"{cert}: certificate not found; run: invoke ca.init"]
    out: list[str] = []
    verify = proc.run([OPENSSL, "verify", "-CAfile", str(ca_cert), str(cert)], timeout=60)
    if not verify.ok:
        detail = (verify.stdout + verify.stderr).strip().splitlines()
        expired = any("expired" in line for line in detail)
        out.append(f"{cert}: not valid under the CA {ca_cert} ({detail[-1] if detail else 'openssl verify failed'}); "
                   + ("re-issue it: invoke ca.init" if expired else
                      "issue it from this CA (invoke ca.init) or point SITE_CA_DIR/REGISTRY_CA_FILE at the CA "
                      "that signed it"))
    if not _openssl_ok(["x509", "-in", str(cert), "-noout", "-checkend", "0"]):
        out.append(f"{cert}: expired ({_not_after(cert)}); re-issue it: invoke ca.init, then run the bastion "
                   f"phases again (invoke site.deploy)")
    elif not _openssl_ok(["x509", "-in", str(cert), "-noout", "-checkend", str(min_days * 86400)]):
        out.append(f"{cert}: expires within {min_days} days ({_not_after(cert)}); re-issue it: invoke ca.init")
    have = sans_of(cert)
    missing = [d for d in names.dns if d not in have.dns] + [i for i in names.ips if i not in have.ips]
    if missing:
        out.append(f"{cert}: does not name {', '.join(missing)} (it names "
                   f"{', '.join(have.dns + have.ips) or 'nothing'}); nodes reach the registry by these names: "
                   f"re-issue it with invoke ca.init")
    return out


def _openssl_ok(args: Sequence[str]) -> bool:
    return proc.run([OPENSSL, *args], timeout=60).ok


def _not_after(cert: Path) -> str:
    return _openssl(["x509", "-in", str(cert), "-noout", "-enddate"], f"read {cert}").stdout.strip()


def _check_ca_pair(ca_cert: Path, ca_key: Path) -> None:
    for path, what in ((ca_cert, "CA certificate"), (ca_key, "CA key")):
        if not path.is_file():
            raise ConfigError(f"{path}: {what} not found; give the site CA's PEM files (--ca-cert, --ca-key) or "
                              f"leave both out to create a new CA")
    if not _openssl_ok(["x509", "-in", str(ca_cert), "-noout", "-checkend", "0"]):
        raise ConfigError(f"{ca_cert}: the CA certificate has expired ({_not_after(ca_cert)}); renew the site CA")
    text = _openssl(["x509", "-in", str(ca_cert), "-noout", "-text"], f"read {ca_cert}").stdout
    if "CA:TRUE" not in text:
        raise ConfigError(f"{ca_cert}: not a CA certificate (basicConstraints CA:TRUE missing); give the site's "
                          f"root or intermediate CA")
    cert_pub = _openssl(["x509", "-in", str(ca_cert), "-noout", "-pubkey"], f"read {ca_cert}").stdout
    key_pub = proc.run([OPENSSL, "pkey", "-in", str(ca_key), "-pubout"], timeout=60)
    if not key_pub.ok or key_pub.stdout != cert_pub:
        raise ConfigError(f"{ca_key}: this key does not belong to the CA certificate {ca_cert}; give the "
                          f"matching pair")


_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def create_ca(ca_cert: Path, ca_key: Path, days: int) -> None:
    """A new self-signed root CA (P-256), key 0600."""
    with tempfile.TemporaryDirectory(prefix="gl-ca-") as tmp:
        key = Path(tmp) / "ca.key"
        _openssl(["req", "-x509", *_EC, "-days", str(days), "-keyout", str(key), "-out", str(ca_cert),
                  "-subj", CA_SUBJECT, "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "create the CA")
        _write_private(ca_key, key.read_bytes())
    ca_cert.chmod(0o644)


def issue(ca_cert: Path, ca_key: Path, cert: Path, key: Path, names: Names, days: int) -> None:
    """A server certificate for `names` signed by the CA (serverAuth), key 0600."""
    with tempfile.TemporaryDirectory(prefix="gl-ca-") as tmp:
        work = Path(tmp)
        (work / "san.ext").write_text(f"subjectAltName={names.san()}\nextendedKeyUsage=serverAuth\n"
                                      "basicConstraints=critical,CA:FALSE\n"
                                      "keyUsage=critical,digitalSignature,keyEncipherment\n")
        _openssl(["req", *_EC, "-keyout", "server.key", "-out", "server.csr", "-subj",
                  f"/CN={names.common_name}"], "create the server key", cwd=work)
        _openssl(["x509", "-req", "-in", "server.csr", "-CA", str(ca_cert.resolve()), "-CAkey",
                  str(ca_key.resolve()), "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days",
                  str(days), "-out", "server.crt", "-extfile", "san.ext"], "sign the server certificate", cwd=work)
        _write_private(key, (work / "server.key").read_bytes())
        cert.write_bytes((work / "server.crt").read_bytes())
        cert.chmod(0o644)


def init(out: Path, names: Names, *, days: int = 825, ca_days: int = 3650, ca_cert: Path | None = None,
         ca_key: Path | None = None) -> Issued:
    """Create (or take) the CA in `out` and issue registry.crt for `names`; idempotent."""
    if bool(ca_cert) != bool(ca_key):
        raise ConfigError("--ca-cert and --ca-key go together: give the site CA's certificate and key, or "
                          "neither to create a new CA")
    if ca_cert and ca_key:
        _check_ca_pair(ca_cert, ca_key)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    dest_ca, dest_key = out / "ca.crt", out / "ca.key"
    cert, key = out / "registry.crt", out / "registry.key"
    created_ca = False
    if ca_cert and ca_key:
        if not dest_ca.is_file() or dest_ca.read_bytes() != ca_cert.read_bytes():
            dest_ca.write_bytes(ca_cert.read_bytes())
            dest_ca.chmod(0o644)
            created_ca = True
        signing_key = ca_key  # the site's key stays where the site keeps it
    elif dest_ca.is_file() and dest_key.is_file():
        _check_ca_pair(dest_ca, dest_key)
        signing_key = dest_key
    else:
        create_ca(dest_ca, dest_key, ca_days)
        created_ca, signing_key = True, dest_key
    found = [] if created_ca else problems(cert, dest_ca, names)
    if not created_ca and not found and key.is_file():
        return Issued(dest_ca, cert, key, "unchanged", "registry.crt is valid, names "
                      f"{', '.join(names.dns + names.ips)} and is not due for renewal")
    existed = cert.is_file()
    issue(dest_ca, signing_key, cert, key, names, days)
    reason = "; ".join(found) if found else ("new CA" if created_ca else "no key")
    return Issued(dest_ca, cert, key, "reissued" if existed else "created", reason)
