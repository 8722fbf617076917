"""Value types for settings keys: parse a string, or raise ValueError saying what was expected."""
from __future__ import annotations

import ipaddress
import re
from typing import Callable

Parser = Callable[[str], object]


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


def ip_list(value: str) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    out = []
    for item in items:
        try:
            out.append(ip(item))
        except ValueError:
            raise ValueError(f"a comma-separated list of IPv4 addresses; {item!r} is not one") from None
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


K3S_VERSION = pattern(r"v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+", "a k3s release such as v1.28.3+k3s2")
BACKEND_VERSION = pattern(r"v[0-9]+(\.[0-9]+){0,2}", "a version such as v1.1 or v1.1.0")
SHA256 = pattern(r"|[0-9a-f]{64}", "64 lower-case hex digits (sha256), or empty")
DNS_LABEL = pattern(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a DNS label: lower-case letters, digits, '-'")
HOSTNAME = pattern(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                   "a lower-case DNS name such as backend.gov-native.local")
IMAGE = pattern(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*",
                "an image repository without tag, e.g. registry.local:5000/gov-native/backend")
HOSTPORT = pattern(r"|[a-z0-9.-]+(:[0-9]{1,5})?", "host[:port] such as registry.local:5000, or empty")
URL = pattern(r"(https?|file)://\S+", "an http(s):// or file:// URL")
PATH = pattern(r"[^\n\0]*", "a path")
