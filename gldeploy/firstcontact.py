"""First contact with a host: recognise why ssh or sudo refused and say what to do about it.

ssh (exit 255) and ``sudo -n`` (exit 1, or 127 when missing) fail in their own words; an operator
setting up a site needs the next step: accept a host key (and how to check it), clear a changed
one, open a port, or grant NOPASSWD sudo. ``diagnose`` maps their messages to that advice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# a refusing sudo has the last word, in one of these forms
_SUDO_LINE = re.compile(r"^sudo: |\bsudo: (command )?not found$|is not in the sudoers file|is not allowed to")
_KEYSCAN = "ssh-keyscan -t ed25519"
_HOST_FP = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    via: str  # "ssh" (exit 255) or "sudo"
    advice: str  # {host}, {user} and {timeout} are filled in


def _rule(pattern: str, via: str, advice: str) -> _Rule:
    return _Rule(re.compile(pattern, re.IGNORECASE | re.MULTILINE), via, advice)


_RULES = (
    _rule(r"REMOTE HOST IDENTIFICATION HAS CHANGED|host key for .* has changed", "ssh",
          "the host key of {host} is not the one in known_hosts: the host was reinstalled, or something "
          "sits in between. Compare the fingerprint on the host's console (`" + _HOST_FP + "`) with "
          "the one ssh shows; only if they match, drop the old key with `ssh-keygen -R {host}` (for a "
          "port other than 22: `ssh-keygen -R '[{host}]:PORT'`) and accept the new one as for a new host"),
    _rule(r"host key is known for|Host key verification failed", "ssh",
          "the host key of {host} is not known yet, and gldeploy never accepts one blindly (BatchMode). "
          "Accept it once: `" + _KEYSCAN + " {host} > /tmp/{host}.key`, compare `ssh-keygen -lf "
          "/tmp/{host}.key` with the host's own (`" + _HOST_FP + "` on its console), then append the "
          "file to ~/.ssh/known_hosts (or to SSH_CONFIG's UserKnownHostsFile); or run `ssh {user}@{host} "
          "true` once and answer yes after comparing the fingerprint"),
    _rule(r"Connection refused", "ssh",
          "nothing accepts ssh connections at {host}'s address and port: check the address and the port "
          "(SSH_CONFIG's HostName/Port), that sshd runs there (`systemctl status ssh` or `sshd`), and "
          "that no firewall rejects the port"),
    _rule(r"timed out|No route to host|Network is unreachable", "ssh",
          "{host} did not answer on its ssh port within {timeout}: check the address and the port "
          "(SSH_CONFIG's HostName/Port), that the host is up, that firewalls on the way let the port "
          "through (silent drops look like this), and that sshd runs there"),
    _rule(r"Could not resolve hostname|Name or service not known", "ssh",
          "{host} is not a name this machine can resolve: check the spelling, use an address, or add a "
          "`Host {host}` entry with its HostName to SSH_CONFIG"),
    _rule(r"Permission denied \(", "ssh",
          "{host} refused {user}'s key: check SSH_USER and SSH_KEY, and that the public key is in "
          "~{user}/.ssh/authorized_keys on the host (`ssh-copy-id -i KEY.pub {user}@{host}`)"),
    _rule(r"^sudo: (a password is required|a terminal is required)", "sudo",
          "sudo on {host} asks {user} for a password, and gldeploy runs unattended: give {user} "
          "password-less sudo (`{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/gl-deploy, edited "
          "with `visudo -f`), or {instead}"),
    _rule(r"^sudo: sorry, you must have a tty", "sudo",
          "sudo on {host} has `requiretty` set, so it refuses commands run over ssh without a terminal: "
          "add `Defaults:{user} !requiretty` (with NOPASSWD) in /etc/sudoers.d/gl-deploy via `visudo -f`, "
          "or {instead}"),
    _rule(r"is not in the sudoers file|is not allowed to (run sudo|execute)", "sudo",
          "{user} may not use sudo on {host}: grant it password-less sudo (`{user} ALL=(ALL) NOPASSWD: "
          "ALL` in /etc/sudoers.d/gl-deploy via `visudo -f`), or {instead}"),
    _rule(r"\bsudo: (command )?not found|sudo: No such file", "sudo",
          "sudo is not installed on {host}, and {user} is not root: install it (`apt-get install sudo` "
          "or `dnf install sudo`) and grant {user} password-less sudo, or {instead}"),
)


def diagnose(rc: int, stderr: str, *, host: str, user: str, sudo: bool, timeout: str = "the connect timeout",
             instead: str = "use SSH_USER=root") -> str | None:
    """Advice for a failure of ssh itself (rc 255) or of sudo before the command ran (only when
    `sudo` was used); None when the failure is the command's own. `instead`: the way round sudo."""
    if rc == 255:
        via = "ssh"
    elif sudo and rc in (1, 127):
        via = "sudo"
    else:
        return None
    said = [line.strip() for line in stderr.splitlines() if line.strip()]
    if via == "sudo" and not (said and _SUDO_LINE.search(said[-1])):
        return None  # sudo did not have the last word: the command ran, its failure is its own
    for rule in _RULES:
        if rule.via == via and rule.pattern.search(stderr):
            return rule.advice.format(host=host, user=user, timeout=timeout, instead=instead)
    return None


def last_words(stderr: str) -> str:
    """ssh's or sudo's own message, short: its last meaningful lines, warnings banner dropped."""
    lines = [line.strip() for line in stderr.replace("\r", "").splitlines()]
    lines = [line for line in lines if line and not set(line) <= {"@"}]
    return " | ".join(lines[-2:])[-300:]
