"""`cluster` collection: initialise HA cluster nodes by role."""
from __future__ import annotations

from typing import Any

from invoke import Collection, Context, task

from gldeploy import plan
from gldeploy.errors import ConfigError, guarded
from gldeploy.tasks import COMMON_HELP, run_phases

CLUSTER_ENV = "env/cluster.env"
ROLES = tuple(r for r in plan.ROLES if r != "single")  # the roles of a cluster node
FIRST_SERVER_PHASES = ("01_pre_install_check", "02_init_control_plane")


@task(help={**{k: v for k, v in COMMON_HELP.items() if k != "role"},
            "env": f"Env file with the settings (default {CLUSTER_ENV})",
            "role": "Node role to initialise: first-server (01 + 02_init_control_plane), server or agent",
            "hosts": "Comma list of hosts or ssh aliases, or 'local' (default: the first CONTROL_PLANE_IPS "
                     "address for first-server)"},
      iterable=["set_"])
@guarded
def init(c: Context, role: str = "", env: str = CLUSTER_ENV, set_: Any = None, hosts: str = "",
         dry_run: bool = False, json_report: str = "", sample_image: bool = False) -> None:
    """Initialise a k3s cluster node in the given role (first-server runs 01 and 02)."""
    if role not in ROLES:
        raise ConfigError(f"--role {role!r} is not valid; expected one of: {', '.join(ROLES)} "
                          f"(e.g. invoke cluster.init --role first-server)")
    if role != "first-server":
        raise ConfigError(f"--role {role}: not available yet: arrives with the HA cluster work; "
                          f"only --role first-server works today")
    run_phases(FIRST_SERVER_PHASES, env=env, set_=set_ or [], hosts=hosts, dry_run=dry_run,
               json_report=json_report, role=role, sample_image=sample_image, first_server_only=True)


ns = Collection("cluster")
ns.add_task(init)
