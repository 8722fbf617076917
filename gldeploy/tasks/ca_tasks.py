"""`invoke ca.init`: the site's internal CA and the registry's server certificate (gldeploy/site/ca.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Collection, Context

from gldeploy.errors import guarded
from gldeploy.site import ca, stage
from gldeploy.tasks import COMMON_HELP, DEFAULT_ENV, gl_task, load_settings


@gl_task(name="init", help={"env": COMMON_HELP["env"], "set": COMMON_HELP["set"],
                            "out": "CA directory (default SITE_CA_DIR): ca.crt, ca.key (0600), registry.crt, "
                                   "registry.key (0600)",
                            "ca_cert": "The site's own CA certificate (PEM) to issue from, instead of a new CA",
                            "ca_key": "The site's own CA key (PEM; read, never copied)",
                            "days": "Validity of the registry certificate in days (default 825)"},
         iterable=["set_"])
@guarded
def init(c: Context, env: str = DEFAULT_ENV, set_: Any = None, out: str = "", ca_cert: str = "",
         ca_key: str = "", days: int = 825) -> None:
    """Create the site CA (or take the site's own) and issue the registry certificate (idempotent)."""
    loaded = load_settings(env, set_ or [])
    target = Path(out or loaded.site_ca_dir or "site-ca").expanduser()
    issued = ca.init(target, stage.registry_names(loaded), days=days,
                     ca_cert=Path(ca_cert).expanduser() if ca_cert else None,
                     ca_key=Path(ca_key).expanduser() if ca_key else None)
    print(f"ca.init: {issued.outcome}: {issued.reason}")
    print(f"  CA certificate: {issued.ca_cert}\n  registry certificate: {issued.cert} (key {issued.key}, 0600)")
    print(f"  set SITE_CA_DIR={target} and REGISTRY_CA_FILE={issued.ca_cert}; the bastion phases "
          f"(invoke site.deploy) distribute the CA to every node")


ns = Collection("ca")
ns.add_task(init, default=False)
