"""Copy a backup directory off a host and check it against its own SHA256SUMS after the copy."""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import tarfile
from pathlib import Path

from ..errors import DeployError
from ..transport import Transport

COPY_TIMEOUT = 3600.0


def verify(path: Path) -> dict[str, object]:
    """The manifest of a backup directory whose files all match SHA256SUMS and manifest.json;
    DeployError naming the first file that does not (corrupt, truncated or missing)."""
    sums, manifest_file = path / "SHA256SUMS", path / "manifest.json"
    if not sums.is_file() or not manifest_file.is_file():
        raise DeployError(f"{path}: manifest.json or SHA256SUMS missing: not a complete backup")
    manifest = json.loads(manifest_file.read_text())
    listed = {str(f["path"]): str(f["sha256"]) for f in manifest.get("files", [])}
    for lineno, line in enumerate(sums.read_text().splitlines(), 1):
        want, _, rel = line.partition("  ")
        target = (path / rel).resolve()
        if not rel or path.resolve() not in target.parents:
            raise DeployError(f"{sums}:{lineno}: {rel!r} is not a path inside the backup")
        if not target.is_file():
            raise DeployError(f"{path}: {rel} is listed in SHA256SUMS but missing (truncated copy?)")
        got = hashlib.sha256(target.read_bytes()).hexdigest()
        if got != want or listed.get(rel) != want:
            raise DeployError(f"{path}: {rel}: sha256 {got}, SHA256SUMS lists {want}, manifest.json "
                              f"{listed.get(rel)}: corrupt or truncated")
    if set(listed) != {line.partition("  ")[2] for line in sums.read_text().splitlines()}:
        raise DeployError(f"{path}: SHA256SUMS and manifest.json list different files")
    return dict(manifest)


def fetch(conn: Transport, remote_dir: str, local_dir: Path) -> dict[str, object]:
    """Copy remote_dir (a backup written by backup.sh) into local_dir (0700), then verify it."""
    res = conn.run(["sh", "-c", 'tar -C "$1" -cf - . | base64 -w0', "fetch", remote_dir], timeout=COPY_TIMEOUT)
    if res.rc != 0:
        raise DeployError(f"copying {remote_dir} off the host failed (exit {res.rc}): {res.stderr.strip()[-300:]}")
    try:
        data = base64.b64decode(res.stdout.strip(), validate=True)
    except binascii.Error as exc:
        raise DeployError(f"copying {remote_dir}: the stream is damaged ({exc})") from None
    local_dir.mkdir(mode=0o700, parents=True, exist_ok=False)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        tar.extractall(local_dir, filter="data")
    for p in local_dir.rglob("*"):
        p.chmod(0o700 if p.is_dir() else 0o600)
    return verify(local_dir)
