"""A rolling upgrade that stops at a failed host says what the hosts after it are left at: never a
cluster of mixed versions without a word about it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pytest

from gldeploy import results, settings
from gldeploy.day2 import remote


@dataclass
class Res:
    rc: int
    stdout: str
    stderr: str


class FakeLink:
    """Stands in for the ssh transport: the second server's upgrade fails (rolled back, exit 1)."""

    ran: list[str] = []

    def __init__(self, host: str) -> None:
        self.host = host

    def put_dir(self, src: Path, dest: str) -> None:
        assert (src / "upgrade.sh").is_file()

    def run(self, argv: Sequence[str], env: dict[str, str], timeout: float) -> Res:
        FakeLink.ran.append(self.host)
        fail = self.host == "10.0.0.2"
        report = {"phase": "upgrade", "status": "fail" if fail else "pass", "changed": True, "k3s_mode": "server",
                  "checks": [{"name": "upgrade", "status": "fail" if fail else "pass", "detail": "x"}]}
        return Res(1 if fail else 0, json.dumps(report) + "\n", "rolled back to v1.28.3+k3s2\n" if fail else "")

    def close(self) -> None:
        return None


def test_hosts_after_a_failed_one_are_listed_as_not_upgraded(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings.load(None, environ={}, overrides=["TOPOLOGY=ha", "API_VIP=10.0.0.100",
                                                       "CONTROL_PLANE_IPS=10.0.0.1,10.0.0.2,10.0.0.3",
                                                       "WORKER_IPS=10.0.0.21"])
    monkeypatch.setattr(remote, "link", lambda _s, host: FakeLink(host))
    FakeLink.ran = []
    pairs: list[tuple[str, Any]] = [("10.0.0.1", "first-server"), ("10.0.0.2", "server"), ("10.0.0.3", "server"),
                                    ("10.0.0.21", "agent")]
    outcome = remote.run_tool(loaded, "upgrade", pairs, lambda _h: ["--to", "v1.29.4+k3s1"], stop_on_failure=True)
    assert FakeLink.ran == ["10.0.0.1", "10.0.0.2"]  # nothing touched after the failure
    assert [(r.host, r.status) for r in outcome] == [("10.0.0.1", "pass"), ("10.0.0.2", "fail"),
                                                    ("10.0.0.3", "not run"), ("10.0.0.21", "not run")]
    for r in outcome[2:]:
        assert "10.0.0.2 failed" in r.message and "left as it was" in r.message
    assert results.exit_code(outcome) == 1
