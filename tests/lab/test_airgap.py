"""testinfra verifiers of the air-gap lab (vagrant/labs/airgap.yml), run by `invoke lab.run --lab airgap`
(gldeploy/lab/airgap_steps.py step_testinfra). Skipped anywhere else (tests/lab/conftest.py).

No route out: no default route but on the air-gap network, and a connection to a lab-only address
outside it (the host's management address, on a port the host opens for this test only) fails. The
registry needs both the site CA and the credentials; time is synced to the bastion; names resolve
through the bastion; under real k3s every pod image came from the site registry."""
from __future__ import annotations

import ipaddress
import json
import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", autouse=True)
def _airgap_lab_only(inventory: dict[str, Any]) -> None:
    """These verifiers belong to the air-gap lab (its inventory names a bastion); other labs skip them."""
    if "bastion" not in inventory:
        pytest.skip("air-gap lab only: this lab has no bastion (vagrant/labs/airgap.yml)")


def _hosts(inventory: dict[str, Any], names: list[str]) -> list[Any]:
    return [testinfra.get_host(f"ssh://{ip}", ssh_config=inventory["ssh_config"]) for ip in names]


@pytest.fixture(scope="module")
def bastion(inventory: dict[str, Any]) -> Any:
    return _hosts(inventory, [inventory["bastion"]["ip"]])[0]


@pytest.fixture(scope="module")
def nodes(inventory: dict[str, Any]) -> list[Any]:
    return _hosts(inventory, [n["ip"] for n in inventory["nodes"]])


@pytest.fixture(scope="module")
def all_vms(bastion: Any, nodes: list[Any]) -> list[Any]:
    return [bastion, *nodes]


@pytest.fixture
def host_listener(inventory: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """A TCP listener on the host's management address, open only for this test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((inventory["mgmt_host_ip"], 0))
        sock.listen(4)
        sock.settimeout(0.5)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    sock.accept()[0].close()
                except OSError:
                    continue
        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield inventory["mgmt_host_ip"], sock.getsockname()[1]
        stop.set()
        thread.join(timeout=2)


def test_default_route_only_on_the_airgap_network(all_vms: list[Any], inventory: dict[str, Any]) -> None:
    cidr = ipaddress.IPv4Network(inventory["network"]["cidr"])
    for vm in all_vms:
        routes = json.loads(vm.check_output("ip -j -4 route show default"))
        assert routes, f"{vm.backend.hostname}: no default route (the site route is missing)"
        for route in routes:
            dev_addrs = json.loads(vm.check_output(f"ip -j -4 addr show dev {shlex.quote(route['dev'])}"))
            local = [a["local"] for i in dev_addrs for a in i["addr_info"]]
            assert local and all(ipaddress.IPv4Address(a) in cidr for a in local), \
                f"{vm.backend.hostname}: default route via {route} leaves by a NIC outside {cidr} ({local})"
            if "gateway" in route:
                assert ipaddress.IPv4Address(route["gateway"]) in cidr


def test_no_connection_to_a_lab_address_outside_the_airgap_network(
        all_vms: list[Any], host_listener: tuple[str, int]) -> None:
    ip, port = host_listener
    with socket.create_connection((ip, port), timeout=5):  # control: the listener does answer
        pass
    for vm in all_vms:
        probe = vm.run(f"timeout 8 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{ip}/{port}')}")
        assert probe.rc != 0, f"{vm.backend.hostname} reached {ip}:{port} outside the air-gap network"


def test_host_bridge_of_the_airgap_network_has_no_address(inventory: dict[str, Any]) -> None:
    import subprocess
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", inventory["network"]["bridge"]],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert all(not i.get("addr_info") for i in json.loads(out)), out


def _curl(vm: Any, inventory: dict[str, Any], *opts: str) -> str:
    reg = inventory["registry"]
    url = f"https://{reg['name']}:{reg['port']}/v2/"
    return str(vm.run("curl -s -o /dev/null -w '%{http_code}' --max-time 20 " + " ".join(opts) + " "
                      + shlex.quote(url)).stdout.strip())


@pytest.fixture(scope="module")
def client_files(nodes: list[Any], inventory: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The site CA, a wrong CA, right and wrong credentials as 0600 curl configs on the node, and an
    empty CA directory: curl uses --cacert AND its default CA path (/etc/ssl/certs), which on a site
    node holds the site CA (03_site_node distributes it), so a wrong --cacert alone is no test."""
    reg, node = inventory["registry"], nodes[0]
    password = Path(reg["password_file"]).read_text().strip()
    tmp = node.check_output("mktemp -d")
    files = {"ca": f"{tmp}/ca.crt", "wrong_ca": f"{tmp}/wrong.crt", "good": f"{tmp}/good.curlrc",
             "bad": f"{tmp}/bad.curlrc", "no_capath": f"{tmp}/empty-capath"}
    node.run(f"mkdir -m 0700 {files['no_capath']}")
    node.run(f"umask 077; cat > {files['ca']} <<'EOF'\n{Path(reg['ca_file']).read_text()}EOF")
    node.run(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=wrong "
             f"-keyout {tmp}/wrong.key -out {files['wrong_ca']} 2>/dev/null")
    node.run(f"umask 077; cat > {files['good']} <<'EOF'\nuser = \"{reg['user']}:{password}\"\nEOF")
    node.run(f"umask 077; cat > {files['bad']} <<'EOF'\nuser = \"{reg['user']}:not-{password[:4]}\"\nEOF")
    yield files
    node.run(f"rm -rf {shlex.quote(tmp)}")


def test_registry_needs_ca_and_credentials(nodes: list[Any], inventory: dict[str, Any],
                                           client_files: dict[str, str]) -> None:
    node, f = nodes[0], client_files
    only = ("--capath", f["no_capath"])  # trust exactly the --cacert given
    assert _curl(node, inventory, "--cacert", f["ca"], *only, "-K", f["good"]) == "200"
    assert _curl(node, inventory, "--cacert", f["ca"], *only) == "401"  # anonymous
    assert _curl(node, inventory, "--cacert", f["ca"], *only, "-K", f["bad"]) == "401"  # wrong password
    assert _curl(node, inventory, "--cacert", f["wrong_ca"], *only, "-K", f["good"]) == "000"  # TLS refused
    assert node.run(f"curl -s --max-time 20 --cacert {f['wrong_ca']} --capath {f['no_capath']} "
                    f"https://{inventory['registry']['name']}:{inventory['registry']['port']}/v2/"
                    ).rc == 60  # CURLE_PEER_FAILED_VERIFICATION
    # the node's own trust store has the site CA (03_site_node): no --cacert needed
    assert _curl(node, inventory, "-K", f["good"]) == "200"


def test_time_synced_to_the_bastion(bastion: Any, nodes: list[Any], inventory: dict[str, Any]) -> None:
    """chrony on the bastion is the site's time source; each node's chrony has selected it ('^*')."""
    import time
    assert bastion.service("chrony").is_running
    ip = inventory["bastion"]["ip"]
    for node in nodes:
        deadline = time.monotonic() + 120  # chrony selects a source after a few polls
        while True:
            sources = node.check_output("chronyc -n sources")
            if any(ln.startswith("^*") and ip in ln for ln in sources.splitlines()) or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert any(ln.startswith("^*") and ip in ln for ln in sources.splitlines()), sources
        tracking = node.check_output("chronyc -n tracking")
        assert "Reference ID    : " in tracking and "Leap status     : Normal" in tracking, tracking


def test_names_resolve_through_the_bastion(bastion: Any, nodes: list[Any], inventory: dict[str, Any]) -> None:
    ip, name = inventory["bastion"]["ip"], inventory["registry"]["name"]
    assert bastion.check_output(f"dig +short @{ip} {name}") == ip
    for node in nodes:
        assert node.file("/etc/resolv.conf").contains(f"^nameserver {ip}$")
        assert node.check_output(f"getent ahostsv4 {name}").split()[0] == ip


def test_every_pod_image_came_from_the_site_registry(nodes: list[Any], inventory: dict[str, Any],
                                                     needs_real: None) -> None:
    reg = f"{inventory['registry']['name']}:{inventory['registry']['port']}"
    pods = json.loads(nodes[0].check_output("sudo k3s kubectl get pods -A -o json"))
    images = {c["imageID"] for p in pods["items"] for c in p["status"].get("containerStatuses", [])}
    assert images
    log = nodes[0].check_output("sudo grep -h 'PullImage' /var/lib/rancher/k3s/agent/containerd/containerd.log || true")
    assert reg in log or all(i.startswith(reg) for i in images)
