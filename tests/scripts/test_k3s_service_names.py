"""lib/k3s.sh names the k3s service as k3s' install.sh does: k3s (servers: k3s.service, its
k3s.service.env, k3s-uninstall.sh) or k3s-agent (agents: k3s-agent.service, k3s-agent.service.env,
k3s-agent-uninstall.sh); the phases and doctor from the role, the role-less tools (backup, restore,
certs, upgrade, health checks) from what is installed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOW = """set -euo pipefail
source "$1/scripts/lib/common.sh"; source "$1/scripts/lib/checks.sh"; source "$1/scripts/lib/k3s.sh"
if [[ -n "$2" ]]; then k3s_use_role "$2"; fi
for v in K3S_SERVICE K3S_EXEC K3S_UNIT_TYPE K3S_UNIT K3S_UNIT_ENV K3S_UNINSTALL K3S_OTHER_UNIT K3S_OTHER_UNINSTALL K3S_KILLALL; do
  printf '%s=%s\\n' "$v" "${!v#"${GL_ROOT}"}"
done
"""


def names(root: Path, role: str = "") -> dict[str, str]:
    proc = subprocess.run(["bash", "-c", SHOW, "show", str(REPO), role], capture_output=True, text=True,
                          env={**os.environ, "GL_ROOT": str(root)}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


SERVER = {"K3S_SERVICE": "k3s", "K3S_EXEC": "server", "K3S_UNIT_TYPE": "notify",
          "K3S_UNIT": "/etc/systemd/system/k3s.service", "K3S_UNIT_ENV": "/etc/systemd/system/k3s.service.env",
          "K3S_UNINSTALL": "/usr/local/bin/k3s-uninstall.sh", "K3S_OTHER_UNIT": "/etc/systemd/system/k3s-agent.service",
          "K3S_OTHER_UNINSTALL": "/usr/local/bin/k3s-agent-uninstall.sh", "K3S_KILLALL": "/usr/local/bin/k3s-killall.sh"}
AGENT = {"K3S_SERVICE": "k3s-agent", "K3S_EXEC": "agent", "K3S_UNIT_TYPE": "exec",
         "K3S_UNIT": "/etc/systemd/system/k3s-agent.service",
         "K3S_UNIT_ENV": "/etc/systemd/system/k3s-agent.service.env",
         "K3S_UNINSTALL": "/usr/local/bin/k3s-agent-uninstall.sh", "K3S_OTHER_UNIT": "/etc/systemd/system/k3s.service",
         "K3S_OTHER_UNINSTALL": "/usr/local/bin/k3s-uninstall.sh", "K3S_KILLALL": "/usr/local/bin/k3s-killall.sh"}


@pytest.mark.parametrize("role, expected", [("single", SERVER), ("first-server", SERVER), ("server", SERVER),
                                            ("agent", AGENT)])
def test_the_role_names_the_service(tmp_path: Path, role: str, expected: dict[str, str]) -> None:
    # whatever is installed: the role decides (an agent host with an old k3s.service stays an agent)
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "k3s.service").write_text("[Service]\n")
    (units / "k3s-agent.service").write_text("[Service]\n")
    assert names(tmp_path, role) == expected


@pytest.mark.parametrize("installed, expected", [((), SERVER), (("k3s.service",), SERVER),
                                                 (("k3s-agent.service",), AGENT),
                                                 (("k3s.service", "k3s-agent.service"), SERVER)])
def test_without_a_role_the_installed_service(tmp_path: Path, installed: tuple[str, ...],
                                              expected: dict[str, str]) -> None:
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in installed:
        (units / unit).write_text("[Service]\n")
    assert names(tmp_path) == expected


def test_a_role_without_k3s_is_bad_input(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "-c", SHOW, "show", str(REPO), "lb"], capture_output=True, text=True,
                          env={**os.environ, "GL_ROOT": str(tmp_path)}, timeout=30)
    assert proc.returncode == 2 and "--role lb: no k3s service for this role" in proc.stderr
