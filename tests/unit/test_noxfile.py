"""`nox -l` lists every session with its one-line docstring."""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def session_docs() -> dict[str, str]:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    sessions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            "session" in ast.unparse(d) for d in node.decorator_list
        ):
            sessions[node.name] = (ast.get_docstring(node) or "").splitlines()[0:1]
    return {name: doc[0] if doc else "" for name, doc in sessions.items()}


def test_every_session_has_a_docstring_shown_by_nox_list():
    docs = session_docs()
    assert {"lint", "tests", "lab_single"} <= set(docs)
    listing = subprocess.run(["nox", "-l"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name, doc in docs.items():
        assert doc, f"session {name} has no docstring"
        assert f"{name} " in listing and doc in listing, f"{name}: {doc!r} not in nox -l"


def test_labs_are_not_default():
    listing = subprocess.run(["nox", "-l"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "- lab_single" in listing and "* tests" in listing
