"""invoke tasks: build the lab's Debian 12 vagrant-libvirt box (`box.build`)."""
from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context

from gldeploy.errors import guarded
from gldeploy.lab import box as boxlib
from gldeploy.settings import lab_options
from gldeploy.tasks import gl_task


def default_box_name() -> str:
    """Box name: GL_LAB_BOX from the environment (e.g. a catalogue box), else the local build."""
    return lab_options().box or boxlib.DEFAULT_BOX


@gl_task(help={"name": "Box name to add to Vagrant (default: $GL_LAB_BOX or gldeploy/debian12)",
            "force": "Rebuild even when the cached box matches its inputs"})
@guarded
def build(c: Context, name: str = "", force: bool = False) -> None:
    """Build the Debian 12 lab box with mmdebstrap (cached by an input hash) and vagrant box add it."""
    result = boxlib.ensure_box(name or default_box_name(), force=force)
    state = "built" if result.built else "cache hit"
    print(f"box {result.name}: {state}, {'added' if result.added else 'already added'}, "
          f"{result.size_bytes / 1e6:.0f} MB, key {result.key}, {result.seconds:.1f} s ({result.path})")


ns = Collection("box")
ns.add_task(build)
