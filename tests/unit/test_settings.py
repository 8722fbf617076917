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
    path = write(tmp_path, MINIMAL + f"SSH_USER={quoted} # comment\n")
    assert settings.load(path, environ={}).ssh_user == LITERAL
    marker = Path("/tmp/gl-pwned")
    marker.unlink(missing_ok=True)
    out = subprocess.run(["bash", "-c", 'set -eu; source "$1"; printf %s "$SSH_USER"', "_", str(path)],
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
