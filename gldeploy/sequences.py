"""Phase sequences as data: the one table every consumer reads.

Each topology names its ordered phases by the documented script names; each phase says on which
roles it runs, whether servers take it one at a time (etcd joins), whether it takes ``--role`` and
what it needs staged in the bundle. The plan, the invoke tasks, the per-host bundle, the rendered
standalone directory and its README.txt, the lab and docs/architecture.md all derive from this table;
nothing globs ``NN_*.sh``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["single", "first-server", "server", "agent", "lb"]
Topology = Literal["single", "ha"]
# what a phase needs in the bundle: k3s release artifacts, the backend manifests/chart, the backend
# image archive (when one is shipped), the CNI manifests, the load balancer files (lb/<address>/)
Need = Literal["k3s", "backend", "images", "cni", "lb"]

ROLES: tuple[Role, ...] = get_args(Role)
TOPOLOGIES: tuple[Topology, ...] = get_args(Topology)
SERVER_ROLES: frozenset[Role] = frozenset({"single", "first-server", "server"})


@dataclass(frozen=True)
class Phase:
    """One numbered phase script and where it runs."""

    name: str                      # script name without .sh, as the architecture documents it
    roles: frozenset[Role]         # the roles of the hosts it runs on
    summary: str                   # one line for README.txt, --help and the docs table
    takes_role: bool = True        # the plan passes --role <role>
    one_at_a_time: bool = False    # hosts take it one after another (etcd members join singly)
    needs: tuple[Need, ...] = ()   # what must be staged in the bundle
    # extra arguments per role, as templates the plan fills in (plan.ARG_VALUES: {server_url} is the
    # API VIP endpoint https://API_VIP:LB_PORT, {token_file} the join token in the bundle)
    args: tuple[tuple[Role, tuple[str, ...]], ...] = ()

    @property
    def script(self) -> str:
        return f"{self.name}.sh"

    def runs_on(self, role: Role) -> bool:
        return role in self.roles

    def args_for(self, role: Role) -> tuple[str, ...]:
        """The argument templates this phase takes on a host of this role (empty: none)."""
        return next((args for r, args in self.args if r == role), ())

    @property
    def joins(self) -> frozenset[Role]:
        """The roles that join the cluster in this phase (they take the join token)."""
        return frozenset(r for r, args in self.args if "{token_file}" in args)


_SINGLE: frozenset[Role] = frozenset({"single"})
_FIRST: frozenset[Role] = frozenset({"first-server"})
_CLUSTER_SERVERS: frozenset[Role] = frozenset({"first-server", "server"})
_CLUSTER_ALL: frozenset[Role] = frozenset({"first-server", "server", "agent"})
_JOIN_ARGS = ("--server-url", "{server_url}", "--token-file", "{token_file}")

SEQUENCES: dict[Topology, tuple[Phase, ...]] = {
    "single": (
        Phase("01_pre_install_check", _SINGLE, "check the host is ready for k3s (read-only)",
              needs=("images",)),
        Phase("02_install_k3s", _SINGLE, "install the pinned, verified k3s release as the single server",
              needs=("k3s",)),
        Phase("03_deploy_gl_backend", _SINGLE, "deploy the GL-Native Execution Backend into its namespace",
              takes_role=False, needs=("backend", "images")),
        Phase("04_health_check", _SINGLE, "check k3s and the backend are healthy (read-only)",
              takes_role=False),
    ),
    "ha": (
        Phase("01_pre_install_check", _CLUSTER_ALL | {"lb"}, "check every node is ready for its role (read-only)",
              needs=("images",)),
        Phase("02_init_control_plane", _CLUSTER_SERVERS | {"lb"}, "install the API VIP load balancer (HAProxy + "
              "Keepalived) and k3s on the servers: the first with cluster-init, the others join through the "
              "API VIP; dedicated load balancer nodes (role lb) get the load balancer only",
              one_at_a_time=True, needs=("k3s", "lb"), args=(("server", _JOIN_ARGS),)),
        Phase("03_join_worker_node", frozenset({"agent"}), "join the workers (k3s agents) through the API VIP",
              needs=("k3s",), args=(("agent", _JOIN_ARGS),)),
        Phase("04_install_cni", _FIRST, "install or verify the chosen CNI (flannel, calico, cilium)",
              needs=("cni",)),
        Phase("05_deploy_gl_backend", _FIRST, "deploy the GL-Native Execution Backend into its namespace",
              takes_role=False, needs=("backend", "images")),
        Phase("06_health_check", _CLUSTER_SERVERS, "check every server: its API directly and through the "
              "VIP, and the settings all servers must share (the controller compares them: config drift); "
              "the cluster and the backend (read-only)", takes_role=False,
              args=(("first-server", ("--server-url", "{server_url}")), ("server", ("--server-url", "{server_url}")))),
    ),
}


@dataclass(frozen=True)
class Tool:
    """A script every bundle carries beside its phases (not a numbered phase): doctor is read-only,
    the day-2 tools (backup, restore, certs, upgrade) change the host only when asked to."""

    name: str
    summary: str

    @property
    def script(self) -> str:
        return f"{self.name}.sh"


TOOLS: tuple[Tool, ...] = (
    Tool("doctor", "diagnose this node (read-only): each finding with symptom, cause and fix; --json; "
                   "--bundle DIR writes a support archive with every secret redacted"),
    Tool("checklist", "the air-gapped site's dependency checklist (read-only): images, charts, packages, "
                      "registry + auth, NTP, time zone, DNS, certificates, disk, node ports; each with its "
                      "fix; --json"),
    Tool("backup", "back up this server: datastore (SQLite online backup or etcd snapshot), token, config "
                   "and cluster CA into one directory with manifest.json + SHA256SUMS (--out DIR)"),
    Tool("restore", "restore this server from a backup directory (--from DIR); refuses a corrupt, truncated "
                    "or other-cluster backup and a missing token, with the reason"),
    Tool("certs", "certificate expiry report (k3s' certificates, the internal CA; --threshold DAYS, --json); "
                  "--rotate renews the leaf certificates by k3s' procedure (stop, rotate, start)"),
    Tool("upgrade", "upgrade k3s on this node (--to VERSION): verified release, pre-upgrade backup, previous "
                    "binary and config kept, health check, automatic rollback; --rollback, --status"),
)


SiteRole = Literal["bastion", "node"]
SITE_ROLES: tuple[SiteRole, ...] = get_args(SiteRole)


@dataclass(frozen=True)
class SitePhase:
    """A phase of the topology-independent site sequence (scripts/bastion/): on the bastion, or on every
    k3s node whatever its role (before 01_pre_install_check)."""

    name: str
    on: SiteRole
    summary: str

    @property
    def script(self) -> str:
        return f"{self.name}.sh"


# the air-gapped site's services (docs/airgap.md "Bastion"): run by invoke site.deploy
BASTION: tuple[SitePhase, ...] = (
    SitePhase("01_site_check", "bastion", "check the bastion's bundle, packages, registry certificate and disk "
              "(read-only)"),
    SitePhase("02_site_services", "bastion", "install the site services from the bundle: packages, registry "
              "(TLS + htpasswd), images, chrony NTP server, dnsmasq, time zone"),
    SitePhase("03_site_node", "node", "make a node a site member: CA trust, registries.yaml, chrony client, "
              "time zone, site names, default route"),
)


def sequence(topology: Topology) -> tuple[Phase, ...]:
    """The ordered phases of a topology."""
    return SEQUENCES[topology]


def names(topology: Topology) -> tuple[str, ...]:
    return tuple(p.name for p in SEQUENCES[topology])


def phase(topology: Topology, name: str) -> Phase:
    """A phase of a topology by name; KeyError names the topology's phases."""
    for p in SEQUENCES[topology]:
        if p.name == name:
            return p
    raise KeyError(f"{name} is not a {topology} phase; {topology} runs {', '.join(names(topology))}")


def all_scripts() -> tuple[str, ...]:
    """Every phase script of every topology, in table order, each once."""
    return tuple(dict.fromkeys(p.script for seq in SEQUENCES.values() for p in seq))


def service_of(role: Role) -> str:
    """The systemd service of a role's k3s, as k3s' install.sh names it: k3s for a server (k3s.service,
    Type=notify, its k3s.service.env, /usr/local/bin/k3s-uninstall.sh), k3s-agent for an agent
    (k3s-agent.service, Type=exec, k3s-agent.service.env, k3s-agent-uninstall.sh). The bash side of the
    same rule is scripts/lib/k3s.sh k3s_use_role. A load balancer node (role lb) runs no k3s."""
    if role == "lb":
        raise ValueError("role lb runs no k3s: it has no k3s service")
    return "k3s-agent" if role == "agent" else "k3s"


def uninstall_of(role: Role) -> str:
    """The uninstall script the install leaves on a host of this role (k3s' name for it)."""
    return f"/usr/local/bin/{service_of(role)}-uninstall.sh"


def roles_of(topology: Topology) -> tuple[Role, ...]:
    """The roles a topology's hosts can have."""
    return ("single",) if topology == "single" else ("first-server", "server", "agent", "lb")
