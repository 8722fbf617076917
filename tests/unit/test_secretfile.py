"""secretfile: private secret files, and the k3s join-token format check (k3s pkg/clientaccess/token.go)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gldeploy import secretfile
from gldeploy.errors import ConfigError

CA_HASH = "0123456789abcdef" * 4  # 64 hex digits, as `sha256sum server-ca.crt` prints them
BOOTSTRAP = "abcdef.0123456789abcdef"  # `k3s token generate`: [a-z0-9]{6}.[a-z0-9]{16}
WHERE = "K3S_TOKEN_FILE=/root/gl/k3s-token (test.env:7)"


def refused(text: str, **kw: bool) -> str:
    with pytest.raises(ConfigError) as info:
        secretfile.check_k3s_token(text, WHERE, **{"for_server": True, **kw})
    assert info.value.exit_code == 2
    message = str(info.value)
    assert message.startswith(WHERE)
    secret = text.strip()
    if len(secret) >= 4:  # the token itself never appears in a message
        assert secret not in message
    return message


@pytest.mark.parametrize("text", [
    "s3cr3t-Password_42",                 # short (password) token
    "s3cr3t-Password_42\n",               # one trailing newline, as `echo >` writes it
    "user:with:colons",                   # k3s treats a bare string as the password, colons included
    f"K10{CA_HASH}::server:s3cr3t",       # secure token from /var/lib/rancher/k3s/server/token
    "K10::server:s3cr3t",                 # secure format with an empty CA hash
    f"K10{CA_HASH}::node:agentpass",      # agent-token file
])
def test_server_and_agent_tokens_are_accepted(text: str) -> None:
    secretfile.check_k3s_token(text, WHERE, for_server=True)
    secretfile.check_k3s_token(text, WHERE, for_server=False)


@pytest.mark.parametrize("text", [BOOTSTRAP, f"{BOOTSTRAP}\n", f"K10{CA_HASH}::{BOOTSTRAP}"])
def test_bootstrap_tokens_join_agents_but_not_servers(text: str) -> None:
    secretfile.check_k3s_token(text, WHERE, for_server=False)
    message = refused(text, for_server=True)
    assert "bootstrap token" in message and "agents" in message and "server token" in message


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("\n", "empty"),
    ("pass word", "whitespace"),
    ("password\n\n", "whitespace"),
    ("password\r\n", "whitespace"),
    ("pass\tword", "whitespace"),
    ("pass\x00word", "control character"),
    (f"K10{CA_HASH[:-1]}::server:s3cr3t", "64 hex digits"),
    (f"K10{'G' * 64}::server:s3cr3t", "64 hex digits"),
    (f"K10{CA_HASH}::server:", "password"),
    (f"K10{CA_HASH}::server", "<user>:<password>"),
    ("K10s3cr3tpassword", "K10"),
])
def test_malformed_tokens_are_refused_without_echoing_them(text: str, reason: str) -> None:
    assert reason in refused(text, for_server=False)


def test_first_server_cannot_use_a_ca_hash_it_has_not_generated_yet() -> None:
    message = refused(f"K10{CA_HASH}::server:s3cr3t", for_server=True, first_server=True)
    assert "first server" in message and "CA" in message
    secretfile.check_k3s_token("K10::server:s3cr3t", WHERE, for_server=True, first_server=True)
    secretfile.check_k3s_token("s3cr3t", WHERE, for_server=True, first_server=True)


def test_read_private_still_refuses_world_readable(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    token.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        secretfile.read_private(token, what="K3S_TOKEN_FILE", where="test")
    token.chmod(0o600)
    assert secretfile.read_private(token, what="K3S_TOKEN_FILE", where="test") == b"s3cr3t\n"
