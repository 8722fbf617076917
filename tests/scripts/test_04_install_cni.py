"""Phase 04 (install CNI) on a first server installed by 02 (stand-in): the CNI keys 02 writes, the
manifest shipped into k3s' auto-deploy directory, refusals when --plugin disagrees with the install."""
from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.k3s_standin.release import make_release
from tests.fixtures.k3s_standin.testing import (
    fake_real_k3s_running,
    free_port,
    stop_standin,
)

VERSION = "v1.28.3+k3s2"
HA = {"TOPOLOGY": "ha", "CONTROL_PLANE_IPS": "127.0.0.1,127.0.0.2,127.0.0.3", "API_VIP": "127.0.0.100",
      "K3S_VERSION": VERSION, "HEALTH_TIMEOUT": "30"}
MANIFEST = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {plugin}-system\n"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def first_server(run_phase: Callable[..., Any], sandbox_root: Path, tmp_path: Path,
                 bundle: Path) -> Iterator[Callable[..., Any]]:
    """install(CNI=...) runs 02_init_control_plane with CNI (and options) as settings."""
    release = tmp_path / "release"
    make_release(release, VERSION)
    values = {**HA, "K3S_ARTIFACTS_DIR": str(release), "API_PORT": str(free_port())}
    for plugin in ("calico", "cilium"):
        (bundle / "artifacts/cni").mkdir(parents=True, exist_ok=True)
        (bundle / f"artifacts/cni/{plugin}.yaml").write_text(MANIFEST.format(plugin=plugin))

    def install(**keys: str) -> Any:
        result = run_phase("02_init_control_plane", "--role", "first-server", overrides={**values, **keys})
        assert result.returncode == 0, result.stderr
        return yaml.safe_load((sandbox_root / "etc/rancher/k3s/config.yaml").read_text())

    install.cni = lambda *args, **keys: run_phase("04_install_cni", *args, overrides={**values, **keys})  # type: ignore[attr-defined]
    yield install
    stop_standin(sandbox_root)


def manifests(root: Path) -> list[str]:
    d = root / "var/lib/rancher/k3s/server/manifests"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_flannel_is_verified_and_kubernetes_checks_are_skipped(first_server: Any, sandbox_root: Path) -> None:
    config = first_server()
    assert "flannel-backend" not in config and "disable-network-policy" not in config
    result = first_server.cni("--json", "--role", "first-server")
    assert result.returncode == 0, result.stderr
    assert (result.report["status"], result.report["changed"]) == ("pass", False)
    assert "built into k3s" in result.check("cni-manifest")["message"]
    assert result.check("cni-ready") == {"name": "cni-ready", "status": "skipped", "fix": "",
                                         "message": "skipped: needs real k3s (flannel pods running, nodes Ready)"}
    assert manifests(sandbox_root) == []


@pytest.mark.parametrize("plugin", ["calico", "cilium"])
def test_external_cni_gets_k3s_flags_and_its_manifest_is_auto_deployed(first_server: Any, sandbox_root: Path,
                                                                        bundle: Path, plugin: str) -> None:
    config = first_server(CNI=plugin)
    assert (config["flannel-backend"], config["disable-network-policy"]) == ("none", True)
    assert "disable-kube-proxy" not in config
    result = first_server.cni("--json", CNI=plugin)  # the CNI setting, no flag
    assert result.returncode == 0, result.stderr
    assert result.report["changed"] is True
    dest = sandbox_root / f"var/lib/rancher/k3s/server/manifests/gl-cni-{plugin}.yaml"
    assert dest.read_bytes() == (bundle / f"artifacts/cni/{plugin}.yaml").read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert result.check("cni-ready")["status"] == "skipped"
    again = first_server.cni("--json", "--plugin", plugin)  # the flag names the same plugin
    assert again.returncode == 0, again.stderr
    assert again.report["changed"] is False and "nothing changed" in again.check("cni-manifest")["message"]


def test_cilium_kube_proxy_replacement_is_an_install_time_flag(first_server: Any) -> None:
    config = first_server(CNI="cilium", CILIUM_KUBE_PROXY_REPLACEMENT="true")
    assert config["disable-kube-proxy"] is True
    refused = first_server.cni("--plugin", "cilium")  # without the option: disagrees with the install
    assert refused.returncode == 1 and "disable-kube-proxy: true" in refused.stderr
    assert first_server.cni("--plugin", "cilium", CILIUM_KUBE_PROXY_REPLACEMENT="true").returncode == 0


@pytest.mark.parametrize("installed, plugin", [("", "calico"), ("calico", "flannel"), ("cilium", "calico")])
def test_plugin_that_disagrees_with_the_install_is_refused_with_the_fix(first_server: Any, sandbox_root: Path,
                                                                        installed: str, plugin: str) -> None:
    first_server(**({"CNI": installed} if installed else {}))
    result = first_server.cni("--json", "--plugin", plugin)
    assert result.returncode == 1
    check = result.check("cni-config")
    assert check["status"] == "fail" and f"{plugin} disagrees with the installed" in check["message"]
    assert f"set CNI={plugin} in the env file and run 02_init_control_plane.sh again" in check["fix"]
    assert manifests(sandbox_root) == []


@pytest.mark.parametrize("args, env, message", [
    (("--plugin", "weave"), {}, "--plugin 'weave' is not a supported CNI; expected one of: flannel, calico, cilium"),
    (("--role", "agent"), {}, "the CNI is installed from the first server only"),
    (("--plugin",), {}, "--plugin needs a value"),
])
def test_bad_input_exits_2_and_touches_nothing(first_server: Any, sandbox_root: Path, args: tuple[str, ...],
                                               env: dict[str, str], message: str) -> None:
    first_server()
    before = tree(sandbox_root)
    result = first_server.cni(*args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert tree(sandbox_root) == before


def test_missing_manifest_in_the_bundle_is_bad_input(first_server: Any, sandbox_root: Path, bundle: Path) -> None:
    first_server(CNI="calico")
    (bundle / "artifacts/cni/calico.yaml").unlink()
    result = first_server.cni(CNI="calico")
    assert result.returncode == 2
    assert "artifacts/cni/calico.yaml" in result.stderr
    assert manifests(sandbox_root) == []


def test_without_k3s_installed_it_fails_naming_02(run_phase: Callable[..., Any], sandbox_root: Path) -> None:
    result = run_phase("04_install_cni", "--json", overrides=HA)
    assert result.returncode == 1
    assert "run 02_init_control_plane.sh on this host first" in result.check("cni-config")["fix"]
    assert tree(sandbox_root) == []


def test_real_k3s_waits_for_nodes_ready(run_phase: Callable[..., Any], sandbox_root: Path, tmp_path: Path) -> None:
    etc = sandbox_root / "etc/rancher/k3s"
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text("write-kubeconfig-mode: \"0600\"\n")
    calls = tmp_path / "calls"
    script = f"""#!/usr/bin/env bash
if [[ "$1" == server ]]; then exec sleep 300; fi
echo "$*" >>{calls}
[[ "$*" == "kubectl wait --for=condition=Ready nodes --all --timeout=30s" ]]
"""
    with fake_real_k3s_running(sandbox_root, script):
        result = run_phase("04_install_cni", "--json", overrides=HA)
    assert result.returncode == 0, result.stderr
    assert result.report["k3s_mode"] == "real"
    assert result.check("cni-ready") == {"name": "cni-ready", "status": "pass", "fix": "",
                                         "message": "every node is Ready with flannel"}
    assert calls.read_text().splitlines() == ["kubectl wait --for=condition=Ready nodes --all --timeout=30s"]
