"""Sign and check manifest.json with OpenSSH (`ssh-keygen -Y`, namespace gl-native-bundle).

OpenSSH is on every host, so the offline side needs nothing else; verify.sh runs the same commands.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DeployError
from .manifest import NAMESPACE, SIGNATURE

Outcome = Literal["verified", "valid-unchecked-signer", "unsigned"]


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if not found:
        raise ConfigError("ssh-keygen not found; install OpenSSH (apt-get install openssh-client)")
    return found


def _run(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin if stdin is not None else b"", capture_output=True, timeout=60)


def check_key(key: Path) -> None:
    """--sign-key must be a readable OpenSSH private key file."""
    if not key.is_file():
        raise ConfigError(f"--sign-key {key}: file not found; give an OpenSSH private key "
                          f"(ssh-keygen -t ed25519 -f {key})")


def sign(key: Path, manifest: Path) -> bytes:
    """Write and return manifest.json.sig made with `key`."""
    sig = manifest.with_name(SIGNATURE)
    sig.unlink(missing_ok=True)
    proc = _run([_ssh_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE, str(manifest)])
    if proc.returncode != 0 or not sig.is_file():
        raise ConfigError(f"--sign-key {key}: ssh-keygen -Y sign failed: "
                          f"{proc.stderr.decode(errors='replace').strip()[:300]}; is it a private key?")
    return sig.read_bytes()


def fingerprint(key: Path) -> str:
    """`ssh-keygen -lf` of the key, to compare out of band with the offline side."""
    proc = _run([_ssh_keygen(), "-lf", str(key)])
    if proc.returncode != 0:
        raise ConfigError(f"--sign-key {key}: ssh-keygen -lf failed: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout.decode().strip()


@dataclass(frozen=True)
class SignatureCheck:
    """What the check found: outcome and, when known, who signed."""

    outcome: Outcome
    detail: str


def verify(bundle_dir: Path, *, required: bool, allowed_signers: Path | None,
           identity: str | None = None) -> SignatureCheck:
    """Check manifest.json.sig (when required or present). DeployError (exit 1) for a bad or missing
    signature, ConfigError (exit 2) for unusable options."""
    manifest, sig = bundle_dir / "manifest.json", bundle_dir / SIGNATURE
    if required and allowed_signers is None:
        raise ConfigError("--require-signature needs --allowed-signers FILE (lines '<identity> <key type> "
                          "<public key>'); get the signer's public key out of band")
    if allowed_signers is not None and not allowed_signers.is_file():
        raise ConfigError(f"--allowed-signers {allowed_signers}: file not found; create it from the signer's "
                          f"public key: echo \"gl-bundle $(cat key.pub)\" > {allowed_signers}")
    if not sig.is_file():
        if required:
            raise DeployError(f"{sig}: missing, and a signature is required; ask for a signed bundle "
                              f"(invoke bundle.build --sign-key KEY), never install an unsigned one")
        return SignatureCheck("unsigned", "no signature (not required)")
    data = manifest.read_bytes()
    tool = _ssh_keygen()
    if allowed_signers is None:
        proc = _run([tool, "-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], data)
        if proc.returncode != 0:
            raise DeployError(f"{sig}: does not sign this {manifest.name} (manifest changed after signing, "
                              f"or the signature is damaged); get the bundle again from its builder")
        return SignatureCheck("valid-unchecked-signer", proc.stdout.decode(errors="replace").strip() +
                              " (signer not checked: give --allowed-signers)")
    who = identity
    if not who:
        found = _run([tool, "-Y", "find-principals", "-f", str(allowed_signers), "-s", str(sig)])
        if found.returncode != 0 or not found.stdout.strip():
            raise DeployError(f"{sig}: not made by any key in {allowed_signers} (wrong signer or damaged "
                              f"signature); get the bundle from the expected builder")
        who = found.stdout.decode().splitlines()[0].strip()
    proc = _run([tool, "-Y", "verify", "-f", str(allowed_signers), "-I", who, "-n", NAMESPACE,
                 "-s", str(sig)], data)
    if proc.returncode != 0:
        raise DeployError(f"{sig}: does not verify {manifest.name} for {who} in {allowed_signers} "
                          f"(manifest changed after signing, or another signer); get the bundle again "
                          f"from its builder")
    return SignatureCheck("verified", proc.stdout.decode(errors="replace").strip())
