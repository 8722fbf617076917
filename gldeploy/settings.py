"""The one settings object: defaults -> env file -> process environment (GL_<KEY>) -> CLI flags.

The keys are defined once in gldeploy/settings_keys.py (type, default, doc, example). This module
loads and checks them: every problem of the env file, the GL_* environment and the --set flags is
collected and reported in one ConfigError (exit 2), one line each, naming the key, where it was set
and the fix. This is the only module that reads os.environ.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import envfile
from . import keytypes as t
from .errors import ConfigError
from .settings_keys import KEYS, Settings, key_fields

__all__ = ["ENV_PREFIX", "KEYS", "LabOptions", "Settings", "describe_keys", "key_fields", "lab_options",
           "load", "validate"]

ENV_PREFIX = "GL_"
# GL_ variables the scripts, the bundle and the lab use themselves: never a near-miss of a key
_NOT_KEYS = ("GL_LAB", "GL_ROOT", "GL_BUNDLE_DIR", "GL_ENV_FILE", "GL_PHASE", "GL_JSON", "GL_SANDBOX",
             "GL_ROLE", "GL_BAKED", "GL_SETTINGS_", "GL_INSTALLED", "GL_CHANGED", "GL_PUBLIC_HOST")
Given = list[tuple[str, str, str]]  # (KEY, value as given, where it was set), lowest precedence first


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name.upper(), KEYS, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else "; known keys: see docs/configuration.md"


def _from_file(env_file: str | Path, given: Given, problems: list[str]) -> None:
    entries, found = envfile.scan_file(env_file)
    problems += found
    for entry in entries:
        if entry.key not in KEYS:
            problems.append(f"{entry.where}: unknown key {entry.key}{_suggest(entry.key)}")
        else:
            given.append((entry.key, entry.value, entry.where))


def _from_environment(environ: Mapping[str, str], given: Given, warnings: list[str]) -> None:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        key_name = name[len(ENV_PREFIX):]
        if key_name in KEYS:
            given.append((key_name, environ[name], f"environment {name}"))
        elif not name.startswith(_NOT_KEYS):
            close = difflib.get_close_matches(key_name, KEYS, n=1, cutoff=0.8)
            if close:
                warnings.append(f"environment {name} is not a settings key and is ignored; did you mean "
                                f"{ENV_PREFIX}{close[0]}? (rename it, or unset it)")


def _from_flags(overrides: Iterable[str], given: Given, problems: list[str]) -> None:
    seen: dict[str, str] = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        name = name.strip()
        origin = f"--set {name}"
        if not sep:
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. --set K3S_VERSION=v1.28.3+k3s2")
        elif name not in KEYS:
            problems.append(f"{origin}: unknown key {name}{_suggest(name)}")
        elif name in seen:
            problems.append(f"{origin}: set twice, --set {name}={seen[name]} and --set {name}={value} "
                            f"(a key set twice in an env file is refused too); keep one of them")
        else:
            seen[name] = value
            given.append((name, value, origin))


def load(env_file: str | Path | None, *, environ: Mapping[str, str] | None = None,
         overrides: Iterable[str] = ()) -> Settings:
    """Build Settings from defaults < env file < GL_* environment < --set KEY=VALUE flags.

    ConfigError lists every problem found (unknown keys, bad values, missing required keys, and the
    cross-key checks whose keys are valid), one per line.
    """
    environ = os.environ if environ is None else environ
    given: Given = []
    problems: list[str] = []
    warnings: list[str] = []
    if env_file:
        _from_file(env_file, given, problems)
    _from_environment(environ, given, warnings)
    _from_flags(overrides, given, problems)
    raw = {name: (value, origin) for name, value, origin in given}  # the highest precedence wins
    for name, value, origin in given:  # a bad value is reported even where a later source overrides it
        if raw[name][1] != origin:
            problems += _parse_problem(name, value, origin, f" (overridden by {raw[name][1]}; fix it here too)")

    values: dict[str, Any] = {}  # KEY -> parsed value, for every key that is set or has a default
    origins: dict[str, str] = {}
    source = str(env_file) if env_file else "the settings"
    for name, meta in KEYS.items():
        if name not in raw:
            if meta["raw_default"] is None:
                problems.append(f"{source}: required key {name} is missing ({meta['doc']}); "
                                f"add a line such as {name}={meta['example']}")
            else:
                values[name] = meta["parse"](meta["raw_default"])
            continue
        value, origin = raw[name]
        found = _parse_problem(name, value, origin)
        if found:
            problems += found
            continue
        values[name] = meta["parse"](value)
        origins[name] = origin
    problems += _cross_problems(values, lambda name: origins.get(name, "default"))
    _raise(problems, warnings)
    return Settings(**{k.lower(): v for k, v in values.items()}, origins=origins, warnings=tuple(warnings))


def _parse_problem(name: str, value: str, origin: str, note: str = "") -> list[str]:
    """[the message] when `value` is not a valid value of key `name`, else []."""
    try:
        KEYS[name]["parse"](value)
    except ValueError as exc:
        example = f"; e.g. {name}={KEYS[name]['example']}" if KEYS[name]["example"] else ""
        return [f"{origin}: {name}={value!r} is invalid: expected {exc}{example}{note}"]
    return []


def _raise(problems: list[str], warnings: Iterable[str] = ()) -> None:
    """One ConfigError listing every problem (and, as they may explain one, the warnings)."""
    notes = "".join(f"\n  warning: {w}" for w in warnings)
    if len(problems) == 1:
        raise ConfigError(problems[0] + notes)
    if problems:
        raise ConfigError(f"{len(problems)} problems in the settings; fix each of them (nothing was "
                          f"touched):\n" + "\n".join(f"  {p}" for p in problems) + notes)


def validate(s: Settings) -> None:
    """Cross-key checks of loaded settings; ConfigError lists each problem with key, origin and fix."""
    _raise(_cross_problems({f.name.upper(): getattr(s, f.name) for f in key_fields()}, s.origin))


def _cross_problems(v: Mapping[str, Any], at: Callable[[str], str]) -> list[str]:
    """Checks across keys; `v` holds only the keys whose value is valid, so each check runs when it can."""
    out: list[str] = []

    def has(*names: str) -> bool:
        return all(n in v for n in names)

    nets: list[tuple[str, ipaddress.IPv4Network]] = []
    if has("CLUSTER_CIDR", "SERVICE_CIDR"):
        pods, services = ipaddress.IPv4Network(v["CLUSTER_CIDR"]), ipaddress.IPv4Network(v["SERVICE_CIDR"])
        nets = [("CLUSTER_CIDR", pods), ("SERVICE_CIDR", services)]
        if pods.overlaps(services):
            out.append(f"{at('SERVICE_CIDR')}: SERVICE_CIDR {services} overlaps CLUSTER_CIDR {pods}; choose "
                       f"disjoint networks (defaults 10.42.0.0/16 and 10.43.0.0/16)")
    named = [("CONTROL_PLANE_IPS", ip) for ip in v.get("CONTROL_PLANE_IPS", ())]
    named += [("WORKER_IPS", ip) for ip in v.get("WORKER_IPS", ())]
    named += [("API_VIP", v["API_VIP"])] if v.get("API_VIP") else []
    named += [("LB_IPS", ip) for ip in v.get("LB_IPS", ())]
    named += [("BASTION_IP", v["BASTION_IP"])] if v.get("BASTION_IP") else []
    seen: dict[str, str] = {}
    for name, addr in named:
        for net_name, net in nets:
            if ipaddress.IPv4Address(addr) in net:
                out.append(f"{at(name)}: {name} address {addr} is inside {net_name} {net}; node addresses "
                           f"must be outside the pod and service networks")
        if addr in seen:
            out.append(f"{at(name)}: {name} address {addr} is also listed in {seen[addr]}; every host and "
                       f"the VIP need their own address")
        seen.setdefault(addr, name)
    if has("TOPOLOGY", "CONTROL_PLANE_IPS"):
        out += _topology_problems(v, at)
    out += _lb_problems(v, at)
    if has("REGISTRY_USER", "REGISTRY_PASSWORD_FILE") and (
            bool(v["REGISTRY_USER"]) != bool(v["REGISTRY_PASSWORD_FILE"])):
        out.append(f"{at('REGISTRY_USER')}: REGISTRY_USER and REGISTRY_PASSWORD_FILE go together; set both "
                   f"or neither")
    out += _site_problems(v, at)
    if has("K3S_RELEASE_URL", "K3S_SHA256") and not v["K3S_SHA256"] and t.plain_http(v["K3S_RELEASE_URL"]):
        out.append(f"{at('K3S_RELEASE_URL')}: K3S_RELEASE_URL={v['K3S_RELEASE_URL']} is plain http, which "
                   f"anyone on the path can alter, and K3S_SHA256 is empty; use an https:// (or file://) "
                   f"URL, or pin the binary with K3S_SHA256=<sha256 of the k3s binary>")
    if has("K3S_DISABLE", "K3S_VERSION"):
        for item in v["K3S_DISABLE"]:
            why = t.disable_problem(item, v["K3S_VERSION"])
            if why:
                allowed = ", ".join(t.k3s_disable_items(v["K3S_VERSION"]))
                out.append(f"{at('K3S_DISABLE')}: K3S_DISABLE: {why}; valid items: {allowed}")
    return out


def _site_problems(v: Mapping[str, Any], at: Callable[[str], str]) -> list[str]:
    """The registry, the bastion and the backend image archive (gldeploy/site, bundle._stage_images)."""
    out = []
    if v.get("REGISTRY_KIND") == "harbor" and v.get("REGISTRY_PROJECT") == "":
        out.append(f"{at('REGISTRY_KIND')}: REGISTRY_KIND=harbor needs REGISTRY_PROJECT, the Harbor project the "
                   f"mirrored images live in; add e.g. REGISTRY_PROJECT=gl-native")
    archive = v.get("BACKEND_IMAGE_ARCHIVE")
    if archive and not Path(archive).expanduser().is_file():
        out.append(f"{at('BACKEND_IMAGE_ARCHIVE')}: BACKEND_IMAGE_ARCHIVE={archive}: file not found; point it at "
                   f"the archive of BACKEND_IMAGE (docker save -o FILE IMAGE:TAG) or clear it")
    lb_debs = v.get("LB_PACKAGES_DIR")
    if lb_debs and not Path(lb_debs).expanduser().is_dir():
        out.append(f"{at('LB_PACKAGES_DIR')}: LB_PACKAGES_DIR={lb_debs} is not a directory; point it at the "
                   f"haproxy/keepalived .deb or .rpm files (apt-get download haproxy keepalived ...) or clear it")
    if v.get("TOPOLOGY") == "ha" and v.get("BACKEND_REPLICAS", 2) < 2:
        out.append(f"{at('BACKEND_REPLICAS')}: BACKEND_REPLICAS={v['BACKEND_REPLICAS']} with TOPOLOGY=ha leaves the "
                   f"backend down while its one pod's server is; set BACKEND_REPLICAS=2 or more")
    return out


def _lb_problems(v: Mapping[str, Any], at: Callable[[str], str]) -> list[str]:
    """The load balancer keys that can be judged without reading files (loadbalancer.py checks the rest)."""
    out = []
    if v.get("TOPOLOGY") == "single" and v.get("CNI", "flannel") != "flannel":
        out.append(f"{at('CNI')}: CNI={v['CNI']} needs TOPOLOGY=ha (its 04_install_cni phase); a single node "
                   f"runs k3s' built-in flannel: remove CNI or set TOPOLOGY=ha")
    prios = v.get("LB_PRIORITIES", ())
    dupes = sorted({p for p in prios if prios.count(p) > 1})
    if dupes:
        out.append(f"{at('LB_PRIORITIES')}: LB_PRIORITIES gives priority {', '.join(map(str, dupes))} to more than "
                   f"one node; give every load balancer node its own priority (e.g. 150,140,130) so the VIP "
                   f"holder is decided, not left to address order")
    nodes = v.get("LB_IPS") or v.get("CONTROL_PLANE_IPS", ())
    if prios and "CONTROL_PLANE_IPS" in v and len(prios) != len(nodes):
        out.append(f"{at('LB_PRIORITIES')}: LB_PRIORITIES has {len(prios)} value(s) for {len(nodes)} load "
                   f"balancer node(s) ({', '.join(nodes)}); give one each")
    return out


def _topology_problems(v: Mapping[str, Any], at: Callable[[str], str]) -> list[str]:
    servers = len(v["CONTROL_PLANE_IPS"])
    if v["TOPOLOGY"] == "single" and servers != 1:
        return [(f"{at('CONTROL_PLANE_IPS')}: TOPOLOGY=single needs exactly one CONTROL_PLANE_IPS address, "
                 f"got {servers}; use TOPOLOGY=ha for several servers")]
    out = []
    if v["TOPOLOGY"] == "ha" and (servers < 3 or servers % 2 == 0):
        out.append(f"{at('CONTROL_PLANE_IPS')}: TOPOLOGY=ha needs an odd number of servers (3, 5, 7) for "
                   f"etcd quorum, got {servers}")
    if v["TOPOLOGY"] == "ha" and "API_VIP" in v and not v["API_VIP"]:
        out.append(f"{at('TOPOLOGY')}: TOPOLOGY=ha needs API_VIP, the virtual IP in front of the servers; "
                   f"add e.g. API_VIP=192.168.56.100")
    return out


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
