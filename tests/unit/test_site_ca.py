"""The internal CA with real openssl: issue, verify, names, expiry, the site's own CA, idempotence."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gldeploy.errors import ConfigError
from gldeploy.site import ca

NAMES = ca.Names.of(["registry.gov.local", "192.168.56.5"])


def test_init_creates_a_ca_and_a_server_certificate_that_verifies(tmp_path: Path) -> None:
    issued = ca.init(tmp_path / "ca", NAMES)
    assert issued.outcome == "created"
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(issued.ca_cert), str(issued.cert)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert ca.sans_of(issued.cert) == NAMES
    assert (issued.key.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "ca/ca.key").stat().st_mode & 0o777) == 0o600
    text = subprocess.run(["openssl", "x509", "-in", str(issued.cert), "-noout", "-text"], capture_output=True,
                          text=True).stdout
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    assert ca.problems(issued.cert, issued.ca_cert, NAMES) == []


def test_init_twice_changes_nothing(tmp_path: Path) -> None:
    ca.init(tmp_path / "ca", NAMES)
    before = (tmp_path / "ca/registry.crt").read_bytes()
    again = ca.init(tmp_path / "ca", NAMES)
    assert again.outcome == "unchanged" and (tmp_path / "ca/registry.crt").read_bytes() == before


def test_new_names_reissue_from_the_same_ca(tmp_path: Path) -> None:
    first = ca.init(tmp_path / "ca", NAMES)
    ca_before = first.ca_cert.read_bytes()
    other = ca.Names.of(["registry2.gov.local", "192.168.56.5"])
    assert "does not name registry2.gov.local" in ca.problems(first.cert, first.ca_cert, other)[0]
    again = ca.init(tmp_path / "ca", other)
    assert again.outcome == "reissued" and first.ca_cert.read_bytes() == ca_before
    assert ca.sans_of(again.cert) == other


def test_a_certificate_expiring_soon_is_flagged_and_reissued(tmp_path: Path) -> None:
    issued = ca.init(tmp_path / "ca", NAMES, days=10)
    found = ca.problems(issued.cert, issued.ca_cert, NAMES)
    assert len(found) == 1 and "expires within 30 days" in found[0] and "invoke ca.init" in found[0]
    assert ca.init(tmp_path / "ca", NAMES).outcome == "reissued"


def test_a_certificate_of_another_ca_is_flagged(tmp_path: Path) -> None:
    issued = ca.init(tmp_path / "a", NAMES)
    other = ca.init(tmp_path / "b", NAMES)
    found = ca.problems(issued.cert, other.ca_cert, NAMES)
    assert len(found) == 1 and "not valid under the CA" in found[0]


def test_the_sites_own_ca_is_used_and_its_key_stays_put(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    ca.create_ca(own / "ca.crt", own / "ca.key", 100)
    issued = ca.init(tmp_path / "out", NAMES, ca_cert=own / "ca.crt", ca_key=own / "ca.key")
    assert issued.ca_cert.read_bytes() == (own / "ca.crt").read_bytes()
    assert not (tmp_path / "out/ca.key").exists()
    assert ca.problems(issued.cert, own / "ca.crt", NAMES) == []


def test_a_key_of_another_ca_and_half_a_pair_are_bad_input(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ca.create_ca(tmp_path / name / "ca.crt", tmp_path / name / "ca.key", 100)
    with pytest.raises(ConfigError, match="does not belong to the CA certificate") as info:
        ca.init(tmp_path / "out", NAMES, ca_cert=tmp_path / "a/ca.crt", ca_key=tmp_path / "b/ca.key")
    assert info.value.exit_code == 2 and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="go together"):
        ca.init(tmp_path / "out", NAMES, ca_cert=tmp_path / "a/ca.crt")


def test_a_leaf_certificate_is_not_accepted_as_ca(tmp_path: Path) -> None:
    issued = ca.init(tmp_path / "ca", NAMES)
    with pytest.raises(ConfigError, match="not a CA certificate"):
        ca.init(tmp_path / "out", NAMES, ca_cert=issued.cert, ca_key=issued.key)


@pytest.mark.parametrize("bad", [["under_score.local"], [], ["-x"]])
def test_bad_names_are_bad_input(bad: list[str]) -> None:
    with pytest.raises(ConfigError):
        ca.Names.of(bad)
