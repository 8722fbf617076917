"""`scripts` collection: render standalone phase scripts for offline hosts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection, Context

from gldeploy import render
from gldeploy.errors import ConfigError, guarded
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, load_settings


@gl_task(name="render",
      help={"env": COMMON_HELP["env"], "set": COMMON_HELP["set"],
            "out": "Directory to write (new, empty, or an earlier render of this tool)",
            "with_artifacts": "Also stage the k3s release (binary, sha256sum list, airgap images) into it",
            "sample_image": COMMON_HELP["sample_image"]},
      iterable=["set_"])
@guarded
def render_(c: Context, out: str = "", env: str = DEFAULT_ENV, set_: Any = None, with_artifacts: bool = False,
            sample_image: bool = False) -> None:
    """Render standalone scripts (libraries inlined, settings baked in) with README and SHA256SUMS."""
    if not out:
        raise ConfigError("--out is required: the directory to write, e.g. --out dist/single")
    loaded = load_settings(env, set_ or [])
    result = render.render_standalone(loaded, Path(out), with_artifacts=with_artifacts,
                                      sample_image=sample_image)
    if not result.changed and not result.removed:
        print(f"{out}: no change ({len(result.unchanged)} files already up to date)")
        return
    print(f"{out}: {len(result.changed)} file(s) written, {len(result.unchanged)} unchanged, "
          f"{len(result.removed)} stale removed; k3s artifacts: {result.k3s_mode}")
    for rel in result.changed:
        print(f"  wrote {rel}")
    print(f"verify on the host: cd {out} && sha256sum -c SHA256SUMS; then read README.txt")


ns = Collection("scripts")
ns.add_task(render_)
