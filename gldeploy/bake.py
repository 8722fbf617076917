"""Bake a phase script into a standalone one: libraries inlined, settings baked in.

Every line ending in `# gl:include` is replaced by the library's text (minus its shebang); the
settings are baked in before the first include (`GL_BAKED=1` plus shlex-quoted `KEY=value` lines).
Used by bundle.py (baked bundles) and, through it, by render.py: the flow is one way.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from . import envfile
from .errors import DeployError

INCLUDE = "# gl:include"
_LIB_REF = re.compile(r"lib/([A-Za-z0-9_.-]+\.sh)")


def _lib_path(line: str, lib_dir: Path, where: str) -> Path:
    match = _LIB_REF.search(line)
    if not match:
        raise DeployError(f"{where}: '# gl:include' line names no lib/<file>.sh: {line.strip()!r}")
    path = lib_dir / match.group(1)
    if not path.is_file():
        raise DeployError(f"{where}: included library {path} does not exist")
    return path


def inline(text: str, lib_dir: Path, where: str, seen: set[str] | None = None,
           before_first: str = "") -> str:
    """Replace each line ending in `# gl:include` by the library's text minus its shebang."""
    seen = set() if seen is None else seen
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if not line.rstrip().endswith(INCLUDE):
            out.append(line)
            continue
        if before_first:
            out.append(before_first)
            before_first = ""
        lib = _lib_path(line, lib_dir, f"{where}:{lineno}")
        if lib.name in seen:
            out.append(f"# lib/{lib.name}: already inlined above\n")
            continue
        seen.add(lib.name)
        body = lib.read_text()
        if body.startswith("#!"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
        body = inline(body, lib_dir, f"lib/{lib.name}", seen)
        out.append(f"# ---- begin lib/{lib.name} (inlined) ----\n{body}")
        out.append("" if body.endswith("\n") else "\n")
        out.append(f"# ---- end lib/{lib.name} ----\n")
    return "".join(out)


def baked_block(values: dict[str, str]) -> str:
    """`GL_BAKED=1` plus one shlex-quoted assignment per key."""
    return ("# ---- settings baked in by scripts.render (edit the env file and re-render) ----\n"
            + envfile.render({"GL_BAKED": "1", **values}) + "# ---- end of baked settings ----\n")


def _with_header(text: str, header: Sequence[str]) -> str:
    """Insert header comment lines at the end of the leading comment block (keeps line numbers of
    the script's own usage text, and a shellcheck directive there applies to the whole file)."""
    lines = text.splitlines(keepends=True)
    at = 1
    while at < len(lines) and lines[at].startswith("#"):
        at += 1
    return "".join(lines[:at] + [f"{h}\n" for h in header] + lines[at:])


def bake_script(script: Path, values: dict[str, str], header: Sequence[str]) -> str:
    """One standalone script: header, baked settings before the first include, libraries inlined."""
    text = _with_header(script.read_text(), header)
    if INCLUDE not in text:
        raise DeployError(f"{script}: no '# gl:include' line; the settings cannot be baked in")
    return inline(text, script.parent / "lib", script.name, before_first=baked_block(values))
