"""Transport: argv construction for OpenSSH, quoting, secret refusal, and the Local transport."""
from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import pytest

from gldeploy.errors import ConfigError, DeployError
from gldeploy.ssh import WATCHDOG, watched
from gldeploy.transport import Local, Ssh, env_args, for_host, validate_host
from tests.fixtures.processes import running


def _option(argv: list[str], name: str) -> str:
    values = [argv[i + 1].split("=", 1)[1] for i, a in enumerate(argv[:-1])
              if a == "-o" and argv[i + 1].startswith(name + "=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def test_ssh_argv_has_batch_mode_timeout_control_master_and_config() -> None:
    link = Ssh("bastion-alias", "root", ssh_config="/lab/ssh-config", key="/keys/id", echo=None)
    argv = link.command(["bash", "/var/lib/gl-deploy/01_pre_install_check.sh", "--json"],
                        {"GL_BUNDLE_DIR": "/var/lib/gl-deploy"})
    assert argv[0] == "ssh"
    assert argv[argv.index("-F") + 1] == "/lab/ssh-config"
    assert argv[argv.index("-i") + 1] == "/keys/id"
    assert _option(argv, "BatchMode") == "yes"
    assert _option(argv, "ControlMaster") == "auto"
    assert 0 < int(_option(argv, "ConnectTimeout")) <= 30
    assert argv[argv.index("-l") + 1] == "root"
    # host, then "--", then exactly one remote command string
    assert argv[-3:-1] == ["bastion-alias", "--"]
    assert shlex.split(argv[-1]) == [*watched(["env", "GL_BUNDLE_DIR=/var/lib/gl-deploy", "bash",
                                               "/var/lib/gl-deploy/01_pre_install_check.sh", "--json"])]


def test_ssh_without_config_or_key_passes_neither() -> None:
    argv = Ssh("10.0.0.5", "root", echo=None).command(["true"])
    assert "-F" not in argv and "-i" not in argv


def test_non_root_user_gets_sudo_and_values_are_quoted() -> None:
    argv = Ssh("h", "vagrant", echo=None).command(["echo", "a b", "$(touch /tmp/x)", "it's"])
    assert shlex.split(argv[-1]) == ["sudo", "-n", "--", *watched(["echo", "a b", "$(touch /tmp/x)", "it's"])]


def test_control_path_is_in_a_private_directory() -> None:
    link = Ssh("h", "root", echo=None)
    path = link._control_path()
    try:
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert path.endswith("/%C")
    finally:
        link.close()
    assert not os.path.exists(os.path.dirname(path))


@pytest.mark.parametrize("name", ["K3S_TOKEN", "REGISTRY_PASSWORD", "my_secret"])
def test_secret_looking_env_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="secrets travel as 0600 files"):
        env_args({name: "x"})


def test_env_args_rejects_bad_names() -> None:
    with pytest.raises(ConfigError, match="not a valid shell variable"):
        env_args({"A B": "x"})


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "a b", "h;rm", "", "$(x)"])
def test_hosts_that_could_inject_options_are_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="--hosts"):
        validate_host(host)


def test_for_host_local_and_ssh() -> None:
    assert isinstance(for_host("local", user="root"), Local)
    link = for_host("192.168.56.10", user="vagrant", ssh_config="/c", key="")
    assert isinstance(link, Ssh) and link.ssh_config == "/c" and link.key is None


def test_local_run_captures_and_streams_stderr(tmp_path: Path) -> None:
    seen: list[str] = []
    result = Local(echo=seen.append).run(["sh", "-c", 'echo "$GL_X"; echo warn-line >&2; exit 3'],
                                         env={"GL_X": "a b"})
    assert (result.rc, result.stdout, result.stderr) == (3, "a b\n", "warn-line\n")
    assert seen == ["[local] warn-line"]


def test_local_put_dir_keeps_modes_and_makes_dest_private(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "secrets").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "secrets" / "token").write_text("t")
    (src / "secrets" / "token").chmod(0o600)
    dest = tmp_path / "dest" / "bundle"
    Local(echo=None).put_dir(src, str(dest))
    Local(echo=None).put_dir(src, str(dest))  # idempotent
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "secrets" / "token").stat().st_mode) == 0o600


def test_a_hung_command_is_stopped_at_its_timeout_with_its_children(tmp_path: Path) -> None:
    import time
    marker = f"gl-local-timeout-{tmp_path.name}"
    started = time.monotonic()
    result = Local(echo=None).run(["bash", "-c", f"exec -a {marker}-bg sleep 60 & sleep 60; true"], timeout=0.5)
    assert time.monotonic() - started < 10, "the background child kept the phase alive"
    assert result.rc == 124 and "timed out after 0.5 s on this machine" in result.stderr
    time.sleep(0.5)
    assert not running(marker)


def test_the_local_backstop_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Even when the command itself ignores its bound, _execute kills its group and does not hang on
    pipes a background child still holds."""
    import time

    from gldeploy.hostcmd import execute as _execute
    marker = f"gl-backstop-{tmp_path.name}"
    started = time.monotonic()
    result = _execute(["bash", "-c", f"exec -a {marker} sleep 60 & sleep 60"], None, "", timeout=0.5)
    assert time.monotonic() - started < 10 and result.rc == 124
    time.sleep(0.5)
    assert not running(marker)


def test_phase_commands_run_under_timeout_and_dry_run_shows_it() -> None:
    local = Local(echo=None).command(["bash", "x.sh"], {"GL_BUNDLE_DIR": "/b"}, 900)
    assert local[-8:] == ["env", "GL_BUNDLE_DIR=/b", "timeout", "-k", "10", "900", "bash", "x.sh"]
    remote = Ssh("h", "vagrant").command(["bash", "x.sh"], None, 900)[-1]
    assert shlex.split(remote) == ["sudo", "-n", "--", *watched(["timeout", "-k", "10", "900", "bash", "x.sh"])]
    assert "\n" not in remote  # one line per step in --dry-run


def test_ssh_gives_up_on_a_dead_connection() -> None:
    argv = Ssh("h", "root").ssh_argv("true")
    assert "ServerAliveInterval=15" in argv and "ServerAliveCountMax=4" in argv


def test_local_put_dir_replaces_stale_files(tmp_path: Path) -> None:
    old, new, dest = tmp_path / "old", tmp_path / "new", tmp_path / "dest"
    (old / "images").mkdir(parents=True)
    (old / "images/v1.0.tar").write_text("old")
    (new / "images").mkdir(parents=True)
    (new / "images/v1.1.tar").write_text("new")
    Local(echo=None).put_dir(old, str(dest))
    Local(echo=None).put_dir(new, str(dest))
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == [".gl-bundle", "v1.1.tar"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700


def test_every_phase_step_is_bounded() -> None:
    from gldeploy import plan, settings
    loaded = settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=192.168.56.10",
                                                        "HEALTH_TIMEOUT=100", "ROLLOUT_TIMEOUT=200"])
    assert plan.step_timeout(loaded) == 900


def test_put_dir_refuses_a_work_dir_holding_other_files(tmp_path: Path) -> None:
    """WORK_DIR=/opt must not be wiped: a directory with files gldeploy did not put there is refused
    (exit 2, bad input) and left exactly as it was."""
    src, dest = tmp_path / "src", tmp_path / "opt"
    (src / "lib").mkdir(parents=True)
    (src / "lib/common.sh").write_text("# lib\n")
    (dest / "otherapp").mkdir(parents=True)
    (dest / "otherapp/data").write_text("precious")
    with pytest.raises(DeployError, match="holds files gldeploy did not put there") as err:
        Local(echo=None).put_dir(src, str(dest))
    assert err.value.exit_code == 2
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["otherapp", "otherapp/data"]
    assert not (tmp_path / "opt.gl-new").exists()


def test_put_dir_keeps_a_symlinked_work_dir_and_replaces_its_contents(tmp_path: Path) -> None:
    src, real, link = tmp_path / "src", tmp_path / "real", tmp_path / "work"
    src.mkdir()
    (src / "new.sh").write_text("new\n")
    real.mkdir()
    link.symlink_to(real)
    Local(echo=None).put_dir(src, str(link))
    (real / "stale.sh").write_text("old\n")  # as from an earlier bundle
    Local(echo=None).put_dir(src, str(link))
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == [".gl-bundle", "new.sh"]


def test_a_shipment_cut_short_is_completed_by_the_next(tmp_path: Path) -> None:
    """The marker is written before anything is removed, so a WORK_DIR left half replaced (marker and
    some files) is still recognised and replaced whole."""
    src, dest = tmp_path / "src", tmp_path / "work"
    src.mkdir()
    (src / "01.sh").write_text("one\n")
    dest.mkdir()
    (dest / ".gl-bundle").write_text("written by gldeploy\n")
    (dest / "half-moved.sh").write_text("?\n")
    (tmp_path / "work.gl-new").mkdir()  # the unpack dir of the cut-short run
    Local(echo=None).put_dir(src, str(dest))
    assert sorted(p.name for p in dest.iterdir()) == [".gl-bundle", "01.sh"]
    assert not (tmp_path / "work.gl-new").exists()


def test_ctrl_c_stops_a_local_command_that_runs_in_its_own_session(tmp_path: Path) -> None:
    """The command is in a session of its own (so timeouts can kill its group), which also keeps the
    terminal's Ctrl-C from reaching it: the interrupt is passed on, and the child stops."""
    import os
    import signal
    import threading
    import time
    import uuid

    from gldeploy.hostcmd import execute as _execute
    marker = f"gl-ctrl-c-{uuid.uuid4().hex}"  # unique per run: a leftover of another run cannot match
    started: list[bool] = []

    def interrupt_once_running() -> None:  # only once the child runs, so the test cannot pass vacuously
        deadline = time.monotonic() + 10
        while not running(marker):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        started.append(True)
        os.kill(os.getpid(), signal.SIGINT)

    # a harness may start the tests with SIGINT ignored (a background job): act as a terminal would
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_once_running, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            _execute(["bash", "-c", f"exec -a {marker} sleep 60"], None, "", timeout=30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started, "the child never ran"
    assert not running(marker)


def test_a_phase_the_host_had_to_kill_is_reported_as_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from gldeploy import hostcmd
    monkeypatch.setattr(hostcmd, "KILL_GRACE", 1)  # the same SIGTERM-then-SIGKILL path, 9 s sooner
    result = Local(echo=None).run(["bash", "-c", "trap '' TERM; sleep 30"], timeout=0.5)
    assert result.rc in (137, -9) and "timed out after 0.5 s on this machine" in result.stderr


def test_a_command_killed_by_this_side_says_the_host_did_not_answer() -> None:
    from gldeploy.hostcmd import execute as _execute
    result = _execute(["sleep", "30"], None, "", timeout=0.5)
    assert result.rc == 124 and result.killed_locally and "no answer after 0.5 s" in result.stderr


def test_the_remote_watchdog_gets_values_as_arguments_never_in_its_script() -> None:
    argv = watched(["echo", "$(touch /tmp/x)", "it's"])
    assert argv == ["bash", "-c", WATCHDOG, "gl-watchdog", "echo", "$(touch /tmp/x)", "it's"]
    assert "\n" not in WATCHDOG and '"$@"' in WATCHDOG


@pytest.mark.parametrize(("rc", "said", "advice"), [
    (255, "ssh: Could not resolve hostname gl-nowhere: Name or service not known", "not a name this machine"),
    (255, "root@h: Permission denied (publickey).", "refused root's key"),
    (255, "ssh: connect to host 10.9.9.9 port 22: No route to host", "did not answer on its ssh port"),
    (1, "root is not in the sudoers file.", "may not use sudo"),
    (127, "sh: 1: sudo: not found", "sudo is not installed"),
])
def test_first_contact_advice_for_what_the_lab_cannot_stage(rc: int, said: str, advice: str) -> None:
    from gldeploy import firstcontact
    found = firstcontact.diagnose(rc, said + "\n", host="h", user="root", sudo=True)
    assert found is not None and advice in found


def test_no_first_contact_advice_for_a_command_s_own_failure() -> None:
    from gldeploy import firstcontact
    assert firstcontact.diagnose(1, "sudo: a password is required\n", host="h", user="root", sudo=False) is None
    assert firstcontact.diagnose(2, "Connection refused\n", host="h", user="root", sudo=True) is None
    assert firstcontact.diagnose(1, "kubectl: Connection refused\n", host="h", user="root", sudo=True) is None
