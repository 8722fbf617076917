"""Where the checkout's parts are: one definition for every module (the project runs from its checkout)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO / "scripts"
BACKEND_TEMPLATES = REPO / "deploy" / "backend"
VAGRANT_DIR = REPO / "vagrant"
CACHE_DIR = REPO / ".cache"  # gitignored scratch: lab state, boxes, stand-in releases
