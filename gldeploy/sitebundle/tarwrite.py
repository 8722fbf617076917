"""Write the bundle directory and its normalised tar in one pass (build.py's writer).

Each source is read once: tarfile pulls it through `_Tee`, which hashes it and writes the bundle
copy from the same buffer. Tar entries are normalised (mtime 0, owner 0:0 without names, mode 0755
for executables and directories, 0644 otherwise), so equal inputs give equal bytes.
"""
from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import manifest as mf
from . import split

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input file and what the manifest says about it."""

    rel: str
    src: Path
    kind: mf.Kind
    version: str
    origin: str
    executable: bool = False



class _Tee:
    """Reads the source for tarfile and, in the same read, hashes and writes the bundle copy."""

    def __init__(self, src: IO[bytes], copy: IO[bytes]) -> None:
        self.src, self.copy, self.digest, self.read_bytes = src, copy, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.src.read(size)
        self.digest.update(data)
        self.copy.write(data)
        self.read_bytes += len(data)
        return data


def _info(name: str, size: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, mode, kind, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class TreeAndTar:
    """The bundle directory and its tar, written together."""

    def __init__(self, root: Path, name: str, parts: split.PartWriter) -> None:
        self.root, self.name, self.parts = root, name, parts
        self.tar = tarfile.open(fileobj=parts, mode="w|", format=tarfile.GNU_FORMAT)  # type: ignore[call-overload]
        self.tar.copybufsize = _CHUNK
        self.dirs: set[str] = set()
        self.read_bytes = 0
        self._dir("")

    def _dir(self, rel: str) -> None:
        if rel in self.dirs:
            return
        if rel:
            self._dir(rel.rpartition("/")[0])
        self.dirs.add(rel)
        (self.root / rel).mkdir(mode=0o755, exist_ok=True)
        self.tar.addfile(_info(f"{self.name}/{rel}".rstrip("/"), 0, 0o755, tarfile.DIRTYPE))

    def copy(self, source: Source) -> mf.Entry:
        self._dir(source.rel.rpartition("/")[0])
        mode = 0o755 if source.executable else 0o644
        target = self.root / source.rel
        with source.src.open("rb") as fh, target.open("wb") as out:
            size = source.src.stat().st_size
            tee = _Tee(fh, out)
            self.tar.addfile(_info(f"{self.name}/{source.rel}", size, mode), tee)
        target.chmod(mode)
        self.read_bytes += tee.read_bytes
        return mf.Entry(source.rel, size, tee.digest.hexdigest(), source.kind, source.version, source.origin)

    def data(self, rel: str, data: bytes) -> None:
        (self.root / rel).write_bytes(data)
        (self.root / rel).chmod(0o644)
        self.tar.addfile(_info(f"{self.name}/{rel}", len(data), 0o644), _Bytes(data))

    def close(self) -> list[tuple[str, str]]:
        self.tar.close()
        return self.parts.close()


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos:end], min(end, len(self._data))
        return chunk
