"""Phase 01: the preflight really runs on this host (root, no systemd) against a sandbox GL_ROOT."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

EXIT = {"pass": 0, "warn": 3, "fail": 1}
COMMON_CHECKS = ["cpu", "memory", "disk", "port-10250", "clock-sync", "swap", "cgroups",
                 "kernel-module-overlay", "kernel-module-br_netfilter", "commands", "temp-dir", "bundle-dir",
                 "default-route",
                 "dns", "selinux", "firewall", "existing-k3s", "backend-image"]
PHASE = "01_pre_install_check"

Runner = Callable[..., Any]  # conftest.run_phase -> PhaseRun


def preflight(run_phase: Runner, *args: str, **kwargs: Any) -> Any:
    """Run 01 as the plan does: the caller always names the role (single unless args say otherwise)."""
    role = () if any(a.startswith("--role") for a in args) else ("--role", "single")
    return run_phase(PHASE, *args, *role, **kwargs)


def shim(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    """Put an executable `name` first on PATH; returns the env override."""
    bindir = tmp_path / "shims"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A TCP port with a listener bound on it for the duration of the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_json_report_has_every_check_and_exit_matches_worst(run_phase: Runner, sandbox_root: Path) -> None:
    start = time.monotonic()
    run = preflight(run_phase, "--json")
    elapsed = time.monotonic() - start
    assert elapsed < 3, f"preflight took {elapsed:.2f}s"
    report = run.report
    assert report["phase"] == PHASE
    assert report["changed"] is False
    assert report["k3s_mode"] == "none"
    names = [c["name"] for c in report["checks"]]
    assert names == ["cpu", "memory", "disk", "port-6443", *COMMON_CHECKS[3:]]
    statuses = {c["status"] for c in report["checks"]}
    assert statuses <= {"pass", "warn", "fail"}
    worst = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    assert report["status"] == worst
    assert run.returncode == EXIT[worst]
    for check in report["checks"]:
        assert check["message"], check
        if check["status"] != "pass":
            assert check["fix"], f"{check['name']} has no fix"
    # human table on stderr, nothing written into the sandbox (read-only phase)
    assert "STATUS" in run.stderr and "existing-k3s" in run.stderr
    assert list(sandbox_root.iterdir()) == []


def test_lab_sized_host_passes_resources(run_phase: Runner) -> None:
    run = preflight(run_phase, "--json")
    for name in ("cpu", "memory", "disk", "existing-k3s"):
        assert run.check(name)["status"] == "pass", run.check(name)


def test_busy_api_port_fails_naming_the_port(run_phase: Runner, busy_port: int) -> None:
    run = preflight(run_phase, "--json", overrides={"API_PORT": str(busy_port)})
    check = run.check(f"port-{busy_port}")
    assert check["status"] == "fail"
    assert str(busy_port) in check["message"] and "python" in check["message"]
    assert str(busy_port) in check["fix"]
    assert run.report["status"] == "fail"
    assert run.returncode == 1
    assert run.check("port-10250")["status"] == "pass"


def test_huge_memory_minimum_fails(run_phase: Runner) -> None:
    run = preflight(run_phase, "--json", overrides={"MIN_MEMORY_MB": "99999999"})
    check = run.check("memory")
    assert check["status"] == "fail"
    assert "99999999 MiB" in check["message"]
    assert "MIN_MEMORY_MB" in check["fix"]
    assert run.returncode == 1


def test_role_defaults_apply_when_minimums_are_zero(run_phase: Runner) -> None:
    zero = {"MIN_CPU": "0", "MIN_MEMORY_MB": "0", "MIN_DISK_GB": "0"}
    run = preflight(run_phase, "--json", "--role", "agent", overrides=zero)
    assert "8 for role agent" in run.check("cpu")["message"]
    assert "16384 MiB for role agent" in run.check("memory")["message"]
    assert "200 GiB" in run.check("disk")["message"]
    run = preflight(run_phase, "--json", "--role", "single", overrides=zero)
    assert "2 for role single" in run.check("cpu")["message"]
    assert "4096 MiB for role single" in run.check("memory")["message"]


def test_ports_depend_on_role(run_phase: Runner) -> None:
    server = [c["name"] for c in preflight(run_phase, "--json", "--role=first-server").report["checks"]]
    assert {"port-6443", "port-10250", "port-2379", "port-2380"} <= set(server)
    agent = [c["name"] for c in preflight(run_phase, "--json", "--role", "agent").report["checks"]]
    assert "port-10250" in agent and "port-6443" not in agent and "port-2379" not in agent


def test_existing_k3s_install_warns_with_version(run_phase: Runner, sandbox_root: Path) -> None:
    k3s = sandbox_root / "usr/local/bin/k3s"
    k3s.parent.mkdir(parents=True)
    k3s.write_text("#!/bin/sh\necho 'k3s version v1.27.4+k3s1 (36645e73)'\necho 'go version go1.20.6'\n")
    k3s.chmod(0o755)
    run = preflight(run_phase, "--json")
    check = run.check("existing-k3s")
    assert check["status"] == "warn"
    assert "k3s already installed (version v1.27.4+k3s1" in check["message"]
    assert "02 will keep/upgrade it" in check["message"]
    assert run.report["k3s_mode"] == "real"
    assert run.report["status"] != "pass"  # the existing install is at least a warning
    assert run.returncode == {"warn": 3, "fail": 1}[run.report["status"]]


def test_existing_unit_without_binary_warns(run_phase: Runner, sandbox_root: Path) -> None:
    unit = sandbox_root / "etc/systemd/system/k3s.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/local/bin/k3s server\n")
    check = preflight(run_phase, "--json").check("existing-k3s")
    assert check["status"] == "warn" and "k3s.service" in check["message"]
    assert "k3s-uninstall.sh" in check["fix"] and "k3s-agent-uninstall.sh" not in check["fix"]


@pytest.mark.parametrize("role", ["single", "agent"])
def test_existing_agent_unit_is_detected_for_any_role(run_phase: Runner, sandbox_root: Path, role: str) -> None:
    """k3s' install.sh names an agent's service k3s-agent: found whatever role this host is checked for,
    with k3s' uninstall script of that service."""
    unit = sandbox_root / "etc/systemd/system/k3s-agent.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/local/bin/k3s agent\n")
    check = preflight(run_phase, "--json", "--role", role).check("existing-k3s")
    assert check["status"] == "warn" and "/etc/systemd/system/k3s-agent.service" in check["message"]
    assert "k3s-agent-uninstall.sh" in check["fix"]


def test_clock_known_unsynchronised_fails(run_phase: Runner, tmp_path: Path) -> None:
    env = shim(tmp_path, "chronyc", "echo 'Reference ID    : 00000000 ()'\n"
                                     "echo 'Leap status     : Not synchronised'")
    run = preflight(run_phase, "--json", env=env)
    check = run.check("clock-sync")
    assert check["status"] == "fail" and "Not synchronised" in check["message"]
    assert "NTP" in check["fix"]
    assert run.returncode == 1


def test_clock_synchronised_passes(run_phase: Runner, tmp_path: Path) -> None:
    env = shim(tmp_path, "chronyc", "echo 'System time     : 0.000012 seconds fast of NTP time'\n"
                                     "echo 'Leap status     : Normal'")
    assert preflight(run_phase, "--json", env=env).check("clock-sync")["status"] == "pass"


def test_clock_unknown_warns(run_phase: Runner, tmp_path: Path) -> None:
    env = shim(tmp_path, "chronyc", "echo '506 Cannot talk to daemon' >&2; exit 1")
    check = preflight(run_phase, "--json", env=env).check("clock-sync")
    assert check["status"] == "warn" and "cannot determine" in check["message"]


def test_missing_default_route_fails_with_dummy_route_fix(run_phase: Runner, tmp_path: Path) -> None:
    env = shim(tmp_path, "ip", "exit 0")  # no routes at all
    run = preflight(run_phase, "--json", env=env)
    check = run.check("default-route")
    assert check["status"] == "fail"
    assert "air-gapped" in check["message"] and "ip route add default" in check["fix"]
    assert run.returncode == 1


def test_resolv_conf_without_nameserver_fails(run_phase: Runner, sandbox_root: Path) -> None:
    (sandbox_root / "etc").mkdir()
    (sandbox_root / "etc/resolv.conf").write_text("search example.org\n")
    check = preflight(run_phase, "--json").check("dns")
    assert check["status"] == "fail" and "no nameserver" in check["message"]


def test_loopback_only_resolver_warns(run_phase: Runner, sandbox_root: Path) -> None:
    (sandbox_root / "etc").mkdir()
    (sandbox_root / "etc/resolv.conf").write_text("nameserver 127.0.0.53\n")
    check = preflight(run_phase, "--json").check("dns")
    assert check["status"] == "warn" and "--resolv-conf" in check["fix"]


def test_unresolvable_registry_fails(run_phase: Runner, tmp_path: Path) -> None:
    env = shim(tmp_path, "getent", "exit 2")
    run = preflight(run_phase, "--json", overrides={"REGISTRY": "registry.gov.local:5000"}, env=env)
    check = run.check("dns")
    assert check["status"] == "fail" and "registry.gov.local" in check["message"]
    assert "/etc/hosts" in check["fix"]


def test_active_firewall_warns_with_ports(run_phase: Runner, tmp_path: Path) -> None:
    env = shim(tmp_path, "ufw", "echo 'Status: active'")
    check = preflight(run_phase, "--json", "--role", "server", env=env).check("firewall")
    assert check["status"] == "warn"
    for port in ("6443/tcp", "10250/tcp", "8472/udp", "2379-2380/tcp"):
        assert port in check["message"]
    assert "ufw allow" in check["fix"]


def test_human_output_only_without_json(run_phase: Runner) -> None:
    run = preflight(run_phase)
    assert run.stdout == ""
    assert "result:" in run.stderr and "no change" in run.stderr


@pytest.mark.parametrize("args, needle", [
    (("--role", "single", "--bogus"), "--bogus"),
    (("--role", "master"), "master"),
    (("--role",), "--role needs a value"),
    ((), "--role is required"),
], ids=["unknown flag", "unknown role", "role without value", "no role"])
def test_bad_arguments_exit_2(run_phase: Runner, sandbox_root: Path, args: tuple[str, ...], needle: str) -> None:
    run = run_phase(PHASE, *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert needle in run.stderr and "usage: 01_pre_install_check.sh --role" in run.stderr
    assert list(sandbox_root.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (("--bogus", "--role", "single", "--json"), "--bogus"),
    (("--role", "master", "--json"), "master"),
    (("--json", "--role"), "--role needs a value"),
    (("--json",), "--role is required"),
], ids=["unknown flag before --json", "unknown role", "role without value", "no role"])
def test_bad_arguments_with_json_print_one_fail_object(run_phase: Runner, args: tuple[str, ...], needle: str) -> None:
    run = run_phase(PHASE, *args)
    assert run.returncode == 2
    report = run.report  # exactly one JSON object on stdout
    assert report["phase"] == PHASE and report["status"] == "fail" and report["changed"] is False
    [check] = report["checks"]
    assert check["name"] == "bad-input" and check["status"] == "fail" and needle in check["message"]


def test_the_role_is_never_guessed_from_the_topology(run_phase: Runner) -> None:
    """01 used to default to server for TOPOLOGY=ha: a default-role rule of its own."""
    ha = {"TOPOLOGY": "ha", "CONTROL_PLANE_IPS": "10.0.0.11,10.0.0.12,10.0.0.13", "API_VIP": "10.0.0.100"}
    run = run_phase(PHASE, "--json", overrides=ha)
    assert run.returncode == 2 and "--role is required" in run.report["checks"][0]["message"]


def test_missing_settings_file_exits_2(run_phase: Runner, tmp_path: Path) -> None:
    run = preflight(run_phase, env={"GL_ENV_FILE": str(tmp_path / "nope.env")})
    assert run.returncode == 2 and "nope.env" in run.stderr and run.stdout == ""
    run = preflight(run_phase, "--json", env={"GL_ENV_FILE": str(tmp_path / "nope.env")})
    assert run.returncode == 2 and "nope.env" in run.check("bad-input")["message"]


@pytest.mark.parametrize("script", [PHASE, "02_install_k3s", "02_init_control_plane", "03_deploy_gl_backend",
                                    "04_health_check", "05_deploy_gl_backend", "06_health_check"])
def test_hand_written_env_file_is_refused_with_exit_2(run_phase: Runner, sandbox_root: Path, script: str) -> None:
    """env/single.env lacks most keys (no defaults applied): refused before it is sourced."""
    env_file = Path(__file__).resolve().parents[2] / "env" / "single.env"
    run = run_phase(script, "--json", "--role", "single", env={"GL_ENV_FILE": str(env_file)}) if script in (
        PHASE, "02_install_k3s", "02_init_control_plane") else run_phase(script, "--json", env={"GL_ENV_FILE": str(env_file)})
    assert run.returncode == 2, run.stderr
    assert run.report["status"] == "fail" and run.report["phase"] == script
    assert f"{env_file} was not written by gldeploy" in run.check("bad-input")["message"]
    assert f"{env_file} was not written by gldeploy (no GL_SETTINGS_FORMAT='1' line)" in run.stderr
    assert "settings.env carries every key with defaults applied and checked" in run.stderr
    assert "invoke pre-install-check --env" in run.stderr and "invoke scripts.render" in run.stderr
    assert "unbound variable" not in run.stderr and "command not found" not in run.stderr
    assert list(sandbox_root.iterdir()) == []


def test_api_port_held_by_installed_k3s_passes(run_phase: Runner, sandbox_root: Path, tmp_path: Path) -> None:
    """A re-run after 02: the port is taken by k3s itself, which is not a conflict."""
    k3s = sandbox_root / "usr/local/bin/k3s"
    k3s.parent.mkdir(parents=True)
    k3s.write_text(f"#!{sys.executable}\n"  # direct shebang: the process is named "k3s", like k3s-server
                   "import socket, sys, time\n"
                   "if sys.argv[1:] == ['--version']:\n    print('k3s version v1.28.3+k3s2 (6d7d4ef5)'); sys.exit()\n"
                   "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
                   "print(s.getsockname()[1], flush=True); time.sleep(60)\n")
    k3s.chmod(0o755)
    proc = subprocess.Popen([str(k3s), "server"], stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip() if proc.stdout else ""
        run = preflight(run_phase, "--json", overrides={"API_PORT": port})
        check = run.check(f"port-{port}")
        assert check["status"] == "pass" and "held by the installed k3s" in check["message"], check
        assert run.check("existing-k3s")["status"] == "warn"
    finally:
        proc.kill()
        proc.wait()


OS_RELEASES = {
    "debian": ('ID=debian\nVERSION_ID="12"\n', "debian 12"),
    "ubuntu": ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', "ubuntu 22.04"),
    "rocky": ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n', "rocky 9.3"),
    "rhel": ('ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="8.9"\n', "rhel 8.9"),
}


def _host_os(sandbox_root: Path, os_release: str, selinux_enforce: str | None) -> None:
    (sandbox_root / "etc").mkdir(exist_ok=True)
    (sandbox_root / "etc/os-release").write_text(os_release)
    if selinux_enforce is not None:
        (sandbox_root / "sys/fs/selinux").mkdir(parents=True)
        (sandbox_root / "sys/fs/selinux/enforce").write_text(selinux_enforce)


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_os_is_detected_from_os_release(run_phase: Runner, sandbox_root: Path, name: str) -> None:
    text, shown = OS_RELEASES[name]
    _host_os(sandbox_root, text, None)
    run = preflight(run_phase, "--json")
    assert f"on {shown} (read-only)" in run.stderr
    assert run.check("selinux")["status"] == "pass"


@pytest.mark.parametrize("name", ["rocky", "rhel"])
def test_enforcing_selinux_on_rhel_family_without_k3s_selinux_fails(
        run_phase: Runner, sandbox_root: Path, tmp_path: Path, name: str) -> None:
    _host_os(sandbox_root, OS_RELEASES[name][0], "1")
    check = preflight(run_phase, "--json", env=shim(tmp_path, "rpm", "exit 1")).check("selinux")
    assert check["status"] == "fail" and "k3s-selinux policy is not installed" in check["message"]
    assert "dnf install container-selinux k3s-selinux" in check["fix"]


def test_enforcing_selinux_on_rhel_with_k3s_selinux_passes(
        run_phase: Runner, sandbox_root: Path, tmp_path: Path) -> None:
    _host_os(sandbox_root, OS_RELEASES["rocky"][0], "1")
    env = shim(tmp_path, "rpm", '[ "$1 $2" = "-q k3s-selinux" ] && echo k3s-selinux-1.5-1.el9.noarch')
    check = preflight(run_phase, "--json", env=env).check("selinux")
    assert check["status"] == "pass" and "k3s-selinux policy installed" in check["message"]


def test_enforcing_selinux_on_debian_family_warns(run_phase: Runner, sandbox_root: Path) -> None:
    _host_os(sandbox_root, OS_RELEASES["ubuntu"][0], "1")
    check = preflight(run_phase, "--json").check("selinux")
    assert check["status"] == "warn" and "only packaged for RHEL-family" in check["message"]


def test_permissive_selinux_passes_on_rhel(run_phase: Runner, sandbox_root: Path) -> None:
    _host_os(sandbox_root, OS_RELEASES["rocky"][0], "0")
    check = preflight(run_phase, "--json").check("selinux")
    assert check["status"] == "pass" and "permissive" in check["message"]


_PATH_FARMS: dict[tuple[str, ...], str] = {}


@pytest.fixture(scope="module")
def farms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where path_without builds its (read-only once built) PATH directories, once per module."""
    yield tmp_path_factory.mktemp("path-without")
    _PATH_FARMS.clear()


def path_without(farms: Path, *hidden: str) -> str:
    """A one-directory PATH with every command of the current PATH except `hidden` (built once per set)."""
    key = tuple(sorted(hidden))
    if key in _PATH_FARMS:
        return _PATH_FARMS[key]
    bindir = farms / "-".join(key)
    bindir.mkdir()
    for directory in reversed(os.environ["PATH"].split(os.pathsep)):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name not in hidden and os.access(entry.path, os.X_OK) and not entry.is_dir():
                target = bindir / entry.name
                if target.is_symlink():
                    target.unlink()
                target.symlink_to(entry.path)
    _PATH_FARMS[key] = str(bindir)
    return str(bindir)


def test_wget_without_curl_fails_because_later_phases_run_curl(run_phase: Runner, tmp_path: Path,
                                                              farms: Path) -> None:
    wget = tmp_path / "wget-only"
    wget.mkdir()
    (wget / "wget").write_text("#!/bin/sh\nexit 0\n")
    (wget / "wget").chmod(0o755)
    path = f"{wget}:{path_without(farms, 'curl', 'wget')}"
    run = preflight(run_phase, "--json", env={"PATH": path})
    check = run.check("commands")
    assert check["status"] == "fail" and "curl" in check["message"] and "curl" in check["fix"]
    assert run.returncode == 1


@pytest.mark.parametrize("role, status", [("single", "fail"), ("first-server", "fail"), ("agent", "pass")])
def test_openssl_is_needed_where_the_health_phase_runs(run_phase: Runner, farms: Path, role: str,
                                                       status: str) -> None:
    run = preflight(run_phase, "--json", "--role", role, env={"PATH": path_without(farms, "openssl")})
    check = run.check("commands")
    assert check["status"] == status, check
    assert ("openssl" in check["message"]) == (status == "fail")


def test_every_tool_a_later_phase_runs_is_checked() -> None:
    """The checked tools cover what the phase scripts run (a tool added to a phase must be added here)."""
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    text = "\n".join(p.read_text() for p in [*scripts.glob("0[2-9]_*.sh"), *scripts.glob("lib/*.sh")])
    tools = (scripts / "lib/host_checks.sh").read_text()
    for tool in ("curl", "openssl", "sha256sum", "cmp", "install", "mktemp", "timeout", "setsid"):
        assert re.search(rf"(^|[\s(|$]){tool} ", text, re.M), f"{tool} no longer used by a phase"
        assert re.search(rf'GL_TOOLS_\w+="[^"]*\b{tool}\b|groups\+=" {tool}"', tools), f"01 does not check {tool}"


def test_unwritable_temp_dir_fails(run_phase: Runner, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    run = preflight(run_phase, "--json", env={"TMPDIR": str(not_a_dir)})
    check = run.check("temp-dir")
    assert check["status"] == "fail" and str(not_a_dir) in check["message"] and "TMPDIR" in check["fix"]
    assert run.returncode == 1
    assert preflight(run_phase, "--json", env={"TMPDIR": str(tmp_path)}).check("temp-dir")["status"] == "pass"
    assert list(tmp_path.glob("gl-preflight.*")) == []


def test_bundle_writable_by_others_fails(run_phase: Runner, bundle: Path) -> None:
    bundle.chmod(0o777)
    check = preflight(run_phase, "--json").check("bundle-dir")
    assert check["status"] == "fail" and "777" in check["message"] and "chmod go-w" in check["fix"]


# --- backend-image: the image the deploy will use can be had (archive in the bundle, or the registry) ---
REF = "docker.io/gl-native/execution-backend:v1.1"  # BACKEND_IMAGE_REF of the default settings


_SAMPLES: dict[str, Path] = {}
_SAMPLE_DIR: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _SAMPLE_DIR[:] = [tmp_path_factory.mktemp("sample-images")]
    yield
    _SAMPLES.clear()


def ship_archive(bundle: Path, *, name: str = REF, listed: bool = True, gz: bool = False) -> Path:
    """The sample image archive (named `name`) in the bundle's artifacts/images, with SHA256SUMS."""
    import gzip
    import hashlib

    from gldeploy import image

    images = bundle / "artifacts/images"
    if name not in _SAMPLES:  # the archive is the same bytes for a name: built once per module
        _SAMPLES[name] = image.build_sample_image("v1.1", _SAMPLE_DIR[0] / f"s{len(_SAMPLES)}", image_name=name)
    images.mkdir(parents=True, exist_ok=True)
    archive = Path(shutil.copy2(_SAMPLES[name], images / _SAMPLES[name].name))
    if gz:
        packed = archive.with_name(archive.name + ".gz")
        packed.write_bytes(gzip.compress(archive.read_bytes()))
        archive.unlink()
        archive = packed
    if listed:
        (images / "SHA256SUMS").write_text(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n")
    return archive


def curl_failing(tmp_path: Path, rc: int) -> dict[str, str]:
    """curl that fails as when no registry can be reached (6: name does not resolve)."""
    return shim(tmp_path, "curl", f"cat >/dev/null; exit {rc}")


def test_backend_image_archive_in_bundle_passes_without_a_registry(
        run_phase: Runner, bundle: Path, sandbox_root: Path, tmp_path: Path) -> None:
    ship_archive(bundle)
    run = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6))
    check = run.check("backend-image")
    assert check["status"] == "pass", check
    assert "execution-backend-v1.1.oci.tar" in check["message"] and REF in check["message"]
    assert list(sandbox_root.iterdir()) == []  # read-only


def test_backend_image_compressed_archive_passes(run_phase: Runner, bundle: Path, tmp_path: Path) -> None:
    ship_archive(bundle, gz=True)
    check = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6)).check("backend-image")
    assert check["status"] == "pass" and "execution-backend-v1.1.oci.tar.gz" in check["message"], check


def test_backend_image_docker_archive_with_short_repo_tag_passes(run_phase: Runner, bundle: Path,
                                                                tmp_path: Path) -> None:
    """docker save writes RepoTags without docker.io/; containerd's import adds it back."""
    import hashlib
    import io
    import json as json_mod
    import tarfile

    images = bundle / "artifacts/images"
    images.mkdir(parents=True)
    archive = images / "backend.tar"
    manifest = json_mod.dumps([{"Config": "c.json", "RepoTags": ["gl-native/execution-backend:v1.1"],
                                "Layers": []}]).encode()
    with tarfile.open(archive, "w") as tar:
        for name, data in (("c.json", b"{}"), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (images / "SHA256SUMS").write_text(f"{hashlib.sha256(archive.read_bytes()).hexdigest()} *backend.tar\n")
    check = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6)).check("backend-image")
    assert check["status"] == "pass" and "backend.tar" in check["message"], check


def test_backend_image_archive_of_another_image_does_not_count(run_phase: Runner, bundle: Path,
                                                               tmp_path: Path) -> None:
    ship_archive(bundle, name="docker.io/gl-native/other-backend:v1.1")
    run = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6))
    check = run.check("backend-image")
    assert check["status"] == "fail", check
    assert f"execution-backend-v1.1.oci.tar does not carry {REF}" in check["message"]
    assert run.returncode == 1


@pytest.mark.parametrize("damage, needle", [
    ("unlisted", "is not listed in artifacts/images/SHA256SUMS"),
    ("tampered", "does not match artifacts/images/SHA256SUMS"),
])
def test_backend_image_archive_the_deploy_would_refuse_fails(run_phase: Runner, bundle: Path, tmp_path: Path,
                                                             damage: str, needle: str) -> None:
    archive = ship_archive(bundle)
    if damage == "unlisted":
        (archive.parent / "SHA256SUMS").write_text(f"{'0' * 64}  something-else.tar\n")
    else:
        with open(archive, "ab") as out:
            out.write(b"\0" * 512)
    check = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6)).check("backend-image")
    assert check["status"] == "fail" and needle in check["message"], check
    assert "deploy phase would refuse it" in check["message"]


def test_backend_image_archive_without_sha256sums_is_not_trusted(run_phase: Runner, bundle: Path,
                                                                 tmp_path: Path) -> None:
    ship_archive(bundle, listed=False)
    check = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6)).check("backend-image")
    assert check["status"] == "fail" and "no SHA256SUMS" in check["message"], check


def test_backend_image_from_docker_hub_explains_air_gap_and_the_fixes(run_phase: Runner, tmp_path: Path,
                                                                      sandbox_root: Path) -> None:
    run = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6))
    check = run.check("backend-image")
    assert check["status"] == "fail" and run.returncode == 1
    assert REF in check["message"] and "registry-1.docker.io does not resolve" in check["message"]
    assert "an air-gapped host cannot reach it" in check["message"]
    assert "the bundle carries no image archive" in check["message"]
    assert "fail only after its rollout wait" in check["message"]
    assert "set REGISTRY=<host:port>" in check["fix"] and "artifacts/images" in check["fix"]
    assert "--sample-image" in check["fix"]
    assert list(sandbox_root.iterdir()) == []


@pytest.mark.parametrize("role", ["server", "agent"])
def test_backend_image_is_not_checked_where_the_backend_is_not_deployed(run_phase: Runner, role: str) -> None:
    check = preflight(run_phase, "--json", "--role", role).check("backend-image")
    assert check["status"] == "skipped" and f"role {role} does not deploy the backend" in check["message"]


FAKE_REGISTRY = r'''
cfg=$(cat)
printf '%s\n' "$*" >>"$CURL_LOG.argv"
printf '%s\n---\n' "$cfg" >>"$CURL_LOG.stdin"
case "$cfg" in
  *'Authorization: Bearer tok-4711'*) printf 'HTTP/1.1 200 OK\r\n\r\n\n200' ;;
  *'url = "https://auth.registry.example/token"'*)
    case "$cfg" in *'user = "deploy:S3cr3t \"pw\" \\x"'*) printf '{"token": "tok-4711"}\n200' ;;
                   *) printf '{"errors": []}\n401' ;; esac ;;
  *) printf 'HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Bearer realm="https://auth.registry.example/token",service="registry.example",scope="repository:gov/execution-backend:pull"\r\n\r\n\n401' ;;
esac
'''


def registry_settings(tmp_path: Path, password: str) -> dict[str, str]:
    pw = tmp_path / "registry-password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return {"REGISTRY": "registry.example:5000", "BACKEND_IMAGE": "gov/execution-backend",
            "REGISTRY_USER": "deploy", "REGISTRY_PASSWORD_FILE": str(pw)}


@pytest.mark.parametrize("password, status", [('S3cr3t "pw" \\x', "pass"), ("wrong", "fail")])
def test_backend_image_bearer_token_flow_credentials_only_on_stdin(
        run_phase: Runner, tmp_path: Path, password: str, status: str) -> None:
    """A 401 with WWW-Authenticate: Bearer sends the client to the realm for a token (basic auth with
    the site credentials), then HEAD again with the token. The password and the token reach curl in
    a config on stdin, never on its command line."""
    log = tmp_path / "curl"
    env = {**shim(tmp_path, "curl", FAKE_REGISTRY), "CURL_LOG": str(log)}
    run = preflight(run_phase, "--json", overrides=registry_settings(tmp_path, password), env=env)
    check = run.check("backend-image")
    assert check["status"] == status, check
    argv = Path(f"{log}.argv").read_text()
    stdin = Path(f"{log}.stdin").read_text()
    assert password not in argv and "tok-4711" not in argv and "deploy" not in argv
    assert "scope=repository:gov/execution-backend:pull" in argv and "service=registry.example" in argv
    assert 'url = "https://registry.example:5000/v2/gov/execution-backend/manifests/v1.1"' in stdin
    assert "-I" in argv.splitlines()[0]
    if status == "pass":
        assert "registry.example:5000/gov/execution-backend:v1.1 is in registry" in check["message"]
        assert "Authorization: Bearer tok-4711" in stdin
    else:
        assert "refused the credentials of user deploy" in check["message"]
        assert "REGISTRY_PASSWORD_FILE" in check["fix"]
        assert "push the site's GL-Native Execution Backend image to the site registry as " \
               "registry.example:5000/gov/execution-backend:v1.1" in check["fix"]
    assert password not in run.stdout + run.stderr


def test_backend_image_sums_without_final_newline_and_a_non_archive(run_phase: Runner, bundle: Path,
                                                                    tmp_path: Path) -> None:
    import hashlib

    archive = ship_archive(bundle)
    junk = archive.parent / "aaa-notes.tar"
    junk.write_bytes(b"not a tar at all")
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in (junk, archive)]
    (archive.parent / "SHA256SUMS").write_text("\n".join(sums))  # no newline after the last line
    check = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6)).check("backend-image")
    assert check["status"] == "pass" and archive.name in check["message"], check
    archive.unlink()
    (archive.parent / "SHA256SUMS").write_text(sums[0] + "\n")
    check = preflight(run_phase, "--json", env=curl_failing(tmp_path, 6)).check("backend-image")
    assert check["status"] == "fail", check
    assert "aaa-notes.tar cannot be read as an OCI or docker archive" in check["message"]
