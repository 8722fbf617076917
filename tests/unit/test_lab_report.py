"""Lab report: rows from deploy JSON and JUnit, timing shares, second-run ratio, RAM parsing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from gldeploy.lab.offline import phase_row
from gldeploy.lab.report import LabReport, Row, host_memory_used_mib
from gldeploy.lab.verify import junit_rows

DEPLOY = {"results": [
    {"phase": "01_pre_install_check", "host": "192.168.56.10", "status": "pass", "duration": 2.5, "checks": []},
    {"phase": "04_health_check", "host": "192.168.56.10", "status": "pass", "duration": 1.0,
     "checks": [{"name": "node ready", "status": "skipped", "message": "needs real k3s"}]},
    {"phase": "02_install_k3s", "host": "192.168.56.10", "status": "fail", "duration": 3.0,
     "checks": [{"name": "k3s api", "status": "fail", "message": "timed out"}]},
]}


def test_rows_carry_status_and_reason() -> None:
    report = LabReport("single", "standin", "stand-in", "TCG")
    report.add_deploy_report("deploy 1", DEPLOY)
    assert [(r.phase, r.status) for r in report.rows] == [
        ("01_pre_install_check", "pass"), ("04_health_check", "pass"),
        ("02_install_k3s", "fail")]
    assert "needs real k3s" in report.rows[1].reason
    assert report.rows[2].reason == "k3s api: timed out"


def test_summary_shares_and_ratio(tmp_path: Path) -> None:
    report = LabReport("single", "real", "given", "KVM")
    report.steps = {"vagrant up": 40.0, "deploy (1st)": 50.0, "deploy (2nd, idempotency)": 10.0}
    summ = report.summary()
    assert summ["total_s"] == 100.0
    assert summ["share"]["vagrant up"] == 0.4
    assert summ["second_run_ratio"] == 0.2
    path = report.write(tmp_path)
    body = json.loads(path.read_text())
    assert body["k3s_mode"] == "real" and body["second_run_ratio"] == 0.2
    assert json.loads((tmp_path / "lab-single-latest.json").read_text()) == body
    console = Console(record=True, width=200)
    report.rows.append(Row("testinfra", "test_x[/etc/rancher/k3s/config.yaml]", "[/]", "fail", 1.0, "[bold] x [/]"))
    report.print(console)
    text = console.export_text()
    assert "test_x[/etc/rancher/k3s/config.yaml]" in text and "[bold] x [/]" in text
    assert "REAL k3s" in text and "0.20 (target < 0.2)" in text


def test_no_ratio_without_two_runs() -> None:
    report = LabReport("single", "standin", "", "TCG")
    report.steps = {"deploy (1st)": 5.0}
    assert "second_run_ratio" not in report.summary()


def test_step_timer_records_on_failure() -> None:
    report = LabReport("single", "standin", "", "TCG")
    with pytest.raises(RuntimeError):
        with report.step("boom"):
            raise RuntimeError
    assert "boom" in report.steps


def test_meminfo_parsing() -> None:
    text = "MemTotal:       2048000 kB\nMemFree: 1 kB\nMemAvailable:   1024000 kB\n"
    assert host_memory_used_mib(text) == 1000


def test_junit_rows(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite><testcase name="test_a[ssh://192.168.56.10]" time="1.5"/>'
                   '<testcase name="test_b[ssh://192.168.56.10]" time="0"><skipped message="needs real k3s"/>'
                   '</testcase><testcase name="test_c" time="2"><failure message="boom&#10;more"/></testcase>'
                   '<testcase name="test_d[ssh://192.168.56.10-/etc/x.yaml]" time="1"/>'
                   '<testcase name="test_e[second-deploy]" time="1"/></testsuite></testsuites>')
    rows = junit_rows(xml)
    assert [(r.phase, r.status, r.reason) for r in rows] == [
        ("test_a", "pass", ""), ("test_b", "skipped", "needs real k3s"), ("test_c", "fail", "boom"),
        ("test_d[/etc/x.yaml]", "pass", ""), ("test_e[second-deploy]", "pass", "")]
    assert [r.host for r in rows] == ["192.168.56.10", "192.168.56.10", "-", "192.168.56.10", "-"]


def test_offline_phase_row() -> None:
    out = json.dumps({"phase": "01", "host": "single", "status": "pass", "checks": [
        {"name": "x", "status": "skipped", "message": "needs real k3s"}]})
    row = phase_row("01_pre_install_check", "single", 0, out + "\n", "", 1.23)
    assert (row.status, row.host, row.duration) == ("pass", "single", 1.2)
    assert "needs real k3s" in row.reason
    bad = phase_row("02_install_k3s", "single", 1, "", "fatal: no k3s\n", 2.0)
    assert (bad.status, bad.reason) == ("fail", "fatal: no k3s")


def test_offline_warn_exit_code() -> None:
    out = json.dumps({"status": "warn", "checks": [{"name": "existing-k3s", "status": "warn"}]})
    assert phase_row("01_pre_install_check", "single", 3, out, "", 1.0).status == "warn"
    # exit 3 is the warnings exit code whatever the JSON says: read as the invoke path reads it
    assert phase_row("01_pre_install_check", "single", 3, json.dumps({"status": "pass"}), "", 1.0).status == "warn"


def test_a_standin_pass_is_never_reported_as_verified_kubernetes(tmp_path: Path) -> None:
    report = LabReport("single", "standin", "stand-in", "TCG")
    report.result = "pass"
    body = json.loads(report.write(tmp_path).read_text())
    assert body["result"] == "pass" and body["kubernetes_verified"] is False
    console = Console(record=True, width=200)
    report.print(console)
    text = console.export_text()
    assert "STAND-IN" in text and "Kubernetes not verified" in text
    real = LabReport("single", "real", "given", "KVM")
    real.result = "pass"
    assert real.to_dict()["kubernetes_verified"] is True
