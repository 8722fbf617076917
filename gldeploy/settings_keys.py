"""The settings key table: every key once, with its type, default, doc and example.

docs/configuration.md and the ``--help`` texts are generated from this table (``invoke settings.docs``);
gldeploy.settings loads and validates values against it. Field ``foo_bar`` is env key ``FOO_BAR``.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import keytypes as t
from .sequences import TOPOLOGIES, Topology


def key(default: str | None, parse: t.Parser, doc: str, example: str = "", *, secret: bool = False,
        type_name: str = "string") -> Any:
    """Declare a settings key. `default=None` means required."""
    meta = {"parse": parse, "doc": doc, "example": example or (default or ""), "raw_default": default,
            "secret": secret, "type": type_name}
    value = parse(default) if default is not None else None
    return field(default=value, metadata=meta)


def _optional_cidr(value: str) -> str:
    return t.cidr(value) if value else ""


_CRON_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
                ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
                ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(text)
    return int(text)


def cron(value: str) -> str:
    """A cron schedule as k3s reads it (robfig/cron standard spec): five fields or a @macro."""
    expected = ("a cron schedule such as '0 */12 * * *' (minute hour day-of-month month day-of-week), "
                "@daily/@hourly/... or '@every 6h'")
    if value in _CRON_MACROS or re.fullmatch(r"@every ([0-9]+(\.[0-9]+)?(h|m|s|ms))+", value):
        return value
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"{expected}; got {len(fields)} field(s)")
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            span, _, step = item.partition("/")
            try:
                if step and (not step.isdigit() or int(step) < 1):
                    raise ValueError(step)
                if span != "*":
                    first, _, last = span.partition("-")
                    if _cron_value(first, low, high, names) > (_cron_value(last, low, high, names) if last else high):
                        raise ValueError(span)
            except ValueError:
                raise ValueError(f"{expected}; {item!r} is not a valid {what} ({low}-{high})") from None
    return value


_OPTIONAL_HOSTNAME = t.pattern(r"|([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                               "a lower-case DNS name such as k3s-api.gov.local, or empty")
_TIMEZONE = t.pattern(r"UTC|[A-Z][A-Za-z_+-]*(/[A-Za-z0-9_+-]+){1,2}", "a tz database name such as UTC or "
                      "Asia/Taipei (see timedatectl list-timezones)")


@dataclass(frozen=True)
class Settings:
    """Validated, typed settings. Field `foo_bar` is env key FOO_BAR."""

    topology: Topology = key("single", t.choice(*TOPOLOGIES), "single: one k3s server; ha: an odd number "
                        "(>= 3) of servers with embedded etcd behind API_VIP", "ha", type_name="enum")
    k3s_version: str = key("v1.28.3+k3s2", t.K3S_VERSION, "Pinned k3s release", type_name="version")
    k3s_sha256: str = key("", t.SHA256, "Expected sha256 of the k3s binary; when set it must match as well "
                          "as the release's sha256sum list", "3bd0...(64 hex)", type_name="sha256")
    k3s_artifacts_dir: str = key("", t.PATH, "Local directory laid out like a k3s release (k3s, "
                                 "sha256sum-amd64.txt, optional k3s-airgap-images-amd64.tar*); empty = "
                                 "download from K3S_RELEASE_URL", "/media/usb/k3s-v1.28.3", type_name="path")
    k3s_release_url: str = key("https://github.com/k3s-io/k3s/releases/download", t.URL,
                               "Base URL of k3s releases (the version is appended, '+' as %2B); "
                               "plain http:// (other than to this machine) only together with K3S_SHA256",
                               type_name="url")
    k3s_arch: str = key("amd64", t.choice("amd64", "arm64"), "CPU architecture of the hosts", type_name="enum")
    cluster_cidr: str = key("10.42.0.0/16", t.cidr, "Pod network (k3s cluster-cidr)", type_name="cidr")
    service_cidr: str = key("10.43.0.0/16", t.cidr, "Service network (k3s service-cidr)", type_name="cidr")
    control_plane_ips: tuple[str, ...] = key(None, t.node_ip_list, "k3s server addresses, the first one "
                                             "is the first server; unicast, not loopback (--hosts local "
                                             "targets this machine)", "192.168.56.10", type_name="ip list")
    worker_ips: tuple[str, ...] = key("", t.node_ip_list, "k3s agent addresses", "192.168.56.21,192.168.56.22",
                                      type_name="ip list")
    api_vip: str = key("", t.optional_node_ip, "Virtual IP of the API (HA); added to tls-san",
                       "192.168.56.100", type_name="ip")
    api_port: int = key("6443", t.integer(1, 65535), "k3s API / supervisor port", type_name="port")
    k3s_disable: tuple[str, ...] = key("", t.word_list, "Packaged k3s components to disable (coredns, "
                                       "servicelb, traefik, local-storage, metrics-server; runtimes from "
                                       "v1.28.5+k3s1/v1.29.0+k3s1); keep traefik and servicelb, which "
                                       "publish the backend Ingress on ports 80/443",
                                       "local-storage,metrics-server", type_name="list")
    secrets_encryption: bool = key("true", t.boolean, "Encrypt Secrets at rest (k3s secrets-encryption)",
                                   type_name="bool")
    k3s_token_file: str = key("", t.PATH, "File (mode 0600) holding the cluster join token: "
                              "a password (servers and agents) or a K10<CA hash>::server:<password> token "
                              "(joining nodes only); empty = k3s generates one on the first server",
                              "/root/gl/k3s-token", secret=True, type_name="path")
    namespace: str = key("gov-native", t.DNS_LABEL, "Namespace of the GL-Native Execution Backend",
                         type_name="dns label")
    backend_version: str = key("v1.1", t.BACKEND_VERSION, "Backend version (image tag, /version answer)",
                               type_name="version")
    backend_image: str = key("gl-native/execution-backend", t.IMAGE, "Backend image repository (no tag), or "
                             "repo@sha256:<digest> to pin the image (BACKEND_VERSION then only labels it)",
                             "registry.gov.local:5000/gov-native/execution-backend", type_name="image")
    backend_image_archive: str = key("", t.PATH, "The site's own OCI or docker archive of BACKEND_IMAGE "
                                     "(docker save / skopeo copy oci-archive:...), shipped in the bundle's "
                                     "artifacts/images and imported on the deploying host; empty = the sample "
                                     "image (lab) or a registry pull", "/media/usb/execution-backend-v1.1.tar",
                                     type_name="path")
    backend_replicas: int = key("2", t.integer(1, 50), "Backend replicas", type_name="int")
    backend_ingress_host: str = key("backend.gov-native.local", t.HOSTNAME, "Host name of the backend "
                                    "Ingress (Traefik)", type_name="hostname")
    backend_tls_secret: str = key("", t.pattern(r"|[a-z0-9]([-a-z0-9.]*[a-z0-9])?", "a Secret name (DNS "
                                  "subdomain) or empty"), "kubernetes.io/tls Secret in NAMESPACE for the backend "
                                  "Ingress (issued from the internal CA); empty = no TLS", "gl-backend-tls",
                                  type_name="name")
    registry: str = key("", t.HOSTPORT, "Private registry host[:port] for images; empty = none",
                        "registry.gov.local:5000", type_name="host:port")
    registry_user: str = key("", t.basic_auth_user, "Registry user (basic auth); no ':'", "deploy")
    registry_password_file: str = key("", t.PATH, "File (mode 0600) holding the registry password",
                                      "/root/gl/registry-password", secret=True, type_name="path")
    registry_ca_file: str = key("", t.PATH, "CA certificate (PEM) that signed the registry's TLS "
                                "certificate", "/root/gl/ca.crt", type_name="path")
    # air-gapped site services on a bastion host (docs/airgap.md "Bastion")
    registry_kind: str = key("distribution", t.choice("distribution", "harbor"), "The site registry: "
                             "distribution (Docker Distribution v2 run on BASTION_IP by the bastion phases) or "
                             "harbor (an existing Harbor; REGISTRY is its endpoint, REGISTRY_PROJECT its project)",
                             "harbor", type_name="enum")
    registry_project: str = key("", t.pattern(r"|[a-z0-9]+([._-][a-z0-9]+)*", "a project name such as "
                                "gl-native, or empty"), "Project (path prefix) in the registry every mirrored "
                                "image lives under (Harbor: required); empty = the registry root",
                                "gl-native", type_name="name")
    bastion_ip: str = key("", t.optional_node_ip, "Bastion host running the site services (registry, NTP, "
                          "DNS, CA distribution) for an air-gapped site; empty = no bastion",
                          "192.168.56.5", type_name="ip")
    site_subnet: str = key("", _optional_cidr, "Site network allowed to use the bastion's NTP and DNS "
                           "servers; empty = the /24 of BASTION_IP", "192.168.56.0/24", type_name="cidr")
    site_ca_dir: str = key("", t.PATH, "Directory written by 'invoke ca.init': ca.crt, registry.crt and "
                           "registry.key (0600); the bastion serves the registry with them",
                           "/root/gl/site-ca", type_name="path")
    site_packages_dir: str = key("", t.PATH, "Directory of .deb files the bastion installs offline "
                                 "(docker-registry, apache2-utils, skopeo, chrony, dnsmasq and their "
                                 "dependencies, from 'apt-get download')", "/media/usb/debs", type_name="path")
    site_images_dir: str = key("", t.PATH, "Directory of OCI image archives (*.oci.tar, each naming its "
                               "image in io.containerd.image.name) the bastion imports into the registry",
                               "/media/usb/images", type_name="path")
    site_timezone: str = key("UTC", _TIMEZONE, "Time zone of every node and the bastion (a tz database "
                             "name); preflight checks each node uses it", "Asia/Taipei", type_name="time zone")
    site_ntp_port: int = key("123", t.integer(1, 65535), "UDP port of the bastion's NTP server (chrony)",
                             type_name="port")
    site_max_clock_skew_ms: int = key("500", t.integer(1, 3600000), "Largest clock offset from the site NTP "
                                      "server a node may have, in milliseconds", type_name="int")
    site_dns: str = key("dnsmasq", t.choice("dnsmasq", "hosts"), "How nodes resolve the site names: dnsmasq "
                        "on the bastion (nodes' resolver), or hosts (the names written into every /etc/hosts)",
                        "hosts", type_name="enum")
    site_dns_port: int = key("53", t.integer(1, 65535), "Port of the bastion's DNS server (dnsmasq)",
                             type_name="port")
    site_api_name: str = key("", _OPTIONAL_HOSTNAME, "DNS name of the Kubernetes API the site DNS serves "
                             "(API_VIP, else the first server); added to the names the site resolves",
                             "k3s-api.gov.local", type_name="hostname")
    ssh_user: str = key("root", t.posix_user, "SSH user on the hosts, a POSIX user name (sudo is used "
                        "when not root)", "vagrant", type_name="user name")
    ssh_key: str = key("", t.PATH, "SSH private key (a path without control "
                       "characters, not starting with '-'); empty = ssh's own defaults", "~/.ssh/id_ed25519",
                       type_name="path")
    ssh_config: str = key("", t.PATH, "ssh_config file to use (Host aliases, ProxyJump "
                          "bastions); a path without control characters, not starting with '-'",
                          "vagrant/.ssh-config", type_name="path")
    min_cpu: int = key("0", t.integer(0), "Minimum CPUs; 0 = role default (2 single, 4 server, 8 worker)",
                       "1", type_name="int")
    min_memory_mb: int = key("0", t.integer(0), "Minimum RAM in MiB; 0 = role default (4096 single, "
                             "8192 server, 16384 worker)", "900", type_name="int")
    min_disk_gb: int = key("0", t.integer(0), "Minimum free GiB under /var/lib/rancher; 0 = role default "
                           "(50 single, 100 server, 200 worker)", "5", type_name="int")
    rollout_timeout: int = key("300", t.integer(1, 3600), "Seconds to wait for backend rollout",
                               type_name="seconds")
    health_timeout: int = key("180", t.integer(1, 3600), "Seconds to wait for node Ready and pods",
                              type_name="seconds")
    etcd_snapshot_schedule: str = key("0 */12 * * *", cron, "When the servers of a cluster (TOPOLOGY=ha, "
                                      "embedded etcd) take an etcd snapshot (k3s etcd-snapshot-schedule-cron)",
                                      "0 */6 * * *", type_name="cron")
    etcd_snapshot_retention: int = key("5", t.integer(1, 1000), "How many scheduled etcd snapshots each "
                                       "server keeps (k3s etcd-snapshot-retention)", type_name="int")
    cni: str = key("flannel", t.choice("flannel", "calico", "cilium"), "Cluster network plugin (HA); "
                   "calico/cilium make 02 set flannel-backend: none and disable-network-policy at install "
                   "time, and 04_install_cni applies the plugin's manifest from the bundle", "calico",
                   type_name="enum")
    cilium_kube_proxy_replacement: bool = key("false", t.boolean, "With CNI=cilium: Cilium replaces "
                                              "kube-proxy (k3s disable-kube-proxy)", type_name="bool")
    # HA API VIP: HAProxy + Keepalived (docs/cluster.md)
    api_vip_prefix: int = key("24", t.integer(8, 30), "Prefix length of the load balancer nodes' network; "
                              "API_VIP must lie in the nodes' subnet", type_name="int")
    lb_ips: tuple[str, ...] = key("", t.node_ip_list, "Dedicated load balancer nodes (HAProxy + Keepalived); "
                                  "empty = co-located on CONTROL_PLANE_IPS", "192.168.57.5,192.168.57.6",
                                  type_name="ip list")
    lb_priorities: tuple[int, ...] = key("", t.integer_list(1, 254), "VRRP priority per load balancer node, "
                                         "all different; empty = 150,140,130,...", "150,140,130",
                                         type_name="int list")
    lb_port: int = key("0", t.integer(0, 65535), "HAProxy frontend port of the API VIP; 0 = API_PORT on "
                       "dedicated nodes, API_PORT+10000 co-located (never k3s' own port)", "16443",
                       type_name="port")
    lb_interface: str = key("", t.pattern(r"|[A-Za-z0-9_.:-]{1,15}", "an interface name such as eth1"),
                            "Interface carrying the node addresses and the VIP (HA), e.g. eth1", "eth1",
                            type_name="interface")
    lb_vrrp_router_id: int = key("51", t.integer(1, 255), "VRRP virtual router id, unique on the segment",
                                 type_name="int")
    lb_vrrp_password_file: str = key("", t.PATH, "File (mode 0600) holding the VRRP password (1-8 "
                                     "characters); needed for TOPOLOGY=ha", "/root/gl/vrrp-password",
                                     secret=True, type_name="path")
    lb_preempt: bool = key("false", t.boolean, "A recovered higher-priority node takes the VIP back (each "
                           "move breaks watches and agent tunnels, so off by default)", type_name="bool")
    lb_advert_int: int = key("1", t.integer(1, 255), "Seconds between VRRP adverts", type_name="seconds")
    lb_packages_dir: str = key("", t.PATH, "Directory of haproxy and keepalived packages (.deb or .rpm, with "
                               "their dependencies) for load balancer nodes without package repositories; "
                               "shipped in the bundle (artifacts/lb-packages); empty = the OS repositories",
                               "/media/usb/lb-debs", type_name="path")
    work_dir: str = key("/var/lib/gl-deploy", t.work_dir, "Directory on each host for scripts, env and "
                        "artifacts; its contents are replaced on every deploy, so give it a dedicated "
                        "directory: absolute, normalised, not a system, home or k3s directory (one "
                        "holding other files is refused)", type_name="path")

    # where each value came from (not a key)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # notes for the operator (e.g. a GL_ variable that looks like a misspelt key); tasks print them
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def origin(self, env_key: str) -> str:
        return self.origins.get(env_key, "default")

    def to_env(self) -> dict[str, str]:
        """All keys as the strings bash sees (lists comma-joined, bools true/false)."""
        out: dict[str, str] = {}
        for f in key_fields():
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(str(item) for item in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            out[f.name.upper()] = "" if value is None else str(value)
        return out

    @property
    def first_server(self) -> str:
        return self.control_plane_ips[0]


def key_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Settings) if "parse" in f.metadata]


KEYS = {f.name.upper(): f.metadata for f in key_fields()}
