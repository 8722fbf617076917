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
                            ".deb files the bastion lacks, with their dependencies, from Debian 12's mirror)",
               "upgrade_from": "The previous bundle's directory or its manifest.json: build an upgrade bundle "
                               "(<name>-upgrade) holding only the files that changed (docs/airgap.md)",
               "allow_downgrade": "With --upgrade-from: build it even though a version is older than the old bundle's",
               "allowed_signers": "With --upgrade-from: check the old manifest's signature against this "
                                  "allowed_signers file (default: any valid signature)"},
         iterable=["set_"])
@guarded
def build_(c: Context, out: str = "", env: str = DEFAULT_ENV, set_: Any = None, split_size: str = "",
           sign_key: str = "", sample_image: bool = False, os_status: str = "", upgrade_from: str = "",
           allow_downgrade: bool = False, allowed_signers: str = "") -> None:
    """Build the air-gapped site bundle: directory, plain tar (parts), manifest.json, SHA256SUMS, signature."""
    if not out:
        raise ConfigError("--out is required: the directory to write, e.g. --out dist/site")
    size = split.parse_size(split_size) if split_size else 0
    if (allow_downgrade or allowed_signers) and not upgrade_from:
        raise ConfigError("--allow-downgrade and --allowed-signers only apply with --upgrade-from OLD "
                          "(the previous bundle's directory or manifest.json)")
    loaded = load_settings(env, set_ or [])
    result = sb_build.build(loaded, Path(out), split_size=size, sign_key=Path(sign_key) if sign_key else None,
                            sample_image=sample_image, os_status=Path(os_status) if os_status else None,
                            upgrade_from=Path(upgrade_from) if upgrade_from else None,
                            allow_downgrade=allow_downgrade,
                            base_signers=Path(allowed_signers) if allowed_signers else None)
    state = "written" if result.changed else "no change (same manifest as the earlier build)"
    print(f"{result.bundle_dir}: {state}; {len(result.parts)} tar part(s) listed in {result.parts_file.name}")
    ratio = result.bytes_read / result.bundle_bytes if result.bundle_bytes else 0.0
    print(f"  bytes read {result.bytes_read}, bundle bytes {result.bundle_bytes} (ratio {ratio:.3f})")
    if upgrade_from:
        print(f"  upgrade bundle: {result.relied_on} unchanged file(s), {result.relied_bytes} bytes, left to the "
              f"previous bundle (listed with their sha256 in manifest.json relies_on)")
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
               "jobs": "Files hashed in parallel (default: the number of CPUs)",
               "base": "An upgrade bundle: the previous (installed) bundle directory; checks the files it relies "
                       "on are there with their sha256"},
         positional=["dir"])
@guarded
def verify_(c: Context, dir: str, arch: str = "", require_signature: bool = False,
            allowed_signers: str = "", identity: str = "", unpack: str = "", jobs: int = 0, base: str = "") -> None:
    """Verify a site bundle: sizes, sha256, no missing or extra file, SHA256SUMS, signature, arch."""
    if unpack:
        root = split.unpack(Path(unpack), Path(dir))
        print(f"unpacked into {root}")
    else:
        root = Path(dir)
    report = sb_verify.verify_bundle(root, arch=arch, require_signature=require_signature,
                                     allowed_signers=Path(allowed_signers) if allowed_signers else None,
                                     identity=identity or None, jobs=jobs or None,
                                     base=Path(base) if base else None)
    print(f"OK: {report.files} files, {report.bytes} bytes verified in {root}; "
          f"signature: {report.signature.detail}")
    up = report.manifest.upgrade
    if up is not None:
        changes = [f"{k} {up.from_versions.get(k, '?')} -> {v}" for k, v in sorted(up.to_versions.items())]
        print(f"  upgrade bundle: {', '.join(changes)}")
        print(f"  relies on {len(up.relies_on)} file(s) of the previous bundle: "
              + (f"{report.base_files} checked in {base}" if base else "not checked (give --base OLD_DIR)"))


ns = Collection("bundle")
ns.add_task(build_)
ns.add_task(verify_)
