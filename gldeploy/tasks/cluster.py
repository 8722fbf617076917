"""`cluster` collection: the HA sequence (gldeploy/sequences.py) by role or whole.

init --role R: one role's hosts up to their install phase; join: the joining servers one at a time,
then the agents together; cni: 04 on the first server; deploy: the whole sequence on every host.
"""
from __future__ import annotations

from typing import Any

from invoke import Collection, Context

from gldeploy import sequences
from gldeploy.errors import ConfigError, guarded
from gldeploy.tasks import COMMON_HELP, gl_task, run_phases

CLUSTER_ENV = "env/cluster.env"
ROLES = sequences.roles_of("ha")
HA = sequences.sequence("ha")
_HELP = {**{k: v for k, v in COMMON_HELP.items() if k != "role"},
         "env": f"Env file with the settings (default {CLUSTER_ENV})"}


def init_phases(role: sequences.Role) -> tuple[str, ...]:
    """The phases a role runs up to and including its install phase (the first that needs k3s)."""
    mine = [p for p in HA if p.runs_on(role)]
    last = next(i for i, p in enumerate(mine) if "k3s" in p.needs)
    return tuple(p.name for p in mine[:last + 1])


def _run(phases: tuple[str, ...], *, env: str, set_: Any, hosts: str, dry_run: bool, json_report: str,
         sample_image: bool, role: str = "", of_roles: tuple[sequences.Role, ...] = ()) -> None:
    run_phases(phases, env=env, set_=set_ or [], hosts=hosts, dry_run=dry_run, json_report=json_report,
               role=role, sample_image=sample_image, of_roles=of_roles)


@gl_task(help={**_HELP, "role": "Node role: first-server (01 + 02_init_control_plane), server (01 + 02, "
                                "joining through the VIP) or agent (01 + 03_join_worker_node)",
               "hosts": "Comma list of hosts or ssh aliases, or 'local' (default: the hosts of that role in "
                        "CONTROL_PLANE_IPS / WORKER_IPS)"},
         iterable=["set_"])
@guarded
def init(c: Context, role: str = "", env: str = CLUSTER_ENV, set_: Any = None, hosts: str = "",
         dry_run: bool = False, json_report: str = "", sample_image: bool = False) -> None:
    """Initialise cluster nodes of one role: check them, then install or join k3s."""
    if role not in ROLES:
        raise ConfigError(f"--role {role!r} is not valid; expected one of: {', '.join(ROLES)} "
                          f"(e.g. invoke cluster.init --role first-server)")
    chosen = next(r for r in ROLES if r == role)
    _run(init_phases(chosen), env=env, set_=set_, hosts=hosts, dry_run=dry_run, json_report=json_report,
         sample_image=sample_image, role=role, of_roles=(chosen,))


@gl_task(help=_HELP, iterable=["set_"])
@guarded
def join(c: Context, env: str = CLUSTER_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
         json_report: str = "", sample_image: bool = False) -> None:
    """Join the other servers (one at a time) and then the workers (together) through the VIP."""
    phases = tuple(dict.fromkeys(init_phases("server") + init_phases("agent")))
    _run(phases, env=env, set_=set_, hosts=hosts, dry_run=dry_run, json_report=json_report,
         sample_image=sample_image, of_roles=("server", "agent"))


@gl_task(help=_HELP, iterable=["set_"])
@guarded
def cni(c: Context, env: str = CLUSTER_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
        json_report: str = "", sample_image: bool = False) -> None:
    """Install or verify the chosen CNI from the first server (04_install_cni)."""
    _run(("04_install_cni",), env=env, set_=set_, hosts=hosts, dry_run=dry_run, json_report=json_report,
         sample_image=sample_image, of_roles=("first-server",))


@gl_task(help=_HELP, iterable=["set_"])
@guarded
def deploy(c: Context, env: str = CLUSTER_ENV, set_: Any = None, hosts: str = "", dry_run: bool = False,
           json_report: str = "", sample_image: bool = False) -> None:
    """Run the whole cluster sequence (01 to 06) on every host in order."""
    _run(sequences.names("ha"), env=env, set_=set_, hosts=hosts, dry_run=dry_run, json_report=json_report,
         sample_image=sample_image)


ns = Collection("cluster")
for _task in (init, join, cni, deploy):
    ns.add_task(_task)
