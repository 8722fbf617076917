"""Secrets live in files private to their owner (mode 0600 or stricter); one reader checks that."""
from __future__ import annotations

import re
import stat
from pathlib import Path

from .errors import ConfigError


def read_private(path: str | Path, *, what: str, where: str) -> bytes:
    """The contents of a secret file; ConfigError (exit 2) when missing, readable by others, or empty.

    `what` names the secret ("K3S_TOKEN_FILE=/x", "registry password file /x"), `where` the
    setting's origin or the file itself, so the message says which key and which file to fix.
    """
    p = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        data = p.read_bytes() if p.is_file() else None
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise ConfigError(f"{where}: {what}: cannot read it: {exc.strerror}") from None
    if data is None:
        raise ConfigError(f"{where}: {what}: file not found; create it with mode 0600 "
                          f"(install -m 600 /dev/null {path}, then write the secret into it)")
    if mode & 0o077:
        raise ConfigError(f"{where}: {what} has mode {mode:04o}, readable by others; the secret must be "
                          f"private to its owner: chmod 600 {path}")
    if not data.strip():
        raise ConfigError(f"{where}: {what} is empty; put the secret in the file")
    return data


_BOOTSTRAP = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")  # kubeadm bootstrap token, `k3s token generate`
_TOKEN_PREFIX = "K10"


def check_k3s_token(text: str, where: str, *, for_server: bool, first_server: bool = False) -> None:
    """ConfigError (exit 2) unless `text` (a token file's content) is a k3s join token the node can use.

    Mirrors k3s pkg/clientaccess/token.go parseToken, plus what a server needs:
    - short token: any string not starting with ``K10``; k3s uses it as the password (':' allowed);
    - secure token ``K10<CA hash>::<credentials>``: the CA hash empty or 64 hex digits (sha256 of
      the cluster CA), credentials ``<user>:<password>`` (password not empty) or a bootstrap token;
    - bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}`` (``k3s token generate`` / ``k3s token create``):
      it joins agents only. A server must join with the server token (docs.k3s.io/cli/token: "Bootstrap
      tokens can only be used to join agents"), so `for_server` refuses it;
    - `first_server` (the server that creates the cluster, without a custom CA): the CA does not exist
      yet, so a secure token carrying a CA hash cannot match it; only the password form works there.
    Whitespace or control characters anywhere are refused (one trailing newline is allowed). The token
    itself never appears in a message.
    """
    token = text.removesuffix("\n")
    fix = "write the token on one line (e.g. printf %s TOKEN > FILE; chmod 600 FILE)"
    if not token:
        raise ConfigError(f"{where}: the k3s token file is empty; {fix}")
    if any(c.isspace() for c in token):
        raise ConfigError(f"{where}: the k3s token contains whitespace (a space, tab, \\r or a second line); "
                          f"{fix}")
    if any(ord(c) < 32 or ord(c) == 127 for c in token):
        raise ConfigError(f"{where}: the k3s token contains a control character; {fix}")
    ca_hash, creds = "", token
    if token.startswith(_TOKEN_PREFIX):
        rest = token[len(_TOKEN_PREFIX):]
        if "::" in rest:
            ca_hash, creds = rest.split("::", 1)
            if ca_hash and not re.fullmatch(r"[0-9a-f]{64}", ca_hash):
                raise ConfigError(f"{where}: the k3s secure token's CA hash (between K10 and '::') must be "
                                  f"64 hex digits (sha256 of the cluster CA); copy the token again from "
                                  f"/var/lib/rancher/k3s/server/token")
        else:
            creds = rest
        if not _BOOTSTRAP.fullmatch(creds):
            _user, sep, password = creds.partition(":")
            if not sep or not password:
                raise ConfigError(f"{where}: a k3s token starting with K10 must be K10<CA hash>::<user>:"
                                  f"<password> (the password not empty) or K10<CA hash>::<bootstrap token>; "
                                  f"copy it from /var/lib/rancher/k3s/server/token, or use a password that "
                                  f"does not start with K10")
    if for_server and _BOOTSTRAP.fullmatch(creds):
        raise ConfigError(f"{where}: this is a bootstrap token (k3s token generate/create), which joins "
                          f"agents only; servers need the server token (/var/lib/rancher/k3s/server/token "
                          f"or the password the cluster was created with)")
    if first_server and ca_hash:
        raise ConfigError(f"{where}: the first server creates the cluster CA, so a token carrying a CA hash "
                          f"(K10<hash>::...) cannot match it yet; give the first server the password only "
                          f"(the part after '<user>:')")
