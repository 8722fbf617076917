"""06_health_check.sh arguments and the cluster checks outside a cluster host (the full cluster run with
real HAProxy/Keepalived is tests/integration/test_cluster_local.py)."""
from __future__ import annotations

from typing import Any, Callable

import pytest

HA = {"TOPOLOGY": "ha", "CONTROL_PLANE_IPS": "192.168.57.11,192.168.57.12,192.168.57.13",
      "API_VIP": "192.168.57.100", "HEALTH_TIMEOUT": "2"}


@pytest.mark.parametrize("url", ["http://192.168.57.100:16443", "https://192.168.57.100", "192.168.57.100:16443",
                                 "https://192.168.57.100:16443/x"])
def test_server_url_that_is_not_https_host_port_is_bad_input(run_phase: Callable[..., Any], url: str) -> None:
    result = run_phase("06_health_check", "--json", "--server-url", url, overrides=HA)
    assert result.returncode == 2
    assert "expected https://<host>:<port>" in result.stderr
    assert result.report["checks"][0]["name"] == "bad-input"


def test_without_k3s_the_cluster_checks_are_skipped_and_the_run_fails(run_phase: Callable[..., Any]) -> None:
    result = run_phase("06_health_check", "--json", "--server-url", "https://192.168.57.100:16443", overrides=HA)
    assert result.returncode == 1
    assert result.check("k3s-installed")["status"] == "fail"
    for name in ("api-own-address", "api-vip", "config-digest"):
        assert result.check(name) == {"name": name, "status": "skipped", "message": "k3s is not installed", "fix": ""}
