"""Env files and settings: parsing like bash, validation with file:line:key, precedence."""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from gldeploy import envfile, settings
from gldeploy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MINIMAL = "CONTROL_PLANE_IPS=192.168.56.10\n"


def write(tmp_path: Path, text: str | bytes, name: str = "test.env") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def load_text(tmp_path: Path, text: str | bytes, **kw):
    return settings.load(write(tmp_path, text), environ=kw.pop("environ", {}), **kw)


def error_of(tmp_path: Path, text: str | bytes, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, **kw)
    assert info.value.exit_code == 2
    return str(info.value)


@pytest.mark.parametrize("name", ["single.env", "cluster.env", "airgap.env"])
def test_shipped_env_files_are_valid(name):
    s = settings.load(REPO / "env" / name, environ={})
    assert s.namespace == "gov-native"
    assert s.k3s_version == "v1.28.3+k3s2"


def test_defaults_are_documented_values(tmp_path):
    s = load_text(tmp_path, MINIMAL)
    assert (s.cluster_cidr, s.service_cidr) == ("10.42.0.0/16", "10.43.0.0/16")
    assert s.backend_version == "v1.1" and s.api_port == 6443 and s.secrets_encryption is True
    assert s.origin("CLUSTER_CIDR") == "default"
    assert s.origin("CONTROL_PLANE_IPS").endswith("test.env:1")


def test_precedence_default_file_environment_flag(tmp_path):
    path = write(tmp_path, MINIMAL + "BACKEND_VERSION=v1.2\nNAMESPACE=from-file\n")
    assert settings.load(path, environ={}).backend_version == "v1.2"
    env = {"GL_BACKEND_VERSION": "v1.3", "NAMESPACE": "ignored-without-prefix"}
    s = settings.load(path, environ=env)
    assert s.backend_version == "v1.3" and s.namespace == "from-file"
    assert s.origin("BACKEND_VERSION") == "environment GL_BACKEND_VERSION"
    s = settings.load(path, environ=env, overrides=["BACKEND_VERSION=v1.4"])
    assert s.backend_version == "v1.4" and s.origin("BACKEND_VERSION") == "--set BACKEND_VERSION"


@pytest.mark.parametrize("text, expected", [
    ("BACKEND_IMAGZ=x\n", "unknown key BACKEND_IMAGZ; did you mean BACKEND_IMAGE?"),
    ("K3S_VERSON=v1.28.3+k3s2\n", "did you mean K3S_VERSION?"),
    ("FROBNICATE=1\n", "unknown key FROBNICATE"),
])
def test_unknown_and_typod_keys(tmp_path, text, expected):
    message = error_of(tmp_path, MINIMAL + text)
    assert expected in message and "test.env:2" in message


def test_missing_required_key(tmp_path):
    message = error_of(tmp_path, "NAMESPACE=gov-native\n")
    assert "required key CONTROL_PLANE_IPS is missing" in message
    assert "CONTROL_PLANE_IPS=192.168.56.10" in message  # the fix


@pytest.mark.parametrize("line, fragments", [
    ("CONTROL_PLANE_IPS=192.168.56.300", ["test.env:1", "CONTROL_PLANE_IPS", "IPv4"]),
    ("CLUSTER_CIDR=10.42.0.1/16", ["CLUSTER_CIDR", "CIDR"]),
    ("K3S_VERSION=1.28", ["K3S_VERSION", "v1.28.3+k3s2"]),
    ("BACKEND_VERSION=latest", ["BACKEND_VERSION", "v1.1"]),
    ("API_PORT=70000", ["API_PORT", "between 1 and 65535"]),
    ("SECRETS_ENCRYPTION=maybe", ["SECRETS_ENCRYPTION", "true or false"]),
    ("NAMESPACE=Gov_Native", ["NAMESPACE", "DNS label"]),
])
def test_bad_values_name_file_line_key_and_expectation(tmp_path, line, fragments):
    text = line + "\n" + ("" if line.startswith("CONTROL_PLANE_IPS") else MINIMAL)
    message = error_of(tmp_path, text)
    for fragment in fragments:
        assert fragment in message


def test_overlapping_cidrs(tmp_path):
    message = error_of(tmp_path, MINIMAL + "CLUSTER_CIDR=10.42.0.0/16\nSERVICE_CIDR=10.42.128.0/17\n")
    assert "overlaps CLUSTER_CIDR" in message and "test.env:3" in message


def test_node_ip_inside_pod_cidr(tmp_path):
    message = error_of(tmp_path, "CONTROL_PLANE_IPS=10.42.1.5\n")
    assert "inside CLUSTER_CIDR" in message


def test_duplicate_ips(tmp_path):
    message = error_of(tmp_path, "TOPOLOGY=ha\nAPI_VIP=192.168.56.100\n"
                       "CONTROL_PLANE_IPS=192.168.56.11,192.168.56.12,192.168.56.13\n"
                       "WORKER_IPS=192.168.56.12\n")
    assert "192.168.56.12 is also listed in CONTROL_PLANE_IPS" in message


@pytest.mark.parametrize("servers", ["192.168.56.11,192.168.56.12",
                                     "192.168.56.11,192.168.56.12,192.168.56.13,192.168.56.14"])
def test_even_server_count_for_ha(tmp_path, servers):
    message = error_of(tmp_path, f"TOPOLOGY=ha\nAPI_VIP=192.168.56.100\nCONTROL_PLANE_IPS={servers}\n")
    assert "odd number of servers" in message


def test_ha_needs_vip(tmp_path):
    message = error_of(tmp_path, "TOPOLOGY=ha\nCONTROL_PLANE_IPS=192.168.56.11,192.168.56.12,192.168.56.13\n")
    assert "API_VIP" in message


def test_single_with_several_servers(tmp_path):
    assert "exactly one" in error_of(tmp_path, "CONTROL_PLANE_IPS=192.168.56.11,192.168.56.12\n")


def test_duplicate_keys(tmp_path):
    message = error_of(tmp_path, MINIMAL + "NAMESPACE=a\nNAMESPACE=b\n")
    assert "NAMESPACE is set twice (first at line 2)" in message and "test.env:3" in message


def test_crlf_line_endings(tmp_path):
    assert "CRLF" in error_of(tmp_path, MINIMAL.replace("\n", "\r\n"))


def test_bom(tmp_path):
    assert "byte-order mark" in error_of(tmp_path, b"\xef\xbb\xbf" + MINIMAL.encode())


def test_empty_file(tmp_path):
    assert "env file is empty" in error_of(tmp_path, "\n  \n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="env file not found"):
        settings.load(tmp_path / "nope.env", environ={})


@pytest.mark.parametrize("raw, reason", [
    ("SSH_USER=two words", "unquoted space"),
    ('SSH_USER="$(touch /tmp/pwned)"', "inside double quotes"),
    ("SSH_USER=$(touch /tmp/pwned)", "unquoted '$'"),
    ("SSH_USER=`touch /tmp/pwned`", "unquoted '`'"),
    ("SSH_USER=a;b", "special to bash"),
    ("SSH_USER='unterminated", "unterminated single quote"),
])
def test_values_bash_would_expand_are_refused(tmp_path, raw, reason):
    message = error_of(tmp_path, MINIMAL + raw + "\n")
    assert reason in message and "test.env:2" in message


LITERAL = "it's a $(touch /tmp/gl-pwned) `id` \"quoted\" value"


def test_single_quoted_values_stay_literal_in_python_and_bash(tmp_path):
    quoted = "'it'\\''s a $(touch /tmp/gl-pwned) `id` \"quoted\" value'"
    path = write(tmp_path, MINIMAL + f"REGISTRY_USER={quoted} # comment\nREGISTRY_PASSWORD_FILE=/root/pw\n")
    assert settings.load(path, environ={}).registry_user == LITERAL
    marker = Path("/tmp/gl-pwned")
    marker.unlink(missing_ok=True)
    out = subprocess.run(["bash", "-c", 'set -eu; source "$1"; printf %s "$REGISTRY_USER"', "_", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert out == LITERAL and not marker.exists()


def test_render_round_trips_through_bash_and_parser(tmp_path):
    values = {"SSH_USER": LITERAL, "NAMESPACE": "gov-native", "WORKER_IPS": ""}
    text = envfile.render(values, header="generated")
    parsed = {e.key: e.value for e in envfile.parse_text(text, "rendered.env")}
    assert parsed == values
    path = write(tmp_path, text)
    out = subprocess.run(["bash", "-c", 'source "$1"; printf %s "$SSH_USER"', "_", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert out == LITERAL


def test_export_prefix_and_comments(tmp_path):
    s = load_text(tmp_path, "# header\nexport CONTROL_PLANE_IPS=192.168.56.10  # the server\n\n")
    assert s.control_plane_ips == ("192.168.56.10",)


def test_set_flag_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_text(tmp_path, MINIMAL, overrides=["NAMESPACE"])
    with pytest.raises(ConfigError, match="did you mean NAMESPACE"):
        load_text(tmp_path, MINIMAL, overrides=["NAMESPAC=x"])


def test_settings_are_frozen(tmp_path):
    s = load_text(tmp_path, MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.namespace = "x"  # type: ignore[misc]


def test_every_key_is_documented():
    for row in settings.describe_keys():
        assert row["doc"] and row["type"], row


# ---- every problem at once ------------------------------------------------------------------

def test_every_problem_of_file_environment_and_flags_is_reported_at_once(tmp_path):
    text = ("NAMESPACE=Gov_Native\n"            # line 1: bad value
            "BACKEND_IMAGZ=x\n"                  # line 2: unknown key
            "SSH_USER=two words\n"               # line 3: syntax bash would run
            "API_PORT=70000\n"                   # line 4: bad value
            "CLUSTER_CIDR=10.42.0.0/16\n"
            "SERVICE_CIDR=10.42.128.0/17\n")     # line 6: overlaps CLUSTER_CIDR (cross-key)
    message = error_of(tmp_path, text, environ={"GL_BACKEND_REPLICAS": "two"},
                       overrides=["NAMESPAC=x", "WORK_DIR=../../etc", "BACKEND_VERSION"])
    lines = message.splitlines()
    expected = [("test.env:1", "NAMESPACE"), ("test.env:2", "BACKEND_IMAGZ"), ("test.env:3", "SSH_USER"),
                ("test.env:4", "API_PORT"), ("test.env:6", "SERVICE_CIDR"),
                ("environment GL_BACKEND_REPLICAS", "BACKEND_REPLICAS"), ("--set NAMESPAC", "NAMESPAC"),
                ("--set WORK_DIR", "WORK_DIR"), ("--set 'BACKEND_VERSION'", "KEY=VALUE"),
                ("required key CONTROL_PLANE_IPS", "CONTROL_PLANE_IPS=192.168.56.10")]
    for where, what in expected:
        assert any(where in line and what in line for line in lines), (where, what, message)
    assert lines[0].startswith("10 problems in the settings")


def test_cross_key_checks_whose_inputs_are_invalid_are_skipped_not_crashed(tmp_path):
    message = error_of(tmp_path, MINIMAL + "CLUSTER_CIDR=nonsense\nSERVICE_CIDR=10.43.0.0/16\n")
    assert "CLUSTER_CIDR" in message and "overlaps" not in message


def test_a_single_problem_is_reported_without_a_header(tmp_path):
    message = error_of(tmp_path, MINIMAL + "API_PORT=0\n")
    assert "problems in the settings" not in message and message.startswith(f"{tmp_path}/test.env:2")


# ---- WORK_DIR -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, reason", [
    ("../../etc", "absolute"), ("", "absolute"), ("relative/dir", "absolute"),
    ("/var/lib/../lib/gl", "'..'"), ("/var/lib/gl/./x", "'.'"), ("/var//lib/gl", "'//'"),
    ("/var/lib/gl/", "trailing '/'"), ("/", "system directory"), ("/etc", "system directory"),
    ("/usr/local", "system directory"), ("/var/lib", "system directory"), ("/tmp", "system directory"),
    ("/var/log", "system directory"), ("/proc/1/cwd", "/proc"), ("/sys/fs/gl", "/sys"),
    ("/dev/shm/gl", "/dev"), ("/var/lib/rancher/k3s/server", "k3s"), ("/home/alice", "home directory"),
    ("/opt/gl\nx", "control character"),
])
def test_work_dir_must_be_a_dedicated_absolute_normalised_directory(tmp_path, value, reason):
    message = error_of(tmp_path, MINIMAL, overrides=[f"WORK_DIR={value}"])
    assert "--set WORK_DIR" in message and reason in message and "/var/lib/gl-deploy" in message


@pytest.mark.parametrize("value", ["/var/lib/gl-deploy", "/opt/gl", "/opt/gl deploy", "/srv/gl/deploy",
                                   "/home/alice/gl-deploy"])
def test_dedicated_work_dirs_are_accepted(tmp_path, value):
    assert load_text(tmp_path, MINIMAL, overrides=[f"WORK_DIR={value}"]).work_dir == value


# ---- SSH and node addresses -----------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("SSH_USER", "$(touch /tmp/x)"), ("SSH_USER", "a\nb"), ("SSH_USER", "-oProxyCommand=id"),
    ("SSH_USER", "bad\x01"), ("SSH_USER", ""), ("SSH_USER", "a b"), ("SSH_USER", "x" * 33),
    ("SSH_KEY", "-oProxyCommand=id"), ("SSH_KEY", "key\nProxyCommand id"), ("SSH_KEY", "k\x1b[31m"),
    ("SSH_CONFIG", "-F/etc/passwd"), ("SSH_CONFIG", "cfg\tx"), ("SSH_CONFIG", "c\x7f"),
])
def test_ssh_values_that_could_become_options_or_break_lines_are_refused(tmp_path, name, value):
    message = error_of(tmp_path, MINIMAL, overrides=[f"{name}={value}"])
    assert f"--set {name}" in message


@pytest.mark.parametrize("name, value", [("SSH_USER", "vagrant"), ("SSH_USER", "svc-gl_1"),
                                         ("SSH_USER", "deploy.ops"), ("SSH_KEY", "~/.ssh/id_ed25519"),
                                         ("SSH_KEY", "/root/.ssh/id rsa"), ("SSH_CONFIG", "vagrant/.ssh-config")])
def test_ordinary_ssh_values_are_accepted(tmp_path, name, value):
    assert getattr(load_text(tmp_path, MINIMAL, overrides=[f"{name}={value}"]), name.lower()) == value


@pytest.mark.parametrize("address, kind", [("127.0.0.1", "loopback"), ("127.3.2.1", "loopback"),
                                           ("0.0.0.0", "unspecified"), ("224.0.0.5", "multicast"),
                                           ("169.254.10.1", "link-local"), ("255.255.255.255", "reserved")])
@pytest.mark.parametrize("name", ["CONTROL_PLANE_IPS", "WORKER_IPS", "API_VIP"])
def test_node_addresses_must_be_reachable_unicast(tmp_path, address, kind, name):
    message = error_of(tmp_path, MINIMAL, overrides=[f"{name}={address}"])
    assert f"--set {name}" in message and kind in message and address in message


# ---- flags and environment agree with the file ----------------------------------------------

def test_a_key_set_twice_by_flags_is_refused_naming_both(tmp_path):
    message = error_of(tmp_path, MINIMAL, overrides=["NAMESPACE=a", "NAMESPACE=b"])
    assert "NAMESPACE" in message and "--set NAMESPACE=a" in message and "--set NAMESPACE=b" in message


def test_near_miss_environment_variable_gives_a_warning_naming_the_key(tmp_path):
    s = load_text(tmp_path, MINIMAL, environ={"GL_NAMESPCE": "x", "GL_LAB_BOX": "b", "GL_ENV_FILE": "/x",
                                              "GL_ROOT": "/", "GL_SOMETHING_ELSE": "y"})
    assert len(s.warnings) == 1
    assert "GL_NAMESPCE" in s.warnings[0] and "GL_NAMESPACE" in s.warnings[0]
    assert s == load_text(tmp_path, MINIMAL)  # warnings do not take part in equality


# ---- k3s release URL and --disable ----------------------------------------------------------

def test_plain_http_release_url_needs_a_pinned_sha256(tmp_path):
    message = error_of(tmp_path, MINIMAL + "K3S_RELEASE_URL=http://mirror.local/k3s\n")
    assert "K3S_RELEASE_URL" in message and "K3S_SHA256" in message and "https://" in message
    s = load_text(tmp_path, MINIMAL + "K3S_RELEASE_URL=http://mirror.local/k3s\nK3S_SHA256=" + "a" * 64 + "\n")
    assert s.k3s_release_url == "http://mirror.local/k3s"
    assert load_text(tmp_path, MINIMAL + "K3S_RELEASE_URL=file:///srv/k3s\n").k3s_release_url == "file:///srv/k3s"
    local = "http://127.0.0.1:8080/k3s"  # a mirror on the same machine: no network path to alter
    assert load_text(tmp_path, MINIMAL + f"K3S_RELEASE_URL={local}\n").k3s_release_url == local


def test_unknown_k3s_disable_item_is_refused_with_the_near_match(tmp_path):
    message = error_of(tmp_path, MINIMAL + "K3S_DISABLE=metrics-server,servicelbs\n")
    assert "servicelbs" in message and "did you mean servicelb?" in message and "v1.28.3+k3s2" in message


@pytest.mark.parametrize("version, ok", [("v1.28.3+k3s2", False), ("v1.28.5+k3s1", True), ("v1.29.0+k3s1", True),
                                         ("v1.27.8+k3s2", False), ("v1.27.9+k3s1", True), ("v1.30.2+k3s1", True)])
def test_runtimes_can_be_disabled_only_from_the_k3s_release_that_packages_it(tmp_path, version, ok):
    text = MINIMAL + f"K3S_VERSION={version}\nK3S_DISABLE=runtimes\n"
    if ok:
        assert load_text(tmp_path, text).k3s_disable == ("runtimes",)
    else:
        message = error_of(tmp_path, text)
        assert "runtimes" in message and version in message and "v1.28.5+k3s1" in message


# ---- types and docs -------------------------------------------------------------------------

def test_topology_is_the_sequences_literal():
    import typing

    from gldeploy import sequences
    assert typing.get_type_hints(settings.Settings)["topology"] == sequences.Topology
    assert typing.get_type_hints(settings.Settings)["warnings"] == tuple[str, ...]


def test_docs_configuration_md_is_generated_from_the_table():
    from gldeploy.tasks.settings_tasks import configuration_markdown
    assert (REPO / "docs" / "configuration.md").read_text() == configuration_markdown()


def test_settings_module_stays_small():
    for name in ("settings.py", "settings_keys.py", "keytypes.py", "envfile.py", "secretfile.py"):
        assert len((REPO / "gldeploy" / name).read_text().splitlines()) <= 300, name


def test_a_bad_value_overridden_by_a_later_source_is_still_reported(tmp_path):
    message = error_of(tmp_path, MINIMAL + "API_PORT=http\n", environ={"GL_NAMESPACE": "Bad_Name"},
                       overrides=["API_PORT=6443", "NAMESPACE=gov-native"])
    assert "test.env:2: API_PORT='http' is invalid" in message and "overridden by --set API_PORT" in message
    assert "environment GL_NAMESPACE: NAMESPACE='Bad_Name'" in message


def test_warnings_are_part_of_the_error_they_may_explain(tmp_path):
    message = error_of(tmp_path, "NAMESPACE=gov-native\n", environ={"GL_CONTROL_PLANE_IP": "192.168.56.10"})
    assert "required key CONTROL_PLANE_IPS is missing" in message
    assert "warning: environment GL_CONTROL_PLANE_IP" in message and "GL_CONTROL_PLANE_IPS" in message


def test_load_balancer_priorities_must_differ_and_match_the_nodes() -> None:
    base = ["TOPOLOGY=ha", "CONTROL_PLANE_IPS=10.0.0.11,10.0.0.12,10.0.0.13", "API_VIP=10.0.0.100"]
    with pytest.raises(ConfigError) as err:
        settings.load(None, environ={}, overrides=[*base, "LB_PRIORITIES=150,150,140"])
    assert "LB_PRIORITIES gives priority 150 to more than one node" in str(err.value)
    with pytest.raises(ConfigError, match="LB_PRIORITIES has 2 value.s. for 3 load balancer node"):
        settings.load(None, environ={}, overrides=[*base, "LB_PRIORITIES=150,140"])
    with pytest.raises(ConfigError, match="LB_IPS address 10.0.0.12 is also listed in CONTROL_PLANE_IPS"):
        settings.load(None, environ={}, overrides=[*base, "LB_IPS=10.0.0.12,10.0.0.5"])
    ok = settings.load(None, environ={}, overrides=[*base, "LB_PRIORITIES=150,140,130"])
    assert ok.lb_priorities == (150, 140, 130) and ok.to_env()["LB_PRIORITIES"] == "150,140,130"


def test_a_cni_other_than_flannel_needs_the_cluster_sequence() -> None:
    with pytest.raises(ConfigError, match="CNI=calico needs TOPOLOGY=ha"):
        settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=10.0.0.11", "CNI=calico"])
    with pytest.raises(ConfigError, match="CNI='weave'.*expected one of"):
        settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=10.0.0.11", "CNI=weave"])


CLUSTER = ["TOPOLOGY=ha", "CONTROL_PLANE_IPS=10.0.0.11,10.0.0.12,10.0.0.13", "API_VIP=10.0.0.100"]


def load_flags(*flags: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=list(flags))


def test_harbor_needs_its_project_at_settings_time() -> None:
    with pytest.raises(ConfigError, match="REGISTRY_KIND=harbor needs REGISTRY_PROJECT.*REGISTRY_PROJECT=gl-native"):
        load_flags("CONTROL_PLANE_IPS=10.0.0.11", "REGISTRY=harbor.gov.local", "REGISTRY_KIND=harbor")
    ok = load_flags("CONTROL_PLANE_IPS=10.0.0.11", "REGISTRY=harbor.gov.local", "REGISTRY_KIND=harbor",
                    "REGISTRY_PROJECT=gl-native")
    assert ok.registry_project == "gl-native"


@pytest.mark.parametrize("bastion, fragment", [
    ("10.42.0.5", "BASTION_IP address 10.42.0.5 is inside CLUSTER_CIDR"),
    ("10.43.1.1", "BASTION_IP address 10.43.1.1 is inside SERVICE_CIDR"),
    ("10.0.0.11", "BASTION_IP address 10.0.0.11 is also listed in CONTROL_PLANE_IPS"),
])
def test_bastion_is_outside_the_cluster_networks_and_not_a_node(bastion: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_flags("CONTROL_PLANE_IPS=10.0.0.11", f"BASTION_IP={bastion}")
    assert load_flags("CONTROL_PLANE_IPS=10.0.0.11", "BASTION_IP=10.0.0.5").bastion_ip == "10.0.0.5"


def test_ha_needs_two_backend_replicas() -> None:
    with pytest.raises(ConfigError) as err:
        load_flags(*CLUSTER, "BACKEND_REPLICAS=1")
    assert "BACKEND_REPLICAS=1" in str(err.value) and "BACKEND_REPLICAS=2" in str(err.value)
    assert load_flags(*CLUSTER, "BACKEND_REPLICAS=2").backend_replicas == 2
    assert load_flags("CONTROL_PLANE_IPS=10.0.0.11", "BACKEND_REPLICAS=1").backend_replicas == 1


def test_etcd_snapshot_schedule_and_retention() -> None:
    loaded = load_flags("CONTROL_PLANE_IPS=10.0.0.11")
    assert (loaded.etcd_snapshot_schedule, loaded.etcd_snapshot_retention) == ("0 */12 * * *", 5)
    for good in ("*/30 1-5 * * 1,3", "@daily", "15 2 1 jan *"):
        assert load_flags("CONTROL_PLANE_IPS=10.0.0.11", f"ETCD_SNAPSHOT_SCHEDULE={good}").etcd_snapshot_schedule == good
    for bad in ("0 */12 * *", "61 * * * *", "0 0 * * * *", "@sometimes", "0 0 * * 8", "*/0 * * * *"):
        with pytest.raises(ConfigError, match="ETCD_SNAPSHOT_SCHEDULE=.*cron"):
            load_flags("CONTROL_PLANE_IPS=10.0.0.11", f"ETCD_SNAPSHOT_SCHEDULE={bad}")
    with pytest.raises(ConfigError, match="ETCD_SNAPSHOT_RETENTION"):
        load_flags("CONTROL_PLANE_IPS=10.0.0.11", "ETCD_SNAPSHOT_RETENTION=0")


def test_backend_image_archive_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.oci.tar"
    with pytest.raises(ConfigError) as err:
        load_flags("CONTROL_PLANE_IPS=10.0.0.11", f"BACKEND_IMAGE_ARCHIVE={missing}")
    assert f"BACKEND_IMAGE_ARCHIVE={missing}" in str(err.value) and "not found" in str(err.value)
    archive = tmp_path / "backend.tar"
    archive.write_bytes(b"x")
    assert load_flags("CONTROL_PLANE_IPS=10.0.0.11", f"BACKEND_IMAGE_ARCHIVE={archive}").backend_image_archive == str(archive)


def test_lb_packages_dir_is_a_key_that_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LB_PACKAGES_DIR=.*not a directory"):
        load_flags(*CLUSTER, f"LB_PACKAGES_DIR={tmp_path / 'none'}")
    assert load_flags(*CLUSTER, f"LB_PACKAGES_DIR={tmp_path}").lb_packages_dir == str(tmp_path)
