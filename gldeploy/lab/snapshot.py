"""Host snapshots (gldeploy/lab/host_snapshot.sh) and their comparison: what an install left behind after
its uninstall. A snapshot is a dict of sections, each normalised here to a mapping KEY -> VALUE so that
added, removed and changed entries can be named; differences matching ALLOWLIST are reported apart."""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from gldeploy.errors import DeployError

SCRIPT = Path(__file__).with_name("host_snapshot.sh")
SECTIONS = ("files", "units", "mounts", "links", "addrs", "netns", "firewall", "sockets")
Kind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class Allowed:
    """A difference that may remain after the uninstall, and why (docs/lab.md, "Day-2 lab")."""

    section: str
    patterns: tuple[str, ...]  # fnmatch patterns on the difference's key (a path, a unit, ...)
    reason: str


# Keep this tiny: every entry is a thing the uninstall leaves ON PURPOSE, with the reason.
ALLOWLIST: tuple[Allowed, ...] = (
    Allowed("files", ("/var/lib/gl-deploy-day2-backups", "/var/lib/gl-deploy-day2-backups/*"),
            "backups written on the node by backup.sh: data the operator may still need; an uninstall never "
            "deletes backups (remove them by hand once copied off)"),
    Allowed("files", ("/etc/gl-deploy", "/etc/gl-deploy/CHANGELOG"),
            "the host's append-only change log: what was installed, upgraded and uninstalled, and when; "
            "k3s-uninstall.sh adds its own line and keeps it (versions.json, what is installed, is removed)"),
)


@dataclass(frozen=True)
class Difference:
    section: str
    kind: Kind
    key: str
    before: str = ""
    after: str = ""

    def __str__(self) -> str:
        if self.kind == "changed":
            return f"{self.section}: changed {self.key}: {self.before} -> {self.after}"
        return f"{self.section}: {self.kind} {self.key}" + (f" ({self.after or self.before})"
                                                            if (self.after or self.before) else "")


def parse(text: str, where: str) -> dict[str, Any]:
    """The JSON object host_snapshot.sh printed (DeployError naming `where` when it is not one)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeployError(f"host snapshot of {where}: not JSON ({exc}); first bytes: {text[:120]!r}") from None
    if not isinstance(data, dict) or data.get("format") != 1:
        raise DeployError(f"host snapshot of {where}: expected a format 1 object from host_snapshot.sh")
    return data


def _lines(data: Mapping[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    return [str(x) for x in value] if isinstance(value, list) else []


def files(data: Mapping[str, Any]) -> dict[str, str]:
    """path -> "TYPE MODE [-> TARGET] [sha256]" from the entries and hashes sections."""
    sums: dict[str, str] = {}
    for line in _lines(data, "hashes"):
        digest, _, path = line.partition("  ")
        if path:
            sums[path] = digest
    out: dict[str, str] = {}
    for line in _lines(data, "entries"):
        kind, mode, rest = (line.split(" ", 2) + ["", ""])[:3]
        path, _, target = rest.partition(" -> ") if kind == "l" else (rest, "", "")
        out[path] = " ".join(x for x in (kind, mode, f"-> {target}" if target else "", sums.get(path, "")) if x)
    return out


def _set(lines: list[str]) -> dict[str, str]:
    return {line: "" for line in lines}


def links(data: Mapping[str, Any]) -> dict[str, str]:
    """interface -> "type mtu master" (no counters, flags or state)."""
    out: dict[str, str] = {}
    for link in data.get("links", []) or []:
        if isinstance(link, dict) and link.get("ifname"):
            out[str(link["ifname"])] = f"{link.get('link_type', '?')} mtu {link.get('mtu', '?')} " \
                                       f"master {link.get('master', '-')}"
    return out


def addrs(data: Mapping[str, Any]) -> dict[str, str]:
    """"interface family address/prefix" entries (lifetimes left out)."""
    out: dict[str, str] = {}
    for link in data.get("addrs", []) or []:
        if not isinstance(link, dict):
            continue
        for a in link.get("addr_info", []) or []:
            if isinstance(a, dict) and a.get("local"):
                out[f"{link.get('ifname', '?')} {a.get('family', '?')} {a['local']}/{a.get('prefixlen', '?')}"] = ""
    return out


def normalise(data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Every section as KEY -> VALUE."""
    return {"files": files(data), "units": _units(_lines(data, "units")), "mounts": _set(_lines(data, "mounts")),
            "links": links(data), "addrs": addrs(data), "netns": _set(_lines(data, "netns")),
            "firewall": _set(_lines(data, "firewall")), "sockets": _set(_lines(data, "sockets"))}


def _units(lines: list[str]) -> dict[str, str]:
    """"unit" -> enablement state, and "active unit" -> ""."""
    out: dict[str, str] = {}
    for line in lines:
        first, _, rest = line.partition(" ")
        if first == "active":
            out[f"active {rest}"] = ""
        else:
            out[first] = rest
    return out


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Difference]:
    """Every difference between two snapshots, section by section, sorted by key."""
    a, b = normalise(before), normalise(after)
    out: list[Difference] = []
    for section in SECTIONS:
        old, new = a[section], b[section]
        for key in sorted(old.keys() | new.keys()):
            if key not in new:
                out.append(Difference(section, "removed", key, before=old[key]))
            elif key not in old:
                out.append(Difference(section, "added", key, after=new[key]))
            elif old[key] != new[key]:
                out.append(Difference(section, "changed", key, old[key], new[key]))
    return out


def allowed(d: Difference, allowlist: tuple[Allowed, ...] = ALLOWLIST) -> Allowed | None:
    """The allowlist entry covering a difference, if any."""
    for entry in allowlist:
        if entry.section == d.section and any(fnmatch.fnmatchcase(d.key, p) for p in entry.patterns):
            return entry
    return None


def split(diffs: list[Difference], allowlist: tuple[Allowed, ...] = ALLOWLIST
          ) -> tuple[list[Difference], list[tuple[Difference, Allowed]]]:
    """(differences that fail the comparison, allowed differences with their entry)."""
    failing: list[Difference] = []
    ok: list[tuple[Difference, Allowed]] = []
    for d in diffs:
        entry = allowed(d, allowlist)
        if entry is None:
            failing.append(d)
        else:
            ok.append((d, entry))
    return failing, ok
