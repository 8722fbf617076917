"""The backend chart's rendered output: strict offline schema validation plus behaviour.

The objects are what k3s' Helm controller would install: the HelmChart manifest gldeploy renders
is decoded (spec.chartContent, spec.valuesContent) and run through ``helm template`` (helm 3 from
the "test" extra, see tests/fixtures/helm_tool.py) for the Kubernetes version of K3S_VERSION.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from gldeploy import backend, settings
from gldeploy.errors import ConfigError
from tests.fixtures.helm_tool import HelmMissing, run_helm

BASE = ["CONTROL_PLANE_IPS=192.168.56.10"]
CLUSTER_SCOPED = frozenset({"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"})
DIGEST = "sha256:" + "ab" * 32


def load(*overrides: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=[*BASE, *overrides])


def helm_template(s: settings.Settings, tmp: Path, *, tls_secret: str = "") -> str:
    """helm template of the HelmChart's own chartContent and valuesContent, as k3s' job runs it."""
    chart = yaml.safe_load(backend.render_helmchart(s, tls_secret=tls_secret))
    (tmp / "chart.tgz").write_bytes(base64.b64decode(chart["spec"]["chartContent"]))
    (tmp / "values.yaml").write_text(chart["spec"]["valuesContent"])
    try:
        out = run_helm("template", backend.RELEASE, str(tmp / "chart.tgz"), "--namespace",
                       chart["spec"]["targetNamespace"], "--values", str(tmp / "values.yaml"),
                       "--kube-version", backend.kube_version(s), scratch=tmp)
    except HelmMissing as exc:
        pytest.fail(str(exc))
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def objects(tmp_path: Path) -> Any:
    def render(s: settings.Settings, **kwargs: str) -> list[dict[str, Any]]:
        return list(backend.iter_objects(helm_template(s, tmp_path, **kwargs)))
    return render


@pytest.fixture(scope="module", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes_validate reads and decodes its JSON schema files on every call (the _definitions file
    of a version is several MB): the same files, read once per module. Validation itself is unchanged."""
    original = kv_utils.schema_contents
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        kv_utils.schema_contents = original


def strict_validate(doc: dict[str, Any], minor: str) -> None:
    """Validate one object; a missing schema (unknown kind/apiVersion) is a failure, not a warning."""
    try:
        kubernetes_validate.validate(doc, minor, strict=True)
    except SchemaNotFoundError as exc:
        pytest.fail(f"no schema for {doc.get('apiVersion')}/{doc.get('kind')} in Kubernetes {minor}: {exc}")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = by_kind(docs, "Deployment")
    return dep


@pytest.mark.parametrize("k3s_version, minor", [("v1.28.3+k3s2", "1.28"), ("v1.30.4+k3s1", "1.30"),
                                                ("v1.31.0+k3s1", "1.31")])
def test_every_document_passes_strict_schema_of_the_k3s_minor(k3s_version: str, minor: str, objects: Any) -> None:
    s = load(f"K3S_VERSION={k3s_version}", "TOPOLOGY=single", "REGISTRY=registry.local:5000")
    assert backend.kube_minor(s) == minor
    docs = objects(s)
    for doc in docs:
        strict_validate(doc, minor)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
                     "Service", "Ingress", "PodDisruptionBudget", "PriorityClass", "NetworkPolicy"}


def test_ha_settings_also_validate_and_allow_api_via_vip(objects: Any) -> None:
    s = settings.load(None, environ={}, overrides=[
        "TOPOLOGY=ha", "CONTROL_PLANE_IPS=192.168.56.10,192.168.56.11,192.168.56.12",
        "API_VIP=192.168.56.100", "API_PORT=7443"])
    docs = objects(s)
    for doc in docs:
        strict_validate(doc, "1.28")
    (api,) = [d for d in by_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == "gl-backend-allow-api-egress"]
    rule = api["spec"]["egress"][0]
    assert [p["ipBlock"]["cidr"] for p in rule["to"]] == [
        "192.168.56.10/32", "192.168.56.11/32", "192.168.56.12/32", "192.168.56.100/32"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 7443}]


@pytest.mark.parametrize("path, typo", [
    (("spec", "template", "spec", "containers", 0), "imagePullPolcy"),
    (("spec",), "replica"),
    (("spec", "template", "spec", "securityContext"), "runAsNonRot"),
])
def test_a_typo_in_a_field_name_is_rejected(path: tuple[Any, ...], typo: str, objects: Any) -> None:
    dep = copy.deepcopy(deployment(objects(load())))
    node: Any = dep
    for part in path:
        node = node[part]
    node[typo] = "IfNotPresent" if typo == "imagePullPolcy" else 1
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(dep, "1.28", strict=True)


def test_unknown_kind_counts_as_failure() -> None:
    bogus = {"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "x"}}
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate(bogus, "1.28", strict=True)
    with pytest.raises(pytest.fail.Exception, match="no schema"):
        strict_validate(bogus, "1.28")


def test_image_tag_is_backend_version_and_replicas_come_from_settings(objects: Any) -> None:
    docs = objects(load("BACKEND_VERSION=v2.0.7", "BACKEND_REPLICAS=3"))
    dep = deployment(docs)
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    repo, _, tag = container["image"].rpartition(":")
    assert tag == "v2.0.7"
    assert repo == "gl-native/execution-backend"
    assert dep["spec"]["replicas"] == 3 and isinstance(dep["spec"]["replicas"], int)
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.0.7"


@pytest.mark.parametrize("image, registry, expected", [
    ("gl-native/execution-backend", "", "gl-native/execution-backend:v1.1"),
    ("gl-native/execution-backend", "registry.local:5000", "registry.local:5000/gl-native/execution-backend:v1.1"),
    ("registry.local:5000/gov/backend", "registry.local:5000", "registry.local:5000/gov/backend:v1.1"),
    ("localhost/backend", "", "localhost/backend:v1.1"),
])
def test_image_is_pulled_from_registry_when_set(image: str, registry: str, expected: str, objects: Any) -> None:
    s = load(f"BACKEND_IMAGE={image}", f"REGISTRY={registry}")
    assert backend.image_ref(s) == expected
    (container,) = deployment(objects(s))["spec"]["template"]["spec"]["containers"]
    assert container["image"] == expected


def test_image_naming_another_registry_is_a_config_error() -> None:
    s = load("BACKEND_IMAGE=other.example:5000/gov/backend", "REGISTRY=registry.local:5000")
    with pytest.raises(ConfigError, match="names registry 'other.example:5000'.*REGISTRY=") as info:
        backend.render_helmchart(s)
    assert info.value.exit_code == 2


def test_namespace_is_on_every_namespaced_object(objects: Any) -> None:
    docs = objects(load("NAMESPACE=team-a"))
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == "team-a", doc["kind"]
    (ns,) = by_kind(docs, "Namespace")
    assert ns["metadata"]["name"] == "team-a"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}  # holds gl-backend-secrets
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "team-a"
    dep = deployment(docs)
    (pc,) = by_kind(docs, "PriorityClass")
    assert dep["spec"]["template"]["spec"]["priorityClassName"] == pc["metadata"]["name"] == "team-a-backend"


def test_no_secret_data_is_rendered_only_an_optional_reference(objects: Any) -> None:
    pw = "/root/gl/registry-password"
    s = load("REGISTRY=registry.local:5000", "REGISTRY_USER=pushbot7", f"REGISTRY_PASSWORD_FILE={pw}")
    text = backend.render_helmchart(s)
    docs = objects(s)
    assert by_kind(docs, "Secret") == []
    assert pw not in text and "pushbot7" not in text
    assert pw not in str(docs) and "pushbot7" not in str(docs)
    spec = deployment(docs)["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in spec  # k3s registries.yaml carries the pull credentials and CA
    (container,) = spec["containers"]
    assert {"secretRef": {"name": backend.SECRET_NAME, "optional": True}} in container["envFrom"]
    for cm in by_kind(docs, "ConfigMap"):
        assert not any(word in k.lower() for k in cm["data"] for word in ("password", "token", "secret"))


@pytest.mark.parametrize("namespace, host", [("yes", "null"), ("0123", "true"), ("1e3", "on.off"),
                                             ("no", "0x10")])
def test_yaml_lookalike_values_stay_literal_strings(namespace: str, host: str, objects: Any) -> None:
    docs = objects(load(f"NAMESPACE={namespace}", f"BACKEND_INGRESS_HOST={host}"))
    (ns,) = by_kind(docs, "Namespace")
    assert ns["metadata"]["name"] == namespace
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == host
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["data"]["GL_NAMESPACE"] == namespace and cm["data"]["GL_PUBLIC_HOST"] == host
    for doc in docs:
        strict_validate(doc, "1.28")


def test_pod_is_hardened_and_probed(objects: Any) -> None:
    spec = deployment(objects(load()))["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": backend.HTTP_PORT}
    assert set(c["resources"]) == {"requests", "limits"}
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_network_policies_deny_by_default_and_allow_only_traefik_and_dns(objects: Any) -> None:
    docs = objects(load())
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(docs, "NetworkPolicy")}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    ingress_rules = [r for p in policies.values() for r in p.get("ingress", [])]
    assert len(ingress_rules) == 1
    # one peer with both selectors: Traefik's pods in kube-system, not every pod there
    assert ingress_rules[0]["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}}]
    assert ingress_rules[0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    dns = policies["allow-dns-egress"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("k3s_version, expected", [("v1.28.3+k3s2", "v1.28"), ("v1.31.0+k3s1", "v1.31")])
def test_pod_security_version_is_pinned_to_the_cluster_minor(k3s_version: str, expected: str,
                                                             objects: Any) -> None:
    (ns,) = by_kind(objects(load(f"K3S_VERSION={k3s_version}")), "Namespace")
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == expected  # never "latest"


def test_ingress_has_no_tls_unless_a_certificate_secret_is_named(objects: Any) -> None:
    (plain,) = by_kind(objects(load()), "Ingress")
    assert "tls" not in plain["spec"]
    docs = objects(load("BACKEND_INGRESS_HOST=api.gov.local"), tls_secret="gl-backend-tls")
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["api.gov.local"], "secretName": "gl-backend-tls"}]
    for doc in docs:
        strict_validate(doc, "1.28")


def test_image_pinned_by_digest_is_used_as_is(objects: Any) -> None:
    # BACKEND_IMAGE=repo@sha256:... is refused by settings today (keytypes.IMAGE); Settings are built
    # directly here so the rendering is ready for it
    s = dataclasses.replace(load("REGISTRY=registry.local:5000", "BACKEND_VERSION=v2.0.1"),
                            backend_image=f"gl-native/execution-backend@{DIGEST}")
    expected = f"registry.local:5000/gl-native/execution-backend@{DIGEST}"
    assert backend.image_ref(s) == backend.containerd_name(s) == expected
    dep = deployment(objects(s))
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == expected
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.0.1"  # the version still labels it
    strict_validate(dep, "1.28")


@pytest.mark.parametrize("image", ["gl-native/backend@sha256:abc", "gl-native/backend@sha512:" + "ab" * 64,
                                   "gl-native/backend@SHA256:" + "AB" * 32])
def test_a_malformed_digest_is_a_config_error(image: str) -> None:
    s = dataclasses.replace(load(), backend_image=image)
    with pytest.raises(ConfigError, match="BACKEND_IMAGE=.*sha256: followed by 64 lower-case hex"):
        backend.image_ref(s)


# the image each shipped env file must deploy, written out (not computed by the code under test)
SHIPPED_IMAGES = {
    "airgap.env": "registry.gov-native.local:5000/gov-native/execution-backend:v1.1",
    "cluster.env": "gl-native/execution-backend:v1.1",
    "single.env": "gl-native/execution-backend:v1.1",
}


@pytest.mark.parametrize("env_file", sorted(Path(__file__).resolve().parents[2].glob("env/*.env")),
                         ids=lambda p: p.name)
def test_shipped_env_files_render_valid_manifests(env_file: Path, objects: Any) -> None:
    assert env_file.name in SHIPPED_IMAGES, f"add the image {env_file.name} must deploy to SHIPPED_IMAGES"
    s = settings.load(env_file, environ={})
    docs = objects(s)
    for doc in docs:
        strict_validate(doc, backend.kube_minor(s))
    (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == SHIPPED_IMAGES[env_file.name]
    if s.registry:
        assert container["image"].startswith(s.registry + "/")


@pytest.mark.parametrize("image, registry, expected", [
    ("gl-native/execution-backend", "", "docker.io/gl-native/execution-backend:v1.1"),
    ("busybox", "", "docker.io/library/busybox:v1.1"),
    ("gl-native/execution-backend", "registry.local:5000", "registry.local:5000/gl-native/execution-backend:v1.1"),
    ("localhost/backend", "", "localhost/backend:v1.1"),
    (f"busybox@{DIGEST}", "", f"docker.io/library/busybox@{DIGEST}"),
    (f"gl-native/backend@{DIGEST}", "", f"docker.io/gl-native/backend@{DIGEST}"),
])
def test_imported_archives_carry_the_name_the_kubelet_looks_up(image: str, registry: str, expected: str) -> None:
    overrides = ["CONTROL_PLANE_IPS=192.168.56.10", f"BACKEND_IMAGE={image}", f"REGISTRY={registry}"]
    s = settings.load(None, environ={}, overrides=overrides[:1] + [f"REGISTRY={registry}"])
    assert backend.containerd_name(dataclasses.replace(s, backend_image=image)) == expected
