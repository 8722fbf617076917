"""Kubernetes-level behaviour: only with real k3s (skipped, never passed, under the stand-in)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.lab.helpers import eventually

KUBECTL = "/usr/local/bin/k3s kubectl"
pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("needs_real")]


def test_node_ready(host: Any) -> None:
    """Every node reports Ready."""
    def ready() -> bool:
        with host.sudo():
            out = host.run(f"{KUBECTL} get nodes -o json")
        if out.rc != 0:
            return False
        items = json.loads(out.stdout)["items"]
        return bool(items) and all(any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in n["status"]["conditions"]) for n in items)
    eventually(ready, 180, "all nodes Ready", interval=5)


def pod_running_and_ready(pod: dict[str, Any]) -> bool:
    """Phase Running, the Ready condition True and every container ready."""
    status = pod.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    containers = status.get("containerStatuses", [])
    return (status.get("phase") == "Running" and conditions.get("Ready") == "True" and bool(containers)
            and all(c.get("ready") is True for c in containers))


def test_backend_pods_running_and_ready(host: Any, lab_settings: Any) -> None:
    """The backend's pods in its namespace are Running and ready (Ready condition, every container)."""
    def running_and_ready() -> bool:
        with host.sudo():
            out = host.run(f"{KUBECTL} -n %s get pods -o json", lab_settings.namespace)
        if out.rc != 0:
            return False
        pods = json.loads(out.stdout)["items"]
        return bool(pods) and all(pod_running_and_ready(p) for p in pods)
    eventually(running_and_ready, 300, f"pods in {lab_settings.namespace} Running and ready", interval=5)


def test_backend_healthz_through_ingress(host: Any, lab_settings: Any) -> None:
    """/healthz answers through the Traefik ingress on the node IP with the configured host name."""
    ip = lab_settings.control_plane_ips[0]
    argv = ["curl", "-fsS", "--max-time", "10", "-H", f"Host: {lab_settings.backend_ingress_host}",
            f"http://{ip}/healthz"]
    eventually(lambda: host.run(" ".join(["%s"] * len(argv)), *argv).rc == 0, 180,
               "backend /healthz via ingress", interval=5)
