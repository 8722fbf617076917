"""Render the GL-Native Execution Backend manifests from Settings.

The templates in ``deploy/backend/*.yaml`` are plain Kubernetes YAML with ``${KEY}`` placeholders.
Each file is parsed *before* substitution and the values are put into the parsed tree, so no value
can alter the document structure; ``yaml.safe_dump`` then quotes whatever needs quoting (a
namespace called ``yes`` stays the string ``"yes"``). See deploy/backend/README.md.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import ConfigError, DeployError
from .paths import BACKEND_TEMPLATES
from .settings import Settings

TEMPLATE_DIR = BACKEND_TEMPLATES
SECRET_NAME = "gl-backend-secrets"
HTTP_PORT = 8080

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
# Kinds that live outside any namespace; every other rendered object must carry metadata.namespace.
CLUSTER_SCOPED = frozenset({"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"})


def kube_minor(settings: Settings) -> str:
    """Kubernetes minor version of the pinned k3s release: v1.28.3+k3s2 -> "1.28"."""
    match = re.fullmatch(r"v([0-9]+)\.([0-9]+)\.[0-9]+\+k3s[0-9]+", settings.k3s_version)
    if not match:
        raise ConfigError(f"{settings.origin('K3S_VERSION')}: K3S_VERSION={settings.k3s_version!r} is not "
                          f"a k3s release such as v1.28.3+k3s2")
    return f"{match.group(1)}.{match.group(2)}"


def _split_image(image: str) -> tuple[str, str]:
    """Split an image repository into (registry host or "", path), as docker/containerd do."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", image


def image_ref(settings: Settings) -> str:
    """The image reference the pods use: BACKEND_IMAGE:BACKEND_VERSION, under REGISTRY when set.

    ``BACKEND_IMAGE=gl-native/execution-backend`` with ``REGISTRY=registry.local:5000`` gives
    ``registry.local:5000/gl-native/execution-backend:v1.1``. A BACKEND_IMAGE naming another
    registry than REGISTRY is refused, since it is unclear which one the operator meant.
    """
    host, path = _split_image(settings.backend_image)
    if settings.registry:
        if host and host != settings.registry:
            raise ConfigError(
                f"{settings.origin('BACKEND_IMAGE')}: BACKEND_IMAGE={settings.backend_image!r} names registry "
                f"{host!r} but REGISTRY={settings.registry!r} ({settings.origin('REGISTRY')}); write "
                f"BACKEND_IMAGE={settings.registry}/{path} or BACKEND_IMAGE={path}")
        host = settings.registry
    repo = f"{host}/{path}" if host else path
    return f"{repo}:{settings.backend_version}"


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
    return f"docker.io/{path}" if "/" in path else f"docker.io/library/{path}"


def template_values(settings: Settings) -> dict[str, Any]:
    """The placeholder values, typed (ints stay ints, lists stay lists)."""
    api_hosts = list(settings.control_plane_ips) + ([settings.api_vip] if settings.api_vip else [])
    return {
        "NAMESPACE": settings.namespace,
        "BACKEND_VERSION": settings.backend_version,
        "BACKEND_REPLICAS": settings.backend_replicas,
        "BACKEND_INGRESS_HOST": settings.backend_ingress_host,
        "IMAGE_REF": image_ref(settings),
        "PRIORITY_CLASS": f"{settings.namespace}-backend",
        "API_SERVER_PEERS": [{"ipBlock": {"cidr": f"{ip}/32"}} for ip in dict.fromkeys(api_hosts)],
        "API_PORT": settings.api_port,
    }


def _substitute(node: Any, values: dict[str, Any], where: str) -> Any:
    """Replace placeholders inside a parsed YAML tree (keys are never substituted)."""
    if isinstance(node, dict):
        return {k: _substitute(v, values, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values, where) for v in node]
    if not isinstance(node, str):
        return node

    def lookup(name: str) -> Any:
        if name not in values:
            raise DeployError(f"{where}: unknown placeholder ${{{name}}}; known: {', '.join(sorted(values))}")
        return values[name]

    whole = _PLACEHOLDER.fullmatch(node)
    if whole:
        return lookup(whole.group(1))

    def text(match: re.Match[str]) -> str:
        value = lookup(match.group(1))
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise DeployError(f"{where}: ${{{match.group(1)}}} is structured and must be a whole value")
        return str(value)

    return _PLACEHOLDER.sub(text, node)


def template_files(template_dir: Path = TEMPLATE_DIR) -> list[Path]:
    """The manifest templates, in rendering order (numeric file-name prefix)."""
    files = sorted(template_dir.glob("*.yaml"))
    if not files:
        raise DeployError(f"{template_dir}: no backend manifest templates (*.yaml) found; the checkout "
                          f"or installation is incomplete")
    return files


def render_documents(settings: Settings, template_dir: Path = TEMPLATE_DIR) -> list[dict[str, Any]]:
    """All manifests as dicts, placeholders filled in, in apply order."""
    values = template_values(settings)
    docs: list[dict[str, Any]] = []
    for path in template_files(template_dir):
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            raise DeployError(f"{path}: not valid YAML: {exc}") from None
        for index, doc in enumerate(loaded, start=1):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise DeployError(f"{path}: document {index} is not a Kubernetes object (no kind)")
            docs.append(_substitute(doc, values, f"{path.name} document {index}"))
    return docs


def render_manifests(settings: Settings, template_dir: Path = TEMPLATE_DIR) -> str:
    """One multi-document YAML string, ready for ``kubectl apply -f -``."""
    docs = render_documents(settings, template_dir)
    header = (f"# GL-Native Execution Backend {settings.backend_version} in namespace {settings.namespace}\n"
              f"# Rendered by gldeploy from deploy/backend/*.yaml; edit the templates, not this file.\n")
    body = "---\n".join(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False)
                        for doc in docs)
    return header + "---\n" + body


def iter_objects(text: str) -> Iterator[dict[str, Any]]:
    """Parse rendered manifests back into objects (skipping empty documents)."""
    for doc in yaml.safe_load_all(text):
        if doc is not None:
            yield doc
