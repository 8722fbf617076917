"""What a configuration pins (k3s, chart, images) and what a change of env file would change on hosts.

``pinned`` is the content of /etc/gl-deploy/versions.json on a host (written by the day-2 tools, see
docs/day2.md); ``diff`` is what ``invoke settings.show --diff OLD.env`` prints.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

from .. import backend, settings
from ..paths import REPO
from ..settings import Settings

CHART_FILE = REPO / "deploy" / "backend" / "Chart.yaml"
FORMAT = 1

# which part of the hosts a key reaches, by key prefix or name (first match wins)
_EFFECTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("K3S_VERSION", "K3S_SHA256"),
     "k3s release: an upgrade (invoke upgrade --to VERSION; a CHANGELOG line on each host)"),
    (("BACKEND_", "NAMESPACE"), "backend chart values: the deploy phase (03/05) updates the HelmChart"),
    (("CNI", "CILIUM_"), "CNI: 04_install_cni"),
    (("LB_", "API_VIP"), "load balancers (HAProxy/Keepalived) and k3s tls-san: 02 and the LB hosts"),
    (("K3S_", "CLUSTER_CIDR", "SERVICE_CIDR", "API_PORT", "SECRETS_ENCRYPTION", "REGISTRY", "CONTROL_PLANE_IPS",
      "WORKER_IPS"), "k3s configuration: 02 rewrites config.yaml/registries.yaml and restarts k3s"),
    (("MIN_", "HEALTH_TIMEOUT", "ROLLOUT_TIMEOUT"), "checks only (01/04/06): nothing on the hosts changes"),
)


def chart() -> dict[str, str]:
    data = yaml.safe_load(CHART_FILE.read_text())
    return {"name": str(data["name"]), "version": str(data["version"]), "appVersion": str(data.get("appVersion", ""))}


def pinned(loaded: Settings) -> dict[str, Any]:
    """The versions this configuration pins (versions.json)."""
    return {"format": FORMAT, "k3s": loaded.k3s_version, "k3s_sha256": loaded.k3s_sha256 or None,
            "chart": chart(), "backend_version": loaded.backend_version,
            "images": {"backend": backend.containerd_name(loaded)}, "cni": loaded.cni}


def versions_json(loaded: Settings) -> str:
    return json.dumps(pinned(loaded), indent=2, sort_keys=True) + "\n"


def effect(key: str) -> str:
    for prefixes, text in _EFFECTS:
        if any(key == p or key.startswith(p) for p in prefixes):
            return text
    return "gldeploy only (how hosts are reached or staged): nothing on the hosts changes"


def diff(old: Settings, new: Settings) -> list[str]:
    """Human lines: each changed key (secret files by path only) with what it changes on the hosts,
    then the pinned versions that change."""
    before, after = old.to_env(), new.to_env()
    lines: list[str] = []
    for key, meta in settings.KEYS.items():
        if before.get(key) != after.get(key):
            note = " (secret file: contents not compared)" if meta["secret"] else ""
            lines.append(f"{key}: {before.get(key)!r} -> {after.get(key)!r}{note}\n    changes: {effect(key)}")
    pin_old, pin_new = pinned(old), pinned(new)
    for name in sorted(set(pin_old) | set(pin_new)):
        if pin_old.get(name) != pin_new.get(name):
            lines.append(f"versions.json {name}: {pin_old.get(name)} -> {pin_new.get(name)}")
    return lines or ["no change: the hosts would be left as they are"]
