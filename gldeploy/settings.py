"""The one settings object: defaults -> env file -> process environment (GL_<KEY>) -> CLI flags.

Every key is defined once below (type, default, doc, example); docs/configuration.md and the
``--help`` texts are generated from this table. This is the only module that reads os.environ.
"""
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import envfile
from . import keytypes as t
from .errors import ConfigError

ENV_PREFIX = "GL_"


def key(default: str | None, parse: t.Parser, doc: str, example: str = "", *, secret: bool = False,
        type_name: str = "string") -> Any:
    """Declare a settings key. `default=None` means required."""
    meta = {"parse": parse, "doc": doc, "example": example or (default or ""), "raw_default": default,
            "secret": secret, "type": type_name}
    value = parse(default) if default is not None else None
    return field(default=value, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Validated, typed settings. Field `foo_bar` is env key FOO_BAR."""

    topology: str = key("single", t.choice("single", "ha"), "single: one k3s server; ha: an odd number "
                        "(>= 3) of servers with embedded etcd behind API_VIP", "ha", type_name="enum")
    k3s_version: str = key("v1.28.3+k3s2", t.K3S_VERSION, "Pinned k3s release", type_name="version")
    k3s_sha256: str = key("", t.SHA256, "Expected sha256 of the k3s binary; when set it must match as well "
                          "as the release's sha256sum list", "3bd0...(64 hex)", type_name="sha256")
    k3s_artifacts_dir: str = key("", t.PATH, "Local directory laid out like a k3s release (k3s, "
                                 "sha256sum-amd64.txt, optional k3s-airgap-images-amd64.tar*); empty = "
                                 "download from K3S_RELEASE_URL", "/media/usb/k3s-v1.28.3", type_name="path")
    k3s_release_url: str = key("https://github.com/k3s-io/k3s/releases/download", t.URL,
                               "Base URL of k3s releases (the version is appended, '+' as %2B)",
                               type_name="url")
    k3s_arch: str = key("amd64", t.choice("amd64", "arm64"), "CPU architecture of the hosts", type_name="enum")
    cluster_cidr: str = key("10.42.0.0/16", t.cidr, "Pod network (k3s cluster-cidr)", type_name="cidr")
    service_cidr: str = key("10.43.0.0/16", t.cidr, "Service network (k3s service-cidr)", type_name="cidr")
    control_plane_ips: tuple[str, ...] = key(None, t.ip_list, "k3s server addresses, the first one is "
                                             "the first server", "192.168.56.10", type_name="ip list")
    worker_ips: tuple[str, ...] = key("", t.ip_list, "k3s agent addresses", "192.168.56.21,192.168.56.22",
                                      type_name="ip list")
    api_vip: str = key("", lambda v: t.ip(v) if v else "", "Virtual IP of the API (HA); added to tls-san",
                       "192.168.56.100", type_name="ip")
    api_port: int = key("6443", t.integer(1, 65535), "k3s API / supervisor port", type_name="port")
    k3s_disable: tuple[str, ...] = key("", t.word_list, "Packaged k3s components to disable; keep traefik "
                                       "and servicelb, which publish the backend Ingress on ports 80/443",
                                       "local-storage,metrics-server", type_name="list")
    secrets_encryption: bool = key("true", t.boolean, "Encrypt Secrets at rest (k3s secrets-encryption)",
                                   type_name="bool")
    k3s_token_file: str = key("", t.PATH, "File (mode 0600) holding the cluster join token; empty = k3s "
                              "generates one on the first server", "/root/gl/k3s-token", secret=True,
                              type_name="path")
    namespace: str = key("gov-native", t.DNS_LABEL, "Namespace of the GL-Native Execution Backend",
                         type_name="dns label")
    backend_version: str = key("v1.1", t.BACKEND_VERSION, "Backend version (image tag, /version answer)",
                               type_name="version")
    backend_image: str = key("gl-native/execution-backend", t.IMAGE, "Backend image repository (no tag)",
                             "registry.gov.local:5000/gov-native/execution-backend", type_name="image")
    backend_replicas: int = key("2", t.integer(1, 50), "Backend replicas", type_name="int")
    backend_ingress_host: str = key("backend.gov-native.local", t.HOSTNAME, "Host name of the backend "
                                    "Ingress (Traefik)", type_name="hostname")
    registry: str = key("", t.HOSTPORT, "Private registry host[:port] for images; empty = none",
                        "registry.gov.local:5000", type_name="host:port")
    registry_user: str = key("", t.text, "Registry user (basic auth)", "deploy")
    registry_password_file: str = key("", t.PATH, "File (mode 0600) holding the registry password",
                                      "/root/gl/registry-password", secret=True, type_name="path")
    registry_ca_file: str = key("", t.PATH, "CA certificate (PEM) that signed the registry's TLS "
                                "certificate", "/root/gl/ca.crt", type_name="path")
    ssh_user: str = key("root", t.text, "SSH user on the hosts (sudo is used when not root)", "vagrant")
    ssh_key: str = key("", t.PATH, "SSH private key; empty = ssh's own defaults", "~/.ssh/id_ed25519",
                       type_name="path")
    ssh_config: str = key("", t.PATH, "ssh_config file to use (Host aliases, ProxyJump bastions)",
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
    work_dir: str = key("/var/lib/gl-deploy", t.PATH, "Directory on each host for scripts, env and "
                        "artifacts; its contents are replaced on every deploy, so give it a dedicated "
                        "directory (one holding other files is refused)", type_name="path")

    # where each value came from (not a key)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def origin(self, env_key: str) -> str:
        return self.origins.get(env_key, "default")

    def to_env(self) -> dict[str, str]:
        """All keys as the strings bash sees (lists comma-joined, bools true/false)."""
        out = {}
        for f in key_fields():
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(value)
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


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name.upper(), KEYS, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else "; known keys: see docs/configuration.md"


def _parse_overrides(overrides: Iterable[str]) -> list[tuple[str, str, str]]:
    out = []
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set K3S_VERSION=v1.28.3+k3s2")
        out.append((name.strip(), value, f"--set {name.strip()}"))
    return out


def load(env_file: str | Path | None, *, environ: Mapping[str, str] | None = None,
         overrides: Iterable[str] = ()) -> Settings:
    """Build Settings from defaults < env file < GL_* environment < --set KEY=VALUE flags."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[str, str]] = {}  # KEY -> (value, origin)
    if env_file:
        for entry in envfile.parse_file(env_file):
            if entry.key not in KEYS:
                raise ConfigError(f"{entry.where}: unknown key {entry.key}{_suggest(entry.key)}")
            raw[entry.key] = (entry.value, entry.where)
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):] in KEYS:
            raw[name[len(ENV_PREFIX):]] = (value, f"environment {name}")
    for name, value, origin in _parse_overrides(overrides):
        if name not in KEYS:
            raise ConfigError(f"{origin}: unknown key {name}{_suggest(name)}")
        raw[name] = (value, origin)

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    source = str(env_file) if env_file else "the settings"
    for name, meta in KEYS.items():
        if name not in raw:
            if meta["raw_default"] is None:
                raise ConfigError(f"{source}: required key {name} is missing ({meta['doc']}); "
                                  f"add a line such as {name}={meta['example']}")
            continue
        value, origin = raw[name]
        try:
            values[name.lower()] = meta["parse"](value)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {name}={value!r} is invalid: expected {exc}") from None
        origins[name] = origin
    settings = Settings(**values, origins=origins)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Cross-key checks; each error names the key, where it was set, and the fix."""
    def at(name: str) -> str:
        return s.origin(name)

    pods, services = ipaddress.ip_network(s.cluster_cidr), ipaddress.ip_network(s.service_cidr)
    if pods.overlaps(services):
        raise ConfigError(f"{at('SERVICE_CIDR')}: SERVICE_CIDR {services} overlaps CLUSTER_CIDR {pods}; "
                          f"choose disjoint networks (defaults 10.42.0.0/16 and 10.43.0.0/16)")
    named = [("CONTROL_PLANE_IPS", ip) for ip in s.control_plane_ips]
    named += [("WORKER_IPS", ip) for ip in s.worker_ips]
    named += [("API_VIP", s.api_vip)] if s.api_vip else []
    seen: dict[str, str] = {}
    for name, addr in named:
        for net_name, net in (("CLUSTER_CIDR", pods), ("SERVICE_CIDR", services)):
            if ipaddress.ip_address(addr) in net:
                raise ConfigError(f"{at(name)}: {name} address {addr} is inside {net_name} {net}; node "
                                  f"addresses must be outside the pod and service networks")
        if addr in seen:
            raise ConfigError(f"{at(name)}: {name} address {addr} is also listed in {seen[addr]}; "
                              f"every host and the VIP need their own address")
        seen[addr] = name
    servers = len(s.control_plane_ips)
    if s.topology == "single" and servers != 1:
        raise ConfigError(f"{at('CONTROL_PLANE_IPS')}: TOPOLOGY=single needs exactly one CONTROL_PLANE_IPS "
                          f"address, got {servers}; use TOPOLOGY=ha for several servers")
    if s.topology == "ha":
        if servers < 3 or servers % 2 == 0:
            raise ConfigError(f"{at('CONTROL_PLANE_IPS')}: TOPOLOGY=ha needs an odd number of servers "
                              f"(3, 5, 7) for etcd quorum, got {servers}")
        if not s.api_vip:
            raise ConfigError(f"{at('TOPOLOGY')}: TOPOLOGY=ha needs API_VIP, the virtual IP in front of "
                              f"the servers; add e.g. API_VIP=192.168.56.100")
    if bool(s.registry_user) != bool(s.registry_password_file):
        raise ConfigError(f"{at('REGISTRY_USER')}: REGISTRY_USER and REGISTRY_PASSWORD_FILE go together; "
                          f"set both or neither")


def describe_keys() -> list[dict[str, str]]:
    """Rows for docs and --help: name, type, default, doc, example."""
    return [{"key": k, "type": m["type"], "default": "(required)" if m["raw_default"] is None
             else m["raw_default"], "doc": m["doc"], "example": m["example"]} for k, m in KEYS.items()]


@dataclass(frozen=True)
class LabOptions:
    """VM-lab knobs from the environment (the lab tasks' flags win over these)."""

    box: str  # GL_LAB_BOX: a catalogue box name instead of the locally built one
    accel: str  # GL_LAB_ACCEL: kvm or tcg, overriding KVM detection
    boot_timeout: str  # GL_LAB_BOOT_TIMEOUT: seconds Vagrant waits for each VM to boot (as given)
    vagrant_home: Path  # VAGRANT_HOME (default ~/.vagrant.d): where Vagrant keeps added boxes


def lab_options(environ: Mapping[str, str] | None = None) -> LabOptions:
    """Read GL_LAB_BOX / GL_LAB_ACCEL / GL_LAB_BOOT_TIMEOUT / VAGRANT_HOME (the only env reader)."""
    environ = os.environ if environ is None else environ
    return LabOptions(box=environ.get("GL_LAB_BOX", ""), accel=environ.get("GL_LAB_ACCEL", ""),
                      boot_timeout=environ.get("GL_LAB_BOOT_TIMEOUT", ""),
                      vagrant_home=Path(environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d"))
