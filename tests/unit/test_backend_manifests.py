"""The backend manifests: strict offline schema validation plus behaviour of the rendering."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from gldeploy import backend, sequences, settings
from gldeploy.errors import ConfigError, DeployError

BASE = ["CONTROL_PLANE_IPS=192.168.56.10"]


def load(*overrides: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=[*BASE, *overrides])


def objects(s: settings.Settings) -> list[dict[str, Any]]:
    return list(backend.iter_objects(backend.render_manifests(s)))


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
def test_every_document_passes_strict_schema_of_the_k3s_minor(k3s_version: str, minor: str) -> None:
    s = load(f"K3S_VERSION={k3s_version}", "TOPOLOGY=single", "REGISTRY=registry.local:5000")
    assert backend.kube_minor(s) == minor
    docs = objects(s)
    for doc in docs:
        strict_validate(doc, minor)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
                     "Service", "Ingress", "PodDisruptionBudget", "PriorityClass", "NetworkPolicy"}


def test_ha_settings_also_validate_and_allow_api_via_vip() -> None:
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
def test_a_typo_in_a_field_name_is_rejected(path: tuple[Any, ...], typo: str) -> None:
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


def test_image_tag_is_backend_version_and_replicas_come_from_settings() -> None:
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
def test_image_is_pulled_from_registry_when_set(image: str, registry: str, expected: str) -> None:
    s = load(f"BACKEND_IMAGE={image}", f"REGISTRY={registry}")
    assert backend.image_ref(s) == expected
    (container,) = deployment(objects(s))["spec"]["template"]["spec"]["containers"]
    assert container["image"] == expected


def test_image_naming_another_registry_is_a_config_error() -> None:
    s = load("BACKEND_IMAGE=other.example:5000/gov/backend", "REGISTRY=registry.local:5000")
    with pytest.raises(ConfigError, match="names registry 'other.example:5000'.*REGISTRY=") as info:
        backend.render_manifests(s)
    assert info.value.exit_code == 2


def test_namespace_is_on_every_namespaced_object() -> None:
    docs = objects(load("NAMESPACE=team-a"))
    for doc in docs:
        if doc["kind"] in backend.CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == "team-a", doc["kind"]
    (ns,) = by_kind(docs, "Namespace")
    assert ns["metadata"]["name"] == "team-a"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "team-a"
    dep = deployment(docs)
    (pc,) = by_kind(docs, "PriorityClass")
    assert dep["spec"]["template"]["spec"]["priorityClassName"] == pc["metadata"]["name"] == "team-a-backend"


def test_no_secret_data_is_rendered_only_an_optional_reference() -> None:
    pw = "/root/gl/registry-password"
    s = load("REGISTRY=registry.local:5000", "REGISTRY_USER=pushbot7", f"REGISTRY_PASSWORD_FILE={pw}")
    text = backend.render_manifests(s)
    docs = list(backend.iter_objects(text))
    assert by_kind(docs, "Secret") == []
    assert pw not in text and "pushbot7" not in text
    spec = deployment(docs)["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in spec  # k3s registries.yaml carries the pull credentials and CA
    (container,) = spec["containers"]
    assert {"secretRef": {"name": backend.SECRET_NAME, "optional": True}} in container["envFrom"]
    for cm in by_kind(docs, "ConfigMap"):
        assert not any(word in k.lower() for k in cm["data"] for word in ("password", "token", "secret"))


@pytest.mark.parametrize("namespace, host", [("yes", "null"), ("0123", "true"), ("1e3", "on.off"),
                                             ("no", "0x10")])
def test_yaml_lookalike_values_stay_literal_strings(namespace: str, host: str) -> None:
    docs = objects(load(f"NAMESPACE={namespace}", f"BACKEND_INGRESS_HOST={host}"))
    (ns,) = by_kind(docs, "Namespace")
    assert ns["metadata"]["name"] == namespace
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == host
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["data"]["GL_NAMESPACE"] == namespace and cm["data"]["GL_PUBLIC_HOST"] == host
    for doc in docs:
        strict_validate(doc, "1.28")


def test_pod_is_hardened_and_probed() -> None:
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


def test_network_policies_deny_by_default_and_allow_only_traefik_and_dns() -> None:
    docs = objects(load())
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(docs, "NetworkPolicy")}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    ingress_rules = [r for p in policies.values() for r in p.get("ingress", [])]
    assert len(ingress_rules) == 1
    assert ingress_rules[0]["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}]
    assert ingress_rules[0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    dns = policies["allow-dns-egress"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_unknown_placeholder_in_a_template_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "10-x.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${NAMESPCE}\n")
    with pytest.raises(DeployError, match=r"10-x.yaml document 1: unknown placeholder \$\{NAMESPCE\}"):
        backend.render_manifests(load(), template_dir=tmp_path)


def test_empty_template_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="no backend manifest templates"):
        backend.render_manifests(load(), template_dir=tmp_path)


def test_the_bundle_carries_the_rendered_manifests(tmp_path: Path) -> None:
    from gldeploy import bundle
    s = load()
    bundle.build_bundle(s, tmp_path, sequences.sequence("single"), baked=False,
                        staging=bundle.Staging(k3s_artifacts=False))
    dest = tmp_path / "backend" / "backend.yaml"
    assert dest.read_text() == backend.render_manifests(s)
    assert dest.stat().st_mode & 0o777 == 0o644
    assert len([doc for doc in yaml.safe_load_all(dest.read_text()) if doc]) == len(list(backend.iter_objects(dest.read_text())))


# the image each shipped env file must deploy, written out (not computed by the code under test)
SHIPPED_IMAGES = {
    "airgap.env": "registry.gov-native.local:5000/gov-native/execution-backend:v1.1",
    "cluster.env": "gl-native/execution-backend:v1.1",
    "single.env": "gl-native/execution-backend:v1.1",
}


@pytest.mark.parametrize("env_file", sorted(Path(__file__).resolve().parents[2].glob("env/*.env")),
                         ids=lambda p: p.name)
def test_shipped_env_files_render_valid_manifests(env_file: Path) -> None:
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
])
def test_imported_archives_carry_the_name_the_kubelet_looks_up(image, registry, expected):
    overrides = ["CONTROL_PLANE_IPS=192.168.56.10", f"BACKEND_IMAGE={image}", f"REGISTRY={registry}"]
    assert backend.containerd_name(settings.load(None, environ={}, overrides=overrides)) == expected
