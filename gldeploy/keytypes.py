"""Value types for settings keys: parse a string, or raise ValueError saying what was expected."""
from __future__ import annotations

import difflib
import ipaddress
import re
import urllib.parse
from collections.abc import Callable

Parser = Callable[[str], object]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(value: str) -> str:
    return value


def integer(minimum: int = 0, maximum: int | None = None) -> Parser:
    def parse(value: str) -> int:
        if not re.fullmatch(r"[0-9]+", value):
            raise ValueError(f"a whole number >= {minimum}")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ValueError(f"a whole number between {minimum} and {maximum or 'any'}")
        return number
    return parse


def integer_list(minimum: int, maximum: int) -> Parser:
    """A comma list of whole numbers in [minimum, maximum] (empty = none)."""
    def one(item: str) -> int:
        if not re.fullmatch(r"[0-9]+", item) or not minimum <= int(item) <= maximum:
            raise ValueError(item)
        return int(item)

    def parse(value: str) -> tuple[int, ...]:
        try:
            return tuple(one(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"a comma-separated list of whole numbers between {minimum} and {maximum}") from None
    return parse


def boolean(value: str) -> bool:
    low = value.lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    raise ValueError("true or false")


def choice(*options: str) -> Parser:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value
    return parse


def pattern(regex: str, expected: str) -> Parser:
    compiled = re.compile(regex)

    def parse(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(expected)
        return value
    return parse


def ip(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError("an IPv4 address such as 192.168.56.10") from None


def node_ip(value: str) -> str:
    """A host's own IPv4 address: unicast and reachable from the other hosts."""
    addr = ipaddress.IPv4Address(ip(value))
    for kind, bad in (("loopback", addr.is_loopback), ("unspecified", addr.is_unspecified),
                      ("multicast", addr.is_multicast), ("link-local", addr.is_link_local),
                      ("reserved", addr.is_reserved)):
        if bad:
            raise ValueError(f"a host's unicast address such as 192.168.56.10; {value} is a {kind} address, "
                             f"which the other hosts cannot reach (for this machine use --hosts local)")
    return str(addr)


def optional_node_ip(value: str) -> str:
    return node_ip(value) if value else ""


def node_ip_list(value: str) -> tuple[str, ...]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if item:
            try:
                out.append(node_ip(item))
            except ValueError as exc:
                raise ValueError(f"a comma-separated list of IPv4 host addresses; {item!r}: {exc}") from None
    return tuple(out)


def cidr(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"an IPv4 network in CIDR form such as 10.42.0.0/16 ({exc})") from None


def word_list(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    for item in items:
        if not re.fullmatch(r"[a-z0-9-]+", item):
            raise ValueError(f"a comma-separated list of lower-case names; {item!r} is not one")
    return items


def path(value: str) -> str:
    """A file or directory path (empty = unset): no control characters, not an option."""
    if _CONTROL.search(value):
        raise ValueError("a path without control characters (newline, tab, escape...)")
    if value.startswith("-"):
        raise ValueError("a path that does not start with '-' (ssh and others would read it as an option); "
                         "write ./" + value + " for a relative path")
    return value


def posix_user(value: str) -> str:
    """A POSIX portable user name: letters, digits, '.', '_', '-', not starting with '-' or '.'."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}", value):
        raise ValueError("a POSIX user name such as vagrant or deploy (letters, digits, '.', '_', '-'; "
                         "at most 32; not starting with '-' or '.')")
    return value


def basic_auth_user(value: str) -> str:
    """An HTTP basic-auth user id: no control characters and no ':' (RFC 7617)."""
    if _CONTROL.search(value) or ":" in value:
        raise ValueError("a user name without ':' or control characters")
    return value


# WORK_DIR's contents are replaced on every deploy: never a directory the system or k3s owns.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/include",
    "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/lib",
    "/usr/local/sbin", "/usr/local/share", "/usr/sbin", "/usr/share", "/usr/src", "/var", "/var/backups",
    "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run",
    "/var/spool", "/var/tmp", "/etc/systemd", "/var/lib/kubelet",
})
_NEVER_UNDER = ("/proc", "/sys", "/dev", "/boot")
_K3S_OWNED = ("/var/lib/rancher", "/etc/rancher", "/run/k3s")


def work_dir(value: str) -> str:
    """An absolute, normalised, dedicated directory (its contents are replaced on every deploy)."""
    if _CONTROL.search(value):
        raise ValueError("a directory path without control characters")
    if not value.startswith("/"):
        raise ValueError(f"an absolute path such as /var/lib/gl-deploy, not {value!r}")
    parts = value.split("/")[1:]
    for bad, what in (("..", "'..'"), (".", "'.'")):
        if bad in parts:
            raise ValueError(f"a normalised path without {what} components, e.g. /var/lib/gl-deploy")
    if "//" in value:
        raise ValueError("a normalised path without '//', e.g. /var/lib/gl-deploy")
    if value != "/" and value.endswith("/"):
        raise ValueError("a path without a trailing '/', e.g. /var/lib/gl-deploy")
    if value in SYSTEM_DIRS:
        raise ValueError(f"a dedicated directory such as /var/lib/gl-deploy; {value} is a system directory "
                         f"whose contents would be replaced")
    for top in _NEVER_UNDER:
        if value.startswith(top + "/"):
            raise ValueError(f"a directory on disk such as /var/lib/gl-deploy, not under {top}")
    for top in _K3S_OWNED:
        if value == top or value.startswith(top + "/"):
            raise ValueError(f"a directory of its own such as /var/lib/gl-deploy, not inside {top}, which "
                             f"k3s owns")
    if len(parts) == 2 and parts[0] == "home":
        raise ValueError(f"a dedicated directory such as /var/lib/gl-deploy or {value}/gl-deploy; {value} is a "
                         f"home directory")
    return value


def k3s_release(version: str) -> tuple[int, int, int, int]:
    """v1.28.5+k3s1 -> (1, 28, 5, 1), for ordering k3s releases."""
    match = re.fullmatch(r"v([0-9]+)\.([0-9]+)\.([0-9]+)\+k3s([0-9]+)", version)
    if not match:
        raise ValueError("a k3s release such as v1.28.3+k3s2")
    major, minor, patch, build = (int(g) for g in match.groups())
    return major, minor, patch, build


# `k3s server --disable` items (k3s pkg/cli/cmds/stage.go DisableItems). k3s ignores unknown items
# silently. `runtimes` (the RuntimeClasses manifest) came with k3s PR #8936 (master, v1.29.0+k3s1)
# and its December 2023 backports #9013/#9014/#9024; first releases per minor line below.
DISABLE_ITEMS = ("coredns", "servicelb", "traefik", "local-storage", "metrics-server")
RUNTIMES_SINCE = {25: "v1.25.16+k3s4", 26: "v1.26.12+k3s1", 27: "v1.27.9+k3s1", 28: "v1.28.5+k3s1"}


def k3s_disable_items(version: str) -> tuple[str, ...]:
    """The packaged components `--disable` accepts in this k3s release."""
    release = k3s_release(version)
    first = RUNTIMES_SINCE.get(release[1]) if release[0] == 1 else None
    has_runtimes = release >= (1, 29, 0, 0) if first is None else release >= k3s_release(first)
    if release < (1, 25, 0, 0):
        has_runtimes = False
    return DISABLE_ITEMS + (("runtimes",) if has_runtimes else ())


def disable_problem(item: str, version: str) -> str:
    """Why `item` is not a --disable item of k3s `version`, with the near match; '' when it is one."""
    allowed = k3s_disable_items(version)
    if item in allowed:
        return ""
    if item == "runtimes":
        return (f"'runtimes' is packaged from k3s v1.29.0+k3s1 (and {', '.join(RUNTIMES_SINCE.values())}); "
                f"K3S_VERSION={version} has no such component to disable")
    close = difflib.get_close_matches(item, allowed + ("runtimes",), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{item!r} is not a packaged component of k3s {version} (k3s would ignore it){hint}"


def plain_http(url: str) -> bool:
    """An http:// URL that crosses a network: loopback hosts (127.0.0.0/8, ::1, localhost) have no path
    anyone could alter, so a mirror served on the same machine is not plain http in this sense."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http":
        return False
    host = parsed.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


K3S_VERSION = pattern(r"v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+", "a k3s release such as v1.28.3+k3s2")
BACKEND_VERSION = pattern(r"v[0-9]+(\.[0-9]+){0,2}", "a version such as v1.1 or v1.1.0")
SHA256 = pattern(r"|[0-9a-f]{64}", "64 lower-case hex digits (sha256), or empty")
DNS_LABEL = pattern(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a DNS label: lower-case letters, digits, '-'")
HOSTNAME = pattern(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                   "a lower-case DNS name such as backend.gov-native.local")
IMAGE = pattern(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(@sha256:[0-9a-f]{64})?",
                "an image repository without tag, optionally pinned by digest (repo@sha256:<64 hex>), e.g. "
                "registry.local:5000/gov-native/backend")
HOSTPORT = pattern(r"|[a-z0-9.-]+(:[0-9]{1,5})?", "host[:port] such as registry.local:5000, or empty")
URL = pattern(r"(https?|file)://[^\s\x00-\x1f\x7f]+", "an https://, http:// or file:// URL")
PATH = path
