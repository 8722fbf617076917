"""manifest.json of a site bundle: its entries and its one canonical text.

The text is canonical (keys sorted, one file entry per line, no time-dependent value), so the same
pins give the same bytes, and bash (verify.sh, no JSON parser on the offline host) can read it line
by line. Python's verifier refuses a manifest that is not in this exact form, so both verifiers
read the same thing.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

FORMAT = "gl-native-bundle/1"
NAMESPACE = "gl-native-bundle"  # ssh-keygen -Y sign/verify -n
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
SUMS = "SHA256SUMS"
VERIFIER = "verify.sh"
# files about the bundle that the manifest cannot list (it would list itself)
META = (MANIFEST, SIGNATURE, SUMS)

# what a file is; "os-package": a .deb of the packages section (version = Debian version, origin = URI)
Kind = Literal["k3s-binary", "k3s-sums", "k3s-airgap-images", "image", "image-sums", "manifests",
               "script", "readme", "sums", "render-marker", "ca-certificate", "verifier", "os-package"]
KINDS: tuple[str, ...] = get_args(Kind)
# a path inside the bundle: plain relative segments; no '..', no spaces, nothing a shell expands
SAFE_PATH = re.compile(r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_+-][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """manifest.json is damaged or not in canonical form (the message says where)."""


@dataclass(frozen=True)
class Entry:
    """One covered file: bundle-relative path, size, sha256, what it is, its version and origin."""

    path: str
    size: int
    sha256: str
    kind: Kind
    version: str
    origin: str


@dataclass(frozen=True)
class Secret:
    """A true secret the bundle's scripts expect at `path`: never in the bundle, tar or sums; it is
    delivered separately and may be present (after the operator copied it in) or absent."""

    path: str
    key: str  # the setting that named it, e.g. K3S_TOKEN_FILE


@dataclass(frozen=True)
class Upgrade:
    """What makes a bundle an upgrade bundle (gldeploy/sitebundle/upgrade.py): the base bundle it
    applies to (its manifest's sha256), the versions before and after, and the files of the new
    bundle it does not carry because the base holds them with the same content (relies_on)."""

    base_manifest_sha256: str
    from_versions: dict[str, str]
    to_versions: dict[str, str]
    relies_on: tuple[Entry, ...]


@dataclass(frozen=True)
class Manifest:
    """Everything manifest.json says."""

    arch: str
    topology: str
    tool: str
    pins: dict[str, str]
    files: tuple[Entry, ...]
    secrets: tuple[Secret, ...] = ()
    format: str = FORMAT
    upgrade: Upgrade | None = None

    def entry(self, path: str) -> Entry | None:
        return next((e for e in self.files if e.path == path), None)


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True)


def _rows(rows: list[dict[str, Any]]) -> str:
    return "[\n" + ",\n".join(f"    {_line(r)}" for r in rows) + "\n  ]" if rows else "[]"


def render(manifest: Manifest) -> str:
    """The canonical text: top-level keys sorted, one entry per line, files sorted by path. An upgrade
    bundle adds relies_on (entries, one per line) and upgrade (one line)."""
    files = sorted(manifest.files, key=lambda e: e.path)
    secrets = sorted(manifest.secrets, key=lambda s: s.path)
    top: dict[str, str] = {
        "arch": json.dumps(manifest.arch),
        "files": _rows([asdict(e) for e in files]),
        "format": json.dumps(manifest.format),
        "pins": _line(dict(sorted(manifest.pins.items()))),
        "secrets": _rows([asdict(s) for s in secrets]),
        "tool": json.dumps(manifest.tool, ensure_ascii=True),
        "topology": json.dumps(manifest.topology),
    }
    up = manifest.upgrade
    if up is not None:
        top["relies_on"] = _rows([asdict(e) for e in sorted(up.relies_on, key=lambda e: e.path)])
        top["upgrade"] = _line({"base_manifest_sha256": up.base_manifest_sha256, "from": up.from_versions,
                                "to": up.to_versions})
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {v}" for k, v in sorted(top.items())) + "\n}\n"


def check_path(path: str, where: str) -> str:
    """A safe bundle-relative path, or ManifestError naming it."""
    if not SAFE_PATH.match(path) or path in META:
        raise ManifestError(f"{where}: path {path!r} is not a plain relative path of the bundle")
    return path


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ManifestError(f"{where}: {key!r} must be a string")
    return value


def _entry(obj: Any, where: str) -> Entry:
    if not isinstance(obj, dict) or set(obj) != {"path", "size", "sha256", "kind", "version", "origin"}:
        raise ManifestError(f"{where}: a file entry needs exactly path, size, sha256, kind, version, origin")
    size, digest, kind = obj["size"], _str(obj, "sha256", where), _str(obj, "kind", where)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: size must be a non-negative integer")
    if not _HEX64.match(digest):
        raise ManifestError(f"{where}: sha256 must be 64 lower-case hex digits")
    if kind not in KINDS:
        raise ManifestError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return Entry(check_path(_str(obj, "path", where), where), size, digest, kind,  # type: ignore[arg-type]
                 _str(obj, "version", where), _str(obj, "origin", where))


def _versions(obj: Any, where: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ManifestError(f"{where}: upgrade from/to must map names to version strings")
    return {str(k): v for k, v in obj.items()}


def _upgrade(obj: dict[str, Any], where: str) -> Upgrade | None:
    """The upgrade section: both relies_on and upgrade, or neither (a full bundle)."""
    if "upgrade" not in obj and "relies_on" not in obj:
        return None
    up, relies = obj.get("upgrade"), obj.get("relies_on")
    if not isinstance(up, dict) or not isinstance(relies, list) or set(up) != {"base_manifest_sha256", "from", "to"}:
        raise ManifestError(f"{where}: an upgrade bundle needs relies_on (a list) and upgrade "
                            f"(base_manifest_sha256, from, to)")
    base = _str(up, "base_manifest_sha256", where)
    if not _HEX64.match(base):
        raise ManifestError(f"{where}: upgrade.base_manifest_sha256 must be 64 lower-case hex digits")
    return Upgrade(base, _versions(up["from"], where), _versions(up["to"], where),
                   tuple(_entry(r, f"{where}: relies_on[{i}]") for i, r in enumerate(relies)))


def parse(text: str, where: str = MANIFEST) -> Manifest:
    """Parse and check a manifest; its text must be exactly the canonical render of itself."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ManifestError(f"{where}: not a {FORMAT} manifest (\"format\" is {obj.get('format')!r})"
                            if isinstance(obj, dict) else f"{where}: not a JSON object")
    files, secrets, pins = obj.get("files"), obj.get("secrets"), obj.get("pins")
    if not isinstance(files, list) or not isinstance(secrets, list) or not isinstance(pins, dict):
        raise ManifestError(f"{where}: files and secrets must be lists, pins an object")
    entries = tuple(_entry(f, f"{where}: files[{i}]") for i, f in enumerate(files))
    secret_list = []
    for i, s in enumerate(secrets):
        if not isinstance(s, dict) or set(s) != {"path", "key"}:
            raise ManifestError(f"{where}: secrets[{i}] needs exactly path and key")
        secret_list.append(Secret(check_path(_str(s, "path", where), where), _str(s, "key", where)))
    upgrade = _upgrade(obj, where)
    paths = [e.path for e in entries] + [s.path for s in secret_list] + \
        [e.path for e in (upgrade.relies_on if upgrade else ())]
    if len(set(paths)) != len(paths):
        raise ManifestError(f"{where}: a path is listed twice")
    result = Manifest(arch=_str(obj, "arch", where), topology=_str(obj, "topology", where),
                      tool=_str(obj, "tool", where), pins={str(k): str(v) for k, v in pins.items()},
                      files=entries, secrets=tuple(secret_list), upgrade=upgrade)
    if render(result) != text:
        raise ManifestError(f"{where}: not in canonical form (edited by hand?); rebuild the bundle")
    return result


def sums_text(manifest: Manifest, manifest_sha256: str) -> str:
    """SHA256SUMS: every covered file, then manifest.json; `sha256sum -c SHA256SUMS` works as well."""
    rows = [f"{e.sha256}  {e.path}" for e in sorted(manifest.files, key=lambda e: e.path)]
    return "\n".join([*rows, f"{manifest_sha256}  {MANIFEST}"]) + "\n"
