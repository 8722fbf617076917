"""The GL-Native Execution Backend as a Helm chart, installed by k3s' own Helm controller.

``deploy/backend/`` is the chart. :func:`chart_values` decides the chart's values from Settings,
:func:`package_chart` packs the chart with those values as a deterministic ``.tgz`` (no ``helm
package`` needed), and :func:`render_helmchart` wraps it in a k3s ``HelmChart`` object
(``spec.chartContent``: the base64 archive; ``spec.valuesContent``: the values). The deploy phase
drops that manifest into k3s' auto-deploy directory; no helm binary is needed on the hosts.
See deploy/backend/README.md.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import ConfigError, DeployError
from .paths import BACKEND_TEMPLATES
from .settings import Settings

CHART_DIR = BACKEND_TEMPLATES
RELEASE = "gl-backend"  # Helm release and HelmChart name
HELMCHART_FILE = "gl-backend-helmchart.yaml"  # in the bundle's backend/ and in k3s' manifests dir
HELMCHART_NAMESPACE = "kube-system"  # the namespace k3s' Helm controller watches
DIGEST_ANNOTATION = "gl-native.io/release-digest"
SECRET_NAME = "gl-backend-secrets"
HTTP_PORT = 8080
# Fixed metadata of every archive member: the same chart and values give the same bytes.
_MTIME = 946684800  # 2000-01-01T00:00:00Z
_DIGEST_REF = re.compile(r"sha256:[0-9a-f]{64}")


def kube_minor(settings: Settings) -> str:
    """Kubernetes minor version of the pinned k3s release: v1.28.3+k3s2 -> "1.28"."""
    match = re.fullmatch(r"v([0-9]+)\.([0-9]+)\.[0-9]+\+k3s[0-9]+", settings.k3s_version)
    if not match:
        raise ConfigError(f"{settings.origin('K3S_VERSION')}: K3S_VERSION={settings.k3s_version!r} is not "
                          f"a k3s release such as v1.28.3+k3s2")
    return f"{match.group(1)}.{match.group(2)}"


def kube_version(settings: Settings) -> str:
    """The Kubernetes version of the pinned k3s release (helm's --kube-version): v1.28.3+k3s2 -> "1.28.3"."""
    kube_minor(settings)  # refuses what is not a k3s release
    return settings.k3s_version[1:].split("+", 1)[0]


def _split_image(image: str) -> tuple[str, str]:
    """Split an image repository into (registry host or "", path), as docker/containerd do."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", image


def image_ref(settings: Settings) -> str:
    """The image reference the pods use, under REGISTRY when set.

    ``BACKEND_IMAGE=gl-native/execution-backend`` with ``REGISTRY=registry.local:5000`` gives
    ``registry.local:5000/gl-native/execution-backend:v1.1`` (the tag is BACKEND_VERSION).
    ``BACKEND_IMAGE=repo@sha256:<64 hex>`` pins the image by digest: the reference is
    ``repo@sha256:...`` and BACKEND_VERSION only labels the release. A BACKEND_IMAGE naming
    another registry than REGISTRY is refused, since it is unclear which one the operator meant.
    """
    repo_part, at, digest = settings.backend_image.partition("@")
    if at and not _DIGEST_REF.fullmatch(digest):
        raise ConfigError(f"{settings.origin('BACKEND_IMAGE')}: BACKEND_IMAGE={settings.backend_image!r}: "
                          f"the digest must be sha256: followed by 64 lower-case hex digits")
    host, path = _split_image(repo_part)
    if settings.registry:
        if host and host != settings.registry:
            raise ConfigError(
                f"{settings.origin('BACKEND_IMAGE')}: BACKEND_IMAGE={settings.backend_image!r} names registry "
                f"{host!r} but REGISTRY={settings.registry!r} ({settings.origin('REGISTRY')}); write "
                f"BACKEND_IMAGE={settings.registry}/{path}{at}{digest} or BACKEND_IMAGE={path}{at}{digest}")
        host = settings.registry
    repo = f"{host}/{path}" if host else path
    return f"{repo}@{digest}" if at else f"{repo}:{settings.backend_version}"


def containerd_name(settings: Settings) -> str:
    """image_ref() fully qualified as containerd's CRI stores and looks it up (docker.io/...).

    Kubernetes normalises ``gl-native/execution-backend:v1.1`` to
    ``docker.io/gl-native/execution-backend:v1.1``; an archive imported under the short name would
    not be found by the kubelet, so imported archives carry this name.
    """
    ref = image_ref(settings)
    host, path = _split_image(ref)
    if host:
        return ref
    return f"docker.io/{path}" if "/" in path.split("@", 1)[0] else f"docker.io/library/{path}"


def chart_values(settings: Settings, *, tls_secret: str = "") -> dict[str, Any]:
    """The chart's values for these settings (the keys of deploy/backend/values.yaml).

    tls_secret: name of a kubernetes.io/tls Secret in the namespace holding the Ingress
    certificate from the site CA; empty (the default) serves the Ingress without TLS.
    """
    api_hosts = list(settings.control_plane_ips) + ([settings.api_vip] if settings.api_vip else [])
    return {
        "namespace": settings.namespace,
        "version": settings.backend_version,
        "image": image_ref(settings),
        "replicas": settings.backend_replicas,
        "priorityClassName": f"{settings.namespace}-backend",
        "podSecurityVersion": f"v{kube_minor(settings)}",
        "ingress": {"host": settings.backend_ingress_host, "tlsSecretName": tls_secret},
        "apiServer": {"addresses": list(dict.fromkeys(api_hosts)), "port": settings.api_port},
        "releaseDigest": "",
    }




class _Literal(str):
    """A multi-line string written as a YAML literal block (|)."""


class _Dumper(yaml.SafeDumper):
    """Every string double-quoted: readers that follow YAML 1.2 or Go's YAML (helm, k3s) must not
    take a value such as 1e3 or an all-digit digest for a number, as PyYAML's YAML 1.1 rules would
    leave it unquoted."""


def _quoted(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


def _mapping(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.MappingNode:
    """Keys (fixed names chosen here) plain, values through the representers above."""
    pairs = [(dumper.represent_scalar("tag:yaml.org,2002:str", str(k)), dumper.represent_data(v))
             for k, v in data.items()]
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)


_Dumper.add_representer(str, _quoted)
_Dumper.add_representer(dict, _mapping)
_Dumper.add_representer(_Literal, _literal)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=False,
                     width=1 << 30)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployError(f"{path}: cannot read the backend chart ({exc.strerror}); the checkout or "
                          f"installation is incomplete") from None
    except yaml.YAMLError as exc:
        raise DeployError(f"{path}: not valid YAML: {exc}") from None


def chart_metadata(settings: Settings, chart_dir: Path = CHART_DIR) -> dict[str, Any]:
    """Chart.yaml as packaged: appVersion is BACKEND_VERSION."""
    meta = _read_yaml(chart_dir / "Chart.yaml")
    if not isinstance(meta, dict) or meta.get("name") != RELEASE or not isinstance(meta.get("version"), str):
        raise DeployError(f"{chart_dir / 'Chart.yaml'}: expected a chart named {RELEASE!r} with a "
                          f"version string")
    return {**meta, "appVersion": settings.backend_version}


def chart_files(settings: Settings, values: dict[str, Any], chart_dir: Path = CHART_DIR) -> dict[str, bytes]:
    """The packaged chart's members (path inside the chart -> bytes): Chart.yaml, the given
    values as values.yaml, values.schema.json, README.md and templates/*."""
    templates = sorted(p for p in (chart_dir / "templates").glob("*") if p.suffix in (".yaml", ".tpl"))
    if not any(p.suffix == ".yaml" for p in templates):
        raise DeployError(f"{chart_dir / 'templates'}: no backend chart templates (*.yaml) found; the "
                          f"checkout or installation is incomplete")
    header = (f"# GL-Native Execution Backend {settings.backend_version} in namespace {settings.namespace}:\n"
              f"# values rendered by gldeploy from the settings; change the settings, not this file.\n")
    files = {"Chart.yaml": _dump(chart_metadata(settings, chart_dir)).encode(),
             "values.yaml": (header + _dump(values)).encode()}
    for extra in ("values.schema.json", "README.md"):
        try:
            files[extra] = (chart_dir / extra).read_bytes()
        except OSError as exc:
            raise DeployError(f"{chart_dir / extra}: cannot read ({exc.strerror})") from None
    for path in templates:
        files[f"templates/{path.name}"] = path.read_bytes()
    return files


def pack(files: dict[str, bytes], top: str = RELEASE) -> bytes:
    """A deterministic chart archive: members sorted, fixed mtime, owner root, modes 0644, gzip
    without name or time. helm reads it like the output of ``helm package``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(files[name]), _MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def archive_name(settings: Settings, chart_dir: Path = CHART_DIR) -> str:
    """File name of the packaged chart, as helm names it: gl-backend-<chart version>.tgz."""
    return f"{RELEASE}-{chart_metadata(settings, chart_dir)['version']}.tgz"




def release_values(settings: Settings, *, tls_secret: str = "",
                   chart_dir: Path = CHART_DIR) -> tuple[bytes, dict[str, Any]]:
    """(chart archive, values with releaseDigest): the digest is the sha256 of the archive and
    the values, so any change of either gives a new one."""
    values = chart_values(settings, tls_secret=tls_secret)
    archive = pack(chart_files(settings, values, chart_dir))
    digest = hashlib.sha256(archive + b"\0" + _dump(values).encode()).hexdigest()
    return archive, {**values, "releaseDigest": digest}


def render_helmchart(settings: Settings, *, tls_secret: str = "", chart_dir: Path = CHART_DIR) -> str:
    """The HelmChart manifest (helm.cattle.io/v1) k3s' Helm controller installs the chart from.

    The release is recorded in kube-system next to the HelmChart (targetNamespace), because the
    chart itself creates the backend namespace with its Pod Security labels; every namespaced
    object in the chart names its namespace. failurePolicy abort: a failed upgrade is left for the
    operator, never answered by uninstalling (which would take the namespace's pods down).
    """
    archive, values = release_values(settings, tls_secret=tls_secret, chart_dir=chart_dir)
    return _helmchart_text(settings, archive, values)


def _helmchart_text(settings: Settings, archive: bytes, values: dict[str, Any]) -> str:
    chart = {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {
            "name": RELEASE,
            "namespace": HELMCHART_NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "gl-native", "app.kubernetes.io/managed-by": "gl-deploy"},
            "annotations": {DIGEST_ANNOTATION: values["releaseDigest"]},
        },
        "spec": {
            "targetNamespace": HELMCHART_NAMESPACE,
            "failurePolicy": "abort",
            "valuesContent": _Literal(_dump(values)),
            "chartContent": base64.b64encode(archive).decode("ascii"),
        },
    }
    header = (f"# GL-Native Execution Backend {settings.backend_version} in namespace {settings.namespace}:\n"
              f"# the {RELEASE} chart (deploy/backend) for k3s' Helm controller; rendered by gldeploy.\n")
    return header + _dump(chart)


def write_bundle_files(settings: Settings, dest: Path, *, tls_secret: str = "",
                       chart_dir: Path = CHART_DIR) -> list[Path]:
    """Write the bundle's backend/ files (mode 0644): the HelmChart manifest the deploy phase
    installs, and the packaged chart (gl-backend-<version>.tgz) for offline use and audit."""
    archive, values = release_values(settings, tls_secret=tls_secret, chart_dir=chart_dir)
    manifest = _helmchart_text(settings, archive, values)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, data in ((HELMCHART_FILE, manifest.encode()), (archive_name(settings, chart_dir), archive)):
        path = dest / name
        path.write_bytes(data)
        path.chmod(0o644)
        written.append(path)
    return written


def iter_objects(text: str) -> Iterator[dict[str, Any]]:
    """Parse manifests (e.g. helm template output) into objects, skipping empty documents."""
    for doc in yaml.safe_load_all(text):
        if doc is not None:
            yield doc
