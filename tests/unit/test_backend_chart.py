"""The gl-backend chart as packaged by gldeploy and the HelmChart k3s installs it from."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from gldeploy import backend, sequences, settings
from gldeploy.errors import DeployError
from tests.fixtures.helm_tool import HelmMissing, helm_version, run_helm

BASE = ["CONTROL_PLANE_IPS=192.168.56.10"]
# HelmChartSpec's JSON fields in k3s-io/helm-controller v0.15.4 (pkg/apis/helm.cattle.io/v1/types.go),
# the controller k3s v1.28.3+k3s2 runs; written out here, not taken from the code under test.
HELMCHART_SPEC_FIELDS = frozenset({
    "targetNamespace", "createNamespace", "chart", "version", "repo", "repoCA", "repoCAConfigMap", "set",
    "valuesContent", "helmVersion", "bootstrap", "chartContent", "jobImage", "backOffLimit", "timeout",
    "failurePolicy", "authSecret", "authPassCredentials", "dockerRegistrySecret"})
FAILURE_POLICIES = {"reinstall", "abort"}


def load(*overrides: str) -> settings.Settings:
    return settings.load(None, environ={}, overrides=[*BASE, *overrides])


def helm(*args: str, scratch: Path) -> Any:
    try:
        return run_helm(*args, scratch=scratch)
    except HelmMissing as exc:
        pytest.fail(str(exc))


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: m for m in tar.getmembers()}


def member_text(archive: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        f = tar.extractfile(f"gl-backend/{name}")
        assert f is not None
        return f.read().decode()


def helmchart(s: settings.Settings, **kwargs: Any) -> dict[str, Any]:
    doc = yaml.safe_load(backend.render_helmchart(s, **kwargs))
    assert isinstance(doc, dict)
    return doc


def test_the_helm_inside_the_package_is_helm_3(tmp_path: Path) -> None:
    try:
        version = helm_version(tmp_path)
    except HelmMissing as exc:
        pytest.fail(str(exc))
    assert version.startswith("v3."), version


def test_packaged_chart_passes_helm_lint_strict(tmp_path: Path) -> None:
    archive, values = backend.release_values(load(), tls_secret="gl-backend-tls")
    (tmp_path / "gl-backend.tgz").write_bytes(archive)
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    out = helm("lint", "--strict", str(tmp_path / "gl-backend.tgz"), "--values", str(tmp_path / "values.yaml"),
               "--kube-version", "1.28.3", scratch=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_lint_catches_a_broken_template(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(backend.CHART_DIR, chart)
    (chart / "templates" / "config.yaml").write_text("data: {{ .Values.namespace | nosuchfunc }}\n")
    archive = backend.pack(backend.chart_files(load(), backend.chart_values(load()), chart))
    (tmp_path / "broken.tgz").write_bytes(archive)
    out = helm("lint", "--strict", str(tmp_path / "broken.tgz"), scratch=tmp_path)
    assert out.returncode != 0 and "nosuchfunc" in out.stdout + out.stderr


def test_packaging_is_deterministic_and_needs_no_helm() -> None:
    s = load()
    first, again = backend.release_values(s)[0], backend.release_values(s)[0]
    assert first == again
    assert first[:2] == b"\x1f\x8b" and first[4:8] == b"\0\0\0\0"  # gzip, no timestamp
    found = members(first)
    assert list(found) == sorted(found)
    assert set(found) >= {"gl-backend/Chart.yaml", "gl-backend/values.yaml", "gl-backend/values.schema.json",
                          "gl-backend/templates/deployment.yaml", "gl-backend/templates/_helpers.tpl"}
    for info in found.values():
        assert info.isfile() and info.name.startswith("gl-backend/")
        assert (info.mtime, info.uid, info.gid, info.mode) == (946684800, 0, 0, 0o644)
    with gzip.open(io.BytesIO(first)) as gz:
        assert gz.read()  # a valid gzip stream


def test_package_carries_the_site_values_and_backend_version() -> None:
    s = load("BACKEND_VERSION=v2.3.0", "BACKEND_REPLICAS=4", "NAMESPACE=team-a")
    archive, values = backend.release_values(s)
    chart_yaml = yaml.safe_load(member_text(archive, "Chart.yaml"))
    repo_chart = yaml.safe_load((backend.CHART_DIR / "Chart.yaml").read_text())
    assert chart_yaml == {**repo_chart, "appVersion": "v2.3.0"}
    packed = yaml.safe_load(member_text(archive, "values.yaml"))
    assert packed == {**values, "releaseDigest": ""}
    assert (packed["replicas"], packed["namespace"], packed["version"]) == (4, "team-a", "v2.3.0")
    assert backend.archive_name(s) == f"gl-backend-{repo_chart['version']}.tgz"


def test_values_yaml_in_the_repository_pins_what_the_default_settings_give() -> None:
    pinned = yaml.safe_load((backend.CHART_DIR / "values.yaml").read_text())
    rendered = backend.chart_values(load())
    assert set(pinned) == set(rendered)
    assert pinned["apiServer"]["addresses"] == []  # required, site specific: no default
    pinned["apiServer"]["addresses"] = rendered["apiServer"]["addresses"]
    assert pinned == rendered


def test_helmchart_uses_only_fields_of_the_k3s_helm_controller() -> None:
    doc = helmchart(load())
    assert (doc["apiVersion"], doc["kind"]) == ("helm.cattle.io/v1", "HelmChart")
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    assert doc["metadata"]["name"] == backend.RELEASE
    assert doc["metadata"]["namespace"] == "kube-system"  # the namespace k3s' controller watches
    assert set(doc["spec"]) <= HELMCHART_SPEC_FIELDS, set(doc["spec"]) - HELMCHART_SPEC_FIELDS
    spec = doc["spec"]
    assert spec["failurePolicy"] in FAILURE_POLICIES and spec["failurePolicy"] == "abort"
    assert spec["targetNamespace"] == "kube-system"
    assert "chart" not in spec and "repo" not in spec  # offline: the chart travels inside the object
    assert all(isinstance(spec[k], str) for k in ("targetNamespace", "valuesContent", "chartContent"))


def test_helmchart_content_is_the_packaged_chart_and_values() -> None:
    s = load("BACKEND_REPLICAS=3")
    archive, values = backend.release_values(s, tls_secret="site-tls")
    spec = helmchart(s, tls_secret="site-tls")["spec"]
    assert base64.b64decode(spec["chartContent"], validate=True) == archive
    assert yaml.safe_load(spec["valuesContent"]) == values
    assert values["ingress"]["tlsSecretName"] == "site-tls" and values["replicas"] == 3


def test_release_digest_follows_chart_and_values(tmp_path: Path) -> None:
    s = load()
    doc = helmchart(s)
    digest = doc["metadata"]["annotations"][backend.DIGEST_ANNOTATION]
    values = yaml.safe_load(doc["spec"]["valuesContent"])
    assert values["releaseDigest"] == digest and len(digest) == 64
    archive = base64.b64decode(doc["spec"]["chartContent"])
    unstamped = backend._dump({**values, "releaseDigest": ""}).encode()
    assert hashlib.sha256(archive + b"\0" + unstamped).hexdigest() == digest
    assert helmchart(s)["metadata"]["annotations"] == doc["metadata"]["annotations"]  # same input, same digest
    assert helmchart(load("BACKEND_REPLICAS=3"))["metadata"]["annotations"] != doc["metadata"]["annotations"]
    chart = tmp_path / "chart"
    shutil.copytree(backend.CHART_DIR, chart)
    (chart / "templates" / "config.yaml").write_text((chart / "templates" / "config.yaml").read_text() + "\n")
    assert helmchart(s, chart_dir=chart)["metadata"]["annotations"] != doc["metadata"]["annotations"]


def test_rendered_deployment_carries_the_release_digest(tmp_path: Path) -> None:
    doc = helmchart(load())
    (tmp_path / "c.tgz").write_bytes(base64.b64decode(doc["spec"]["chartContent"]))
    (tmp_path / "v.yaml").write_text(doc["spec"]["valuesContent"])
    out = helm("template", "gl-backend", str(tmp_path / "c.tgz"), "-f", str(tmp_path / "v.yaml"), scratch=tmp_path)
    assert out.returncode == 0, out.stderr
    (dep,) = [o for o in backend.iter_objects(out.stdout) if o["kind"] == "Deployment"]
    assert dep["metadata"]["annotations"] == {backend.DIGEST_ANNOTATION: doc["metadata"]["annotations"][
        backend.DIGEST_ANNOTATION]}


@pytest.mark.parametrize("setting, message", [
    ("replica=3", "Additional property replica is not allowed"),
    ("replicas=two", "replicas: Invalid type"),
    ("ingress.tlsSecretName=Bad_Name", "ingress.tlsSecretName: Does not match pattern"),
])
def test_values_schema_refuses_typos_and_wrong_types(tmp_path: Path, setting: str, message: str) -> None:
    archive, values = backend.release_values(load())
    (tmp_path / "c.tgz").write_bytes(archive)
    out = helm("template", "gl-backend", str(tmp_path / "c.tgz"), "--set", setting, scratch=tmp_path)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_empty_api_server_list_is_refused_not_rendered_as_allow_all(tmp_path: Path) -> None:
    out = helm("template", "gl-backend", str(backend.CHART_DIR), scratch=tmp_path)  # the repository defaults
    assert out.returncode != 0
    assert "apiServer.addresses is empty" in out.stderr


def test_write_bundle_files(tmp_path: Path) -> None:
    s = load()
    written = backend.write_bundle_files(s, tmp_path / "backend")
    manifest, archive = tmp_path / "backend" / backend.HELMCHART_FILE, tmp_path / "backend" / backend.archive_name(s)
    assert written == [manifest, archive]
    assert manifest.read_text() == backend.render_helmchart(s)
    assert archive.read_bytes() == backend.release_values(s)[0]
    assert base64.b64decode(yaml.safe_load(manifest.read_text())["spec"]["chartContent"]) == archive.read_bytes()
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o644


def test_a_chart_without_templates_is_an_error(tmp_path: Path) -> None:
    shutil.copy(backend.CHART_DIR / "Chart.yaml", tmp_path / "Chart.yaml")
    (tmp_path / "templates").mkdir()
    with pytest.raises(DeployError, match="no backend chart templates"):
        backend.render_helmchart(load(), chart_dir=tmp_path)


def test_a_foreign_chart_yaml_is_an_error(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(backend.CHART_DIR, chart)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: other\nversion: 1.0.0\n")
    with pytest.raises(DeployError, match="Chart.yaml: expected a chart named 'gl-backend'"):
        backend.render_helmchart(load(), chart_dir=chart)


def test_the_bundle_carries_the_helmchart_and_the_packaged_chart(tmp_path: Path) -> None:
    from gldeploy import bundle
    s = load()
    bundle.build_bundle(s, tmp_path, sequences.sequence("single"), baked=False,
                        staging=bundle.Staging(k3s_artifacts=False))
    assert (tmp_path / "backend" / backend.HELMCHART_FILE).read_text() == backend.render_helmchart(s)
    assert (tmp_path / "backend" / backend.archive_name(s)).read_bytes() == backend.release_values(s)[0]
    assert not (tmp_path / "backend" / "backend.yaml").exists()
