"""Parse KEY=VALUE env files exactly as bash would `source` them, or refuse.

The files are meant to be sourced by bash *and* read by Python with the same meaning, so
anything bash would expand or execute (``$``, backticks, unquoted spaces) is refused with
the file, line and a fix, instead of being guessed at.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _scan_value(raw: str, where: str, key: str) -> str:
    """Return the literal value of the right-hand side, refusing anything bash would expand."""
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "'":
            end = raw.find("'", i + 1)
            if end < 0:
                raise ConfigError(f"{where}: {key}: unterminated single quote; close the quote")
            out.append(raw[i + 1 : end])
            i = end + 1
        elif ch == '"':
            end = raw.find('"', i + 1)
            if end < 0:
                raise ConfigError(f"{where}: {key}: unterminated double quote; close the quote")
            inner = raw[i + 1 : end]
            if any(c in inner for c in "$`\\!"):
                raise ConfigError(
                    f"{where}: {key}: $, backtick, backslash or ! inside double quotes would be "
                    f"expanded by bash; put the value in single quotes instead: {key}={shlex.quote(inner)}"
                )
            out.append(inner)
            i = end + 1
        elif ch in " \t":
            rest = raw[i:].strip()
            if rest and not rest.startswith("#"):
                raise ConfigError(
                    f"{where}: {key}: unquoted space in value {raw!r}; bash would run the rest as a "
                    f"command. Quote the whole value: {key}='...'"
                )
            break
        elif ch in "$`":
            raise ConfigError(
                f"{where}: {key}: unquoted {ch!r} would be expanded or executed by bash; "
                f"put the value in single quotes to keep it literal"
            )
        elif ch == "\\" and i + 1 < n and raw[i + 1] != "\n":
            out.append(raw[i + 1])  # bash: a backslash outside quotes makes the next char literal
            i += 2
        elif ch in "\\;&|<>(){}":
            raise ConfigError(
                f"{where}: {key}: unquoted {ch!r} is special to bash; put the value in single quotes"
            )
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def scan_text(text: str, file: str) -> tuple[list[Entry], list[str]]:
    """The entries of env-file text and every per-line problem (one message each, file:line first).

    Whole-file problems (BOM, CRLF) raise at once: no line of such a file can be trusted.
    """
    if text.startswith("\ufeff"):
        raise ConfigError(f"{file}:1: file starts with a UTF-8 byte-order mark (BOM), which bash "
                          f"would treat as part of the first key; save it without BOM")
    if "\r" in text:
        crlf_line = text[: text.index("\r")].count("\n") + 1
        raise ConfigError(f"{file}:{crlf_line}: CRLF (Windows) line endings; bash would keep the \\r in "
                          f"every value. Convert the file with `dos2unix {file}` or `sed -i 's/\\r$//'`")
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[str, Entry] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGN.match(stripped)
        if not match:
            problems.append(f"{file}:{lineno}: expected KEY=VALUE (no spaces around '='), got {stripped!r}")
            continue
        key, raw = match.groups()
        where = f"{file}:{lineno}"
        try:
            entry = Entry(key, _scan_value(raw, where, key), file, lineno)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if key in seen:
            problems.append(f"{where}: {key} is set twice (first at line {seen[key].line}); keep one of them")
            continue
        seen[key] = entry
        entries.append(entry)
    return entries, problems


def parse_text(text: str, file: str) -> list[Entry]:
    """Parse env-file text; `file` is only used in messages. ConfigError lists every problem."""
    entries, problems = scan_text(text, file)
    if problems:
        raise ConfigError("\n".join(problems))
    return entries


def scan_file(path: str | Path) -> tuple[list[Entry], list[str]]:
    """scan_text of a file from disk; a missing, unreadable, non-UTF-8 or empty file raises."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: env file not found; pass an existing file, e.g. env/single.env") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read env file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    if not text.strip():
        raise ConfigError(f"{p}:1: env file is empty; start from env/single.env and set at least "
                          f"CONTROL_PLANE_IPS")
    return scan_text(text, str(p))


def parse_file(path: str | Path) -> list[Entry]:
    """Parse an env file from disk; ConfigError lists every problem."""
    entries, problems = scan_file(path)
    if problems:
        raise ConfigError("\n".join(problems))
    return entries


def render(values: dict[str, str], header: str = "") -> str:
    """Render values as a bash-sourceable env file; every value is shlex-quoted."""
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    lines += [f"{k}={shlex.quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
