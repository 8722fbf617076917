"""`bundle` collection: build the air-gapped site bundle (online side) and verify it (offline side)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.context import Context

from gldeploy.errors import ConfigError, guarded
from gldeploy.sitebundle import build as sb_build
from gldeploy.sitebundle import split
from gldeploy.sitebundle import verify as sb_verify
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, load_settings

SIGNERS_HELP = "allowed_signers file (lines '<identity> <key type> <public key>') to check the signature against"


@gl_task(name="build",
         help={"env": COMMON_HELP["env"], "set": COMMON_HELP["set"],
               "out": "Directory for the bundle directory, its tar (parts), PARTS.sha256 and the secrets directory",
               "split_size": "Cut the tar into parts of this size for media, e.g. 4G, 700M (default: one tar)",
               "sign_key": "OpenSSH private key that signs manifest.json (ssh-keygen -Y sign)",
               "sample_image": COMMON_HELP["sample_image"],
               "os_status": "A copy of the target host's /var/lib/dpkg/status: adds the packages section (the "
                            ".deb files the bastion lacks, with their dependencies, from Debian 12's mirror)"},
         iterable=["set_"])
@guarded
def build_(c: Context, out: str = "", env: str = DEFAULT_ENV, set_: Any = None, split_size: str = "",
           sign_key: str = "", sample_image: bool = False, os_status: str = "") -> None:
    """Build the air-gapped site bundle: directory, plain tar (parts), manifest.json, SHA256SUMS, signature."""
    if not out:
        raise ConfigError("--out is required: the directory to write, e.g. --out dist/site")
    size = split.parse_size(split_size) if split_size else 0
    loaded = load_settings(env, set_ or [])
    result = sb_build.build(loaded, Path(out), split_size=size, sign_key=Path(sign_key) if sign_key else None,
                            sample_image=sample_image, os_status=Path(os_status) if os_status else None)
    state = "written" if result.changed else "no change (same manifest as the earlier build)"
    print(f"{result.bundle_dir}: {state}; {len(result.parts)} tar part(s) listed in {result.parts_file.name}")
    ratio = result.bytes_read / result.bundle_bytes if result.bundle_bytes else 0.0
    print(f"  bytes read {result.bytes_read}, bundle bytes {result.bundle_bytes} (ratio {ratio:.3f})")
    print(f"  manifest.json sha256 {result.manifest_sha256}")
    if result.fingerprint:
        print(f"  signer key {result.fingerprint}")
    print("  compare these out of band (phone, paper) with what the offline side prints")
    if result.secrets_dir:
        print(f"  secrets (not in the bundle, deliver separately, remove after install): {result.secrets_dir}")
    print(f"  offline: bash verify.sh --unpack {result.parts_file.name} --to DEST  (or ./verify.sh in the bundle)")


@gl_task(name="verify",
         help={"dir": "The unpacked bundle directory; with --unpack, the directory to unpack into "
                      "(room is checked first)",
               "arch": "Refuse a bundle built for another architecture (amd64, arm64)",
               "require_signature": "Refuse an unsigned or wrongly signed bundle (needs --allowed-signers)",
               "allowed_signers": SIGNERS_HELP,
               "identity": "Signer identity in the allowed_signers file (default: whoever the file says signed)",
               "unpack": "A <name>.PARTS.sha256 file: check its parts and the free space of DIR, extract into "
                         "DIR, verify",
               "jobs": "Files hashed in parallel (default: the number of CPUs)"},
         positional=["dir"])
@guarded
def verify_(c: Context, dir: str, arch: str = "", require_signature: bool = False,
            allowed_signers: str = "", identity: str = "", unpack: str = "", jobs: int = 0) -> None:
    """Verify a site bundle: sizes, sha256, no missing or extra file, SHA256SUMS, signature, arch."""
    if unpack:
        root = split.unpack(Path(unpack), Path(dir))
        print(f"unpacked into {root}")
    else:
        root = Path(dir)
    report = sb_verify.verify_bundle(root, arch=arch, require_signature=require_signature,
                                     allowed_signers=Path(allowed_signers) if allowed_signers else None,
                                     identity=identity or None, jobs=jobs or None)
    print(f"OK: {report.files} files, {report.bytes} bytes verified in {root}; "
          f"signature: {report.signature.detail}")


ns = Collection("bundle")
ns.add_task(build_)
ns.add_task(verify_)
