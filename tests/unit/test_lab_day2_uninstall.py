"""k3s-uninstall.sh as phase 02 renders it: besides k3s it removes what the deploy put on the host (the
shipped bundle in WORK_DIR and the doctor/day2/restore tool dirs beside it, /etc/gl-deploy/versions.json),
keeps the append-only CHANGELOG and the on-node backups, and never deletes a standalone render."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RENDER = """set -euo pipefail
source "$1/scripts/lib/common.sh"; source "$1/scripts/lib/checks.sh"; source "$1/scripts/lib/k3s.sh"
source "$1/scripts/lib/k3s_files.sh"
k3s_render_uninstall "$2"
"""


def render(tmp_path: Path, bundle: Path, root: str = "") -> str:
    out = tmp_path / "k3s-uninstall.sh"
    env = {**os.environ, "GL_BUNDLE_DIR": str(bundle), "GL_ROOT": root}
    subprocess.run(["bash", "-c", RENDER, "render", str(REPO), str(out)], env=env, check=True, capture_output=True)
    return out.read_text()


def test_invoke_shipped_bundle_is_named_for_removal(tmp_path: Path) -> None:
    bundle = tmp_path / "var/lib/gl-deploy"
    bundle.mkdir(parents=True)
    (bundle / "settings.env").write_text("GL_SETTINGS_FORMAT='1'\n")
    text = render(tmp_path, bundle)
    assert f"GL_WORK={bundle}\n" in text
    for suffix in ("-doctor", "-day2", "-day2-restore", "-restore"):
        assert f'"${{GL_WORK}}{suffix}"' in text
    assert "-day2-backups" not in text.split("remove_gl_files() {")[1].split("\n}\n")[0].replace(
        "(WORK_DIR-day2-backups)", "")
    assert 'rm -f -- "${GL_DEPLOY_ETC}/versions.json"' in text and "/CHANGELOG" in text


def test_standalone_render_is_never_removed(tmp_path: Path) -> None:
    bundle = tmp_path / "gl-offline"
    bundle.mkdir()
    (bundle / "settings.env").write_text("GL_SETTINGS_FORMAT='1'\n")
    (bundle / ".gl-render").write_text("gldeploy scripts.render marker v1\n")
    assert "GL_WORK=''\n" in render(tmp_path, bundle)


def test_sandbox_never_names_a_work_dir(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "settings.env").write_text("GL_SETTINGS_FORMAT='1'\n")
    assert "GL_WORK=''\n" in render(tmp_path, bundle, root=str(tmp_path / "root"))


def test_remove_gl_files_runs_in_a_sandbox(tmp_path: Path) -> None:
    """The function itself, on a sandbox copy of the paths: versions.json and the tool dirs go, the
    CHANGELOG gets its line, the backups stay."""
    text = render(tmp_path, tmp_path / "nothing")
    body = "remove_gl_files() {" + text.split("remove_gl_files() {")[1].split("\n}\n")[0] + "\n}\n"
    etc, work = tmp_path / "etc/gl-deploy", tmp_path / "var/lib/gl-deploy"
    etc.mkdir(parents=True)
    (etc / "versions.json").write_text("{}")
    (etc / "CHANGELOG").write_text("old line\n")
    for d in ("", "-doctor", "-day2", "-day2-restore", "-restore", "-day2-backups"):
        Path(f"{work}{d}").mkdir(parents=True)
        Path(f"{work}{d}/f").write_text("x")
    subprocess.run(["bash", "-c", f'GL_DEPLOY_ETC="$1" GL_WORK="$2" NAME=k3s-uninstall.sh\n{body}remove_gl_files', "t", str(etc), str(work)],
                   check=True)
    assert not (etc / "versions.json").exists()
    assert (etc / "CHANGELOG").read_text().splitlines()[-1].endswith("k3s uninstalled (k3s-uninstall.sh)")
    assert [p.name for p in sorted(work.parent.iterdir())] == ["gl-deploy-day2-backups"]
