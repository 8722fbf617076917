"""The lab verifiers' own logic, checked here because under the k3s stand-in they are skipped."""
from __future__ import annotations

from typing import Any

import pytest

from tests.lab.test_kubernetes import pod_running_and_ready


def pod(phase: str = "Running", ready: str = "True", containers: tuple[bool, ...] = (True,)) -> dict[str, Any]:
    return {"status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}],
                       "containerStatuses": [{"name": f"c{i}", "ready": r} for i, r in enumerate(containers)]}}


def test_running_and_ready_pod_passes() -> None:
    assert pod_running_and_ready(pod())


@pytest.mark.parametrize("bad", [pod(ready="False"), pod(containers=(True, False)), pod(containers=()),
                                 pod(phase="Pending"), {"status": {"phase": "Running"}}],
                         ids=["not-ready", "one-container-not-ready", "no-containers", "pending", "no-status"])
def test_running_but_not_ready_pods_fail(bad: dict[str, Any]) -> None:
    assert not pod_running_and_ready(bad)
