"""registries.yaml rendered once for every node; the bastion's service configs; the image list."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gldeploy import image, settings
from gldeploy.errors import ConfigError
from gldeploy.site import images, registries, services, stage


def load(tmp_path: Path, *extra: str) -> settings.Settings:
    pw = tmp_path / "pw"
    pw.write_text("S3cret-pass\n")
    pw.chmod(0o600)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    return settings.load(None, environ={}, overrides=[
        "CONTROL_PLANE_IPS=192.168.56.10", "BASTION_IP=192.168.56.5", "REGISTRY=registry.gov.local:5000",
        "REGISTRY_USER=deploy", f"REGISTRY_PASSWORD_FILE={pw}", f"REGISTRY_CA_FILE={ca_file}",
        "SITE_API_NAME=k3s-api.gov.local", *extra])


def test_every_upstream_k3s_pulls_from_is_mirrored_with_auth_and_ca(tmp_path: Path) -> None:
    doc = yaml.safe_load(registries.render(load(tmp_path)))
    for upstream in ("docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io", "registry.gov.local:5000"):
        assert doc["mirrors"][upstream]["endpoint"] == ["https://registry.gov.local:5000"], upstream
    config = doc["configs"]["registry.gov.local:5000"]
    assert config == {"tls": {"ca_file": "/etc/rancher/k3s/registry-ca.crt"},
                      "auth": {"username": "deploy", "password": "S3cret-pass"}}
    assert "rewrite" not in doc["mirrors"]["docker.io"]


def test_rendered_once_the_same_for_every_node_and_private(tmp_path: Path) -> None:
    s = load(tmp_path)
    a, b = registries.write(s, tmp_path / "a"), registries.write(s, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert (a.stat().st_mode & 0o777) == 0o600


def test_harbor_rewrites_into_its_project_and_needs_one(tmp_path: Path) -> None:
    doc = yaml.safe_load(registries.render(load(tmp_path, "REGISTRY_KIND=harbor", "REGISTRY_PROJECT=gl-native")))
    assert doc["mirrors"]["registry.k8s.io"]["rewrite"] == {"^(.*)$": "gl-native/$1"}
    with pytest.raises(ConfigError, match="REGISTRY_KIND=harbor needs REGISTRY_PROJECT"):
        registries.render(load(tmp_path, "REGISTRY_KIND=harbor"))


def test_no_registry_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REGISTRY is empty"):
        registries.render(settings.load(None, environ={}, overrides=["CONTROL_PLANE_IPS=192.168.56.10"]))


def test_service_configs(tmp_path: Path) -> None:
    s = load(tmp_path, "SITE_SUBNET=192.168.56.0/24")
    assert "allow 192.168.56.0/24" in services.chrony_server(s)
    assert "server 192.168.56.5 port 123 iburst" in services.chrony_client(s)
    assert services.hosts_text(s) == "192.168.56.5\tregistry.gov.local\n192.168.56.10\tk3s-api.gov.local\n"
    reg = yaml.safe_load(services.registry_config(s))
    assert reg["http"]["addr"] == "192.168.56.5:5000" and reg["auth"]["htpasswd"]["path"]
    assert reg["http"]["tls"] == {"certificate": "/etc/gl-site/registry.crt", "key": "/etc/gl-site/registry.key"}
    assert "listen-address=192.168.56.5" in services.dnsmasq_config(s) and "no-resolv" in services.dnsmasq_config(s)
    assert "allow 192.168.56.0/24" in services.chrony_server(load(tmp_path))  # default: the bastion's /24


def test_image_list_maps_upstream_names_and_refuses_unnamed_or_clashing(tmp_path: Path) -> None:
    d = tmp_path / "images"
    image.build_sample_image("v1.1", d, image_name="docker.io/rancher/mirrored-pause:v1.1")
    found = images.scan(d, "gl/")
    assert [(i.source, i.target) for i in found] == [("docker.io/rancher/mirrored-pause:v1.1",
                                                      "gl/rancher/mirrored-pause:v1.1")]
    assert images.list_text(found).split("\t")[:2] == [found[0].archive.name, "gl/rancher/mirrored-pause:v1.1"]
    assert images.target_of("busybox:1", "", "x") == ("docker.io/library/busybox:1", "library/busybox:1")
    bare = tmp_path / "bare"
    image.build_sample_image("v1.1", bare)
    with pytest.raises(ConfigError, match="does not name its image"):
        images.scan(bare)
    other = tmp_path / "other.oci.tar"
    other.write_bytes((d / image.archive_name("v1.1")).read_bytes())
    (d / "second.oci.tar").write_bytes(other.read_bytes())
    with pytest.raises(ConfigError, match="would both be"):
        images.scan(d)


def test_stage_refuses_a_bastion_without_a_valid_certificate(tmp_path: Path) -> None:
    s = load(tmp_path, f"SITE_CA_DIR={tmp_path / 'none'}")
    with pytest.raises(ConfigError, match="certificate not found; run: invoke ca.init"):
        stage.stage(s, tmp_path / "bundle", "bastion")
    assert not (tmp_path / "bundle").exists()
