"""The bundle's plain tar, split into parts for media, each part with its own checksum.

Writing: `PartWriter` is the file object tarfile streams into; it cuts the stream into parts of
`split_size` bytes (`<name>.tar.000`, `.001`, ...; one `<name>.tar` without a split size) and
hashes every part as it is written, so the tar is never read back. `<name>.PARTS.sha256` lists them.

Unpacking (`unpack`): every listed part must be present and match its sum (a stale or missing part
is named) and no unlisted part may lie next to them; the free space of the destination is checked
with statvfs before one byte is written (never a guess about /tmp: the parts stream straight into
the destination, no joined copy is made).
"""
from __future__ import annotations

import hashlib
import os
import re
import tarfile
from pathlib import Path
from typing import IO, Callable

from ..errors import ConfigError, DeployError

_CHUNK = 1 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_PART = re.compile(r"^([0-9a-f]{64})  (\S+)$")
MIN_SPLIT = 1 << 10


def parse_size(text: str, what: str = "--split-size") -> int:
    """'4G', '700M', '512K' or a byte count; refuses anything else (ConfigError)."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([KMGT]?)(i?B)?\s*", text.upper().replace("IB", "B"))
    if not match or int(match.group(1)) * _UNITS[match.group(2)] < MIN_SPLIT:
        raise ConfigError(f"{what} {text!r}: expected a size of at least 1K such as 4G, 700M or 512K")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parts_file(out: Path, name: str) -> Path:
    """Where the list of parts and their sums lives: <out>/<name>.PARTS.sha256."""
    return out / f"{name}.PARTS.sha256"


class PartWriter:
    """A write-only stream cut into parts of `split_size` bytes (0 = one part), each hashed as written."""

    def __init__(self, out: Path, name: str, split_size: int = 0) -> None:
        self.out, self.name, self.split_size = out, name, split_size
        self.parts: list[tuple[str, str]] = []  # (file name, sha256)
        self._fh: IO[bytes] | None = None
        self._digest = hashlib.sha256()
        self._left = 0
        self.written = 0

    def _open_next(self) -> None:
        self._close_part()
        suffix = f".{len(self.parts):03d}" if self.split_size else ""
        self._current = f"{self.name}.tar{suffix}"
        self._fh = (self.out / self._current).open("wb")
        self._digest = hashlib.sha256()
        self._left = self.split_size or -1

    def _close_part(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.parts.append((self._current, self._digest.hexdigest()))
            self._fh = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._fh is None or self._left == 0:
                self._open_next()
            assert self._fh is not None
            take = len(view) if self._left < 0 else min(self._left, len(view))
            self._fh.write(view[:take])
            self._digest.update(view[:take])
            self._left -= take if self._left > 0 else 0
            self.written += take
            view = view[take:]
        return len(data)

    def close(self) -> list[tuple[str, str]]:
        """Finish the last part; write and return the list of (part, sha256)."""
        if self._fh is None and not self.parts:
            self._open_next()
        self._close_part()
        text = "".join(f"{digest}  {part}\n" for part, digest in self.parts)
        parts_file(self.out, self.name).write_text(text)
        return self.parts


def read_parts(listing: Path) -> list[tuple[str, str]]:
    """(part, sha256) pairs of a PARTS.sha256 file, checked line by line."""
    if not listing.is_file():
        raise ConfigError(f"{listing}: not found; give the <name>.PARTS.sha256 file that came with the parts")
    rows = []
    for lineno, line in enumerate(listing.read_text(errors="replace").splitlines(), 1):
        match = _PART.match(line)
        if not match or "/" in match.group(2):
            raise DeployError(f"{listing}:{lineno}: expected '<sha256>  <part>', got {line[:80]!r}; "
                              f"copy the PARTS.sha256 file from the build output again")
        rows.append((match.group(2), match.group(1)))
    if not rows:
        raise DeployError(f"{listing}: lists no parts; copy it again from the build output")
    return rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_parts(listing: Path) -> list[Path]:
    """Every listed part present and matching, no stray part; returns the parts in order."""
    rows, where = read_parts(listing), listing.parent
    stem = listing.name[: -len(".PARTS.sha256")]
    for part, _ in rows:
        if not (where / part).is_file():
            raise DeployError(f"{where / part}: split part missing; copy it from the build output "
                              f"(all parts listed in {listing.name} go together)")
    for part, digest in rows:
        if _sha256(where / part) != digest:
            raise DeployError(f"{where / part}: split part is stale or damaged (sha256 differs from "
                              f"{listing.name}); copy this part again from the same build")
    listed = {p for p, _ in rows}
    stray = sorted(p.name for p in where.glob(f"{stem}.tar*") if p.name not in listed)
    if stray:
        raise DeployError(f"{where / stray[0]}: part not listed in {listing.name} (left from another build?); "
                          f"remove it or copy the matching {listing.name}")
    return [where / p for p, _ in rows]


class _Joined:
    """The parts read one after the other as one stream."""

    def __init__(self, parts: list[Path]) -> None:
        self._parts = list(parts)
        self._fh: IO[bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        while self._parts or self._fh is not None:
            if self._fh is None:
                self._fh = self._parts.pop(0).open("rb")
            data = self._fh.read(size)
            if data:
                return data
            self._fh.close()
            self._fh = None
        return b""


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged write may still use on path's file system (statvfs)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def unpack(listing: Path, dest: Path, *, free: Callable[[Path], int] = free_bytes) -> Path:
    """Check the parts, the free space under dest, then stream-extract; returns the bundle directory."""
    parts = check_parts(listing)
    if not dest.is_dir():
        raise ConfigError(f"{dest}: not a directory; create it on a disk with room for the bundle")
    need = sum(p.stat().st_size for p in parts)
    have = free(dest)
    if have < need:
        raise ConfigError(f"{dest}: {have // (1 << 20)} MiB free, the bundle needs {need // (1 << 20) + 1} MiB; "
                          f"unpack on a larger disk, nothing was written")
    stem = listing.name[: -len(".PARTS.sha256")]
    if (dest / stem).exists():
        raise ConfigError(f"{dest / stem}: already exists; remove it or unpack elsewhere")
    with tarfile.open(fileobj=_Joined(parts), mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            if not member.name.startswith(f"{stem}/") and member.name != stem:
                raise DeployError(f"{listing}: member {member.name!r} is outside {stem}/; not a bundle tar")
            tar.extract(member, dest, filter="data")
    return dest / stem
