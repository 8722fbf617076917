"""Secrets live in files private to their owner (mode 0600 or stricter); one reader checks that."""
from __future__ import annotations

import stat
from pathlib import Path

from .errors import ConfigError


def read_private(path: str | Path, *, what: str, where: str) -> bytes:
    """The contents of a secret file; ConfigError (exit 2) when missing, readable by others, or empty.

    `what` names the secret ("K3S_TOKEN_FILE=/x", "registry password file /x"), `where` the
    setting's origin or the file itself, so the message says which key and which file to fix.
    """
    p = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        data = p.read_bytes() if p.is_file() else None
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise ConfigError(f"{where}: {what}: cannot read it: {exc.strerror}") from None
    if data is None:
        raise ConfigError(f"{where}: {what}: file not found; create it with mode 0600 "
                          f"(install -m 600 /dev/null {path}, then write the secret into it)")
    if mode & 0o077:
        raise ConfigError(f"{where}: {what} has mode {mode:04o}, readable by others; the secret must be "
                          f"private to its owner: chmod 600 {path}")
    if not data.strip():
        raise ConfigError(f"{where}: {what} is empty; put the secret in the file")
    return data
