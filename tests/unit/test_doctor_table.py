"""The doctor table: parsed from scripts/lib/doctor_table.sh, one check function per row, and the
generated docs/troubleshooting.md current."""
from __future__ import annotations

import pytest

from gldeploy import doctor
from gldeploy.errors import DeployError
from gldeploy.paths import SCRIPTS_DIR
from gldeploy.sequences import ROLES

REQUIRED = {"k3s-installed", "port-conflict", "disk-pressure", "memory-pressure", "evictions", "clock-sync",
            "clock-cert-skew", "cert-expiry", "registry-reachable", "registry-ca", "registry-auth",
            "registry-image", "image-pulls", "cni-config", "cni-network", "node-ports", "etcd-health",
            "vip-held", "vip-duplicate", "config-drift", "dns", "airgap-deps"}


def test_table_covers_every_failure_mode_with_text() -> None:
    checks = doctor.table()
    assert REQUIRED <= {c.name for c in checks}
    for c in checks:
        assert c.symptom and c.cause and c.fix and set(c.roles) <= set(ROLES)


def test_every_row_has_its_check_function() -> None:
    lib = (SCRIPTS_DIR / "lib" / "doctor_checks.sh").read_text()
    assert doctor.check_functions(doctor.table(), lib) == []
    assert doctor.check_functions(doctor.table(), "") != []


def test_committed_guide_is_current() -> None:
    assert doctor.GUIDE.read_text() == doctor.guide(doctor.table()) + "\n", \
        "docs/troubleshooting.md is stale: run python -m gldeploy.doctor --write"


def test_guide_has_one_entry_per_check() -> None:
    text = doctor.guide(doctor.table())
    for c in doctor.table():
        assert f"## {c.name}\n" in text and f"[`{c.name}`](#{c.name})" in text


def _block(body: str) -> str:
    return f"x\nread -r -d '' DOCTOR_TABLE <<'GL_DOCTOR_TABLE' || true\n{body}\nGL_DOCTOR_TABLE\n"


@pytest.mark.parametrize("body,needle", [
    ("check: a\nroles: all\nneeds: none\nsymptom: s\ncause: c", "lacks fix"),
    ("check: a\nroles: boss\nneeds: none\nsymptom: s\ncause: c\nfix: f", "unknown role 'boss'"),
    ("check: a\nroles: all\nneeds: maybe\nsymptom: s\ncause: c\nfix: f", "needs 'maybe'"),
    ("check: a\nroles: all\nneeds: none\nsymptom s", "expected '<field>: <value>'"),
])
def test_bad_table_is_named(body: str, needle: str) -> None:
    with pytest.raises(DeployError, match=needle):
        doctor.parse_table(_block(body), "t.sh")


def test_argv_always_names_the_role() -> None:
    assert doctor.argv("/w", "agent") == ["bash", "/w/doctor.sh", "--json", "--role", "agent"]
    assert doctor.argv("/w", "single", bundle_out="/tmp", since=2)[-4:] == ["--bundle", "/tmp", "--since", "2"]
