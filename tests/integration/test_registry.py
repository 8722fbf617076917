"""Push to and pull from a real TLS + htpasswd registry; credentials never on a command line."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from gldeploy import image, registry
from gldeploy.errors import ConfigError, DeployError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> image.SampleImage:
    return image.build_sample_image_info("v1.1", tmp_path_factory.mktemp("img"))


@pytest.fixture
def spy_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every skopeo argv (and the auth file's mode and content at that moment); still runs it."""
    calls: list[dict[str, Any]] = []
    real_run = subprocess.run

    def spy(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        record: dict[str, Any] = {"argv": list(argv)}
        for flag in ("--authfile", "--dest-authfile", "--src-authfile"):
            if flag in argv:
                authfile = Path(argv[argv.index(flag) + 1])
                record.update(auth_mode=authfile.stat().st_mode & 0o777, auth_path=authfile,
                              auth_text=authfile.read_text(), dir_mode=authfile.parent.stat().st_mode & 0o777)
        calls.append(record)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(registry.subprocess, "run", spy)
    return calls


def test_push_then_pull_back_gives_the_same_digest(tls_registry: Any, sample: image.SampleImage,
                                                   tmp_path: Path, spy_runs: list[dict[str, Any]]) -> None:
    ref = f"{tls_registry.host}/gov-native/execution-backend:v1.1"
    creds = dict(ca_file=tls_registry.ca_file, user=tls_registry.user, password_file=tls_registry.password_file)
    pushed = registry.push(sample.path, ref, **creds)
    assert pushed == sample.digest
    assert registry.pull_digest(ref, **creds) == sample.digest
    back = registry.pull(ref, tmp_path / "back.oci.tar", **creds)
    assert image.manifest_digest(back, "v1.1") == sample.digest

    password = tls_registry.password_file.read_text().strip()
    assert len(spy_runs) == 3
    for call in spy_runs:
        assert not any(password in arg for arg in call["argv"]), call["argv"]
        assert not any(arg.startswith("--creds") or arg.endswith("-creds") for arg in call["argv"])
        assert call["auth_mode"] == 0o600 and call["dir_mode"] == 0o700
        assert tls_registry.user not in " ".join(call["argv"])
        assert '"auths"' in call["auth_text"] and tls_registry.host in call["auth_text"]
        assert not call["auth_path"].exists(), "auth file must be removed after use"
    assert "--dest-cert-dir" in spy_runs[0]["argv"] and "--preserve-digests" in spy_runs[0]["argv"]


def test_wrong_password_is_refused_naming_the_registry_not_the_password(
        tls_registry: Any, sample: image.SampleImage, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("Not-The-Password-42\n")
    wrong.chmod(0o600)
    with pytest.raises(DeployError) as info:
        registry.push(sample.path, f"{tls_registry.host}/gov-native/denied:v1.1", ca_file=tls_registry.ca_file,
                      user=tls_registry.user, password_file=wrong, retries=0)
    message = str(info.value)
    assert f"registry {tls_registry.host} refused the credentials of user {tls_registry.user!r}" in message
    assert "Not-The-Password-42" not in message
    assert info.value.exit_code == 1


def test_missing_credentials_are_reported_as_login_required(tls_registry: Any, sample: image.SampleImage) -> None:
    with pytest.raises(DeployError, match=f"registry {tls_registry.host} requires a login"):
        registry.pull_digest(f"{tls_registry.host}/gov-native/execution-backend:v1.1",
                             ca_file=tls_registry.ca_file, user=None, password_file=None)


def test_without_the_ca_tls_verification_fails_clearly(tls_registry: Any, sample: image.SampleImage) -> None:
    with pytest.raises(DeployError, match=f"TLS verification of registry {tls_registry.host} failed; "
                                          f"set REGISTRY_CA_FILE") as info:
        registry.push(sample.path, f"{tls_registry.host}/gov-native/execution-backend:v1.1", ca_file=None,
                      user=tls_registry.user, password_file=tls_registry.password_file, retries=0)
    assert tls_registry.password_file.read_text().strip() not in str(info.value)


def test_unknown_tag_is_reported(tls_registry: Any) -> None:
    with pytest.raises(DeployError, match="does not exist in registry"):
        registry.pull_digest(f"{tls_registry.host}/gov-native/never-pushed:v9", ca_file=tls_registry.ca_file,
                             user=tls_registry.user, password_file=tls_registry.password_file)


def test_password_file_readable_by_others_is_bad_input(tls_registry: Any, sample: image.SampleImage,
                                                       tmp_path: Path, spy_runs: list[dict[str, Any]]) -> None:
    loose = tmp_path / "pw"
    loose.write_text("x\n")
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644.*chmod 600") as info:
        registry.push(sample.path, f"{tls_registry.host}/a/b:v1", ca_file=tls_registry.ca_file,
                      user="u", password_file=loose)
    assert info.value.exit_code == 2 and spy_runs == []  # nothing was run


@pytest.mark.parametrize("ref", ["execution-backend:v1.1", "127.0.0.1:5000/Upper/case:v1",
                                 "127.0.0.1:5000/repo", "127.0.0.1:5000/repo:v1 --creds=a:b"])
def test_malformed_reference_is_bad_input(ref: str, sample: image.SampleImage) -> None:
    with pytest.raises(ConfigError, match="expected host\\[:port\\]/repository:tag"):
        registry.push(sample.path, ref, ca_file=None, user=None, password_file=None)


def test_missing_archive_and_half_credentials_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="image archive not found"):
        registry.push(tmp_path / "none.tar", "127.0.0.1:1/a:v1", ca_file=None, user=None, password_file=None)
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"")
    with pytest.raises(ConfigError, match="set both or neither"):
        registry.push(archive, "127.0.0.1:1/a:v1", ca_file=None, user="u", password_file=None)


def test_a_registry_left_by_a_killed_run_is_reclaimed(tmp_path: Path) -> None:
    """A run killed before its cleanup leaves docker-registry on the lab address; the next run (from
    any checkout) stops it by its pidfile and starts its own instead of failing to bind."""
    import os

    from gldeploy.lab.registry import LabRegistry
    from tests.fixtures.k3s_standin.testing import free_port
    port = free_port()
    first = LabRegistry(tmp_path / "first", "127.0.0.1", port)
    first.start()
    assert first.proc is not None
    orphan = first.proc.pid  # the "killed run" never calls first.stop()
    second = LabRegistry(tmp_path / "second", "127.0.0.1", port)
    try:
        info = second.start()
        assert info.address == f"127.0.0.1:{port}" and second.proc is not None
        first.proc.wait(timeout=15)  # reaped: it was stopped by the second start
        assert not os.path.exists(f"/proc/{orphan}") or first.proc.returncode is not None
        assert second.pidfile.read_text().strip() == str(second.proc.pid)
    finally:
        second.stop()
        first.stop()
    assert not second.pidfile.exists()
