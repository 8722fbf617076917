"""keytypes: each value type refuses what it must, with the expectation in the message."""
from __future__ import annotations

import pytest

from gldeploy import keytypes as t


@pytest.mark.parametrize("value", ["/var/lib/gl-deploy", "/opt/gl", "/srv/a/b", "/var/lib/gl deploy"])
def test_work_dir_accepts_dedicated_directories(value: str) -> None:
    assert t.work_dir(value) == value


@pytest.mark.parametrize("value", ["", "x", "./x", "/a/../b", "/a/./b", "/a//b", "/a/b/", "/", "/usr",
                                   "/usr/local", "/var/tmp", "/lib64", "/proc/self", "/sys/kernel/x",
                                   "/dev/null", "/etc/rancher/k3s", "/var/lib/rancher", "/root", "/home/bob",
                                   "/var/lib/gl\x00"])
def test_work_dir_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        t.work_dir(value)


@pytest.mark.parametrize("value", ["root", "vagrant", "_svc", "a-b.c_d", "x" * 32])
def test_posix_user(value: str) -> None:
    assert t.posix_user(value) == value


@pytest.mark.parametrize("value", ["", "-x", ".x", "a b", "a:b", "a/b", "$(id)", "x" * 33, "é"])
def test_posix_user_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        t.posix_user(value)


@pytest.mark.parametrize("value", ["", "~/.ssh/id_ed25519", "/a b/c", "rel/path"])
def test_path(value: str) -> None:
    assert t.path(value) == value


@pytest.mark.parametrize("value", ["-oX", "a\nb", "a\rb", "a\x7f", "a\x00", "a\x1b"])
def test_path_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        t.path(value)


@pytest.mark.parametrize("value", ["127.0.0.1", "0.0.0.0", "239.1.1.1", "169.254.0.1", "240.0.0.1"])
def test_node_ip_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        t.node_ip(value)


def test_node_ip_list_names_the_bad_item() -> None:
    with pytest.raises(ValueError, match="127.0.0.2"):
        t.node_ip_list("192.168.56.10,127.0.0.2")
    assert t.node_ip_list(" 10.0.0.1 ,10.0.0.2") == ("10.0.0.1", "10.0.0.2")


def test_k3s_release_order() -> None:
    assert t.k3s_release("v1.28.5+k3s1") > t.k3s_release("v1.28.3+k3s2")
    assert t.k3s_release("v1.28.3+k3s10") > t.k3s_release("v1.28.3+k3s9")
    assert t.k3s_release("v1.30.0+k3s1") > t.k3s_release("v1.29.12+k3s1")


def test_disable_items_follow_the_k3s_release() -> None:
    base = {"coredns", "servicelb", "traefik", "local-storage", "metrics-server"}
    assert set(t.k3s_disable_items("v1.28.3+k3s2")) == base
    assert set(t.k3s_disable_items("v1.28.5+k3s1")) == base | {"runtimes"}
    assert set(t.k3s_disable_items("v1.26.12+k3s1")) == base | {"runtimes"}
    assert set(t.k3s_disable_items("v1.26.11+k3s2")) == base
    assert set(t.k3s_disable_items("v1.31.1+k3s1")) == base | {"runtimes"}


@pytest.mark.parametrize("url, expected", [
    ("http://mirror.local/k3s", True), ("http://10.0.0.5:8080/k3s", True), ("HTTP://mirror/k3s", True),
    ("https://github.com/k3s-io/k3s/releases/download", False), ("file:///srv/k3s", False),
    ("http://127.0.0.1:8080", False), ("http://127.9.9.9/x", False), ("http://localhost:1/x", False),
    ("http://[::1]:8080/x", False), ("http://127.0.0.1.evil.example/x", True),
])
def test_plain_http_means_http_across_a_network(url: str, expected: bool) -> None:
    assert t.plain_http(url) is expected
