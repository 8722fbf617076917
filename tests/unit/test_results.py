"""results: reading a phase's --json object, statuses, the table, exit codes and the JSON report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gldeploy import results

RESULT = {"phase": "01_pre_install_check", "host": "h1", "status": "warn", "changed": False,
          "k3s_mode": "standin", "checks": [{"name": "swap", "status": "warn", "message": "swap is on", "fix": "x"}]}


@pytest.mark.parametrize("rc,stdout,expected", [
    (0, '{"status": "pass", "checks": []}', "pass"),
    (3, '{"status": "warn", "checks": []}', "warn"),
    (3, '{"status": "pass", "checks": []}', "warn"),
    (1, '{"status": "fail", "checks": []}', "fail"),
    (0, "garbage", "warn"),
    (1, "", "fail"),
], ids=["pass", "warn exit 3", "exit 3 means warn", "fail", "no json but rc 0", "no json rc 1"])
def test_status_from_exit_code_and_json(rc: int, stdout: str, expected: str) -> None:
    assert results.from_script("01", "h", "single", rc, stdout, "last words\n", 0.1).status == expected


def _read(stdout: str) -> results.PhaseResult:
    return results.from_script("01_pre_install_check", "h1", "single", 3, stdout, "", 0.1)


@pytest.mark.parametrize("stdout", [
    "Welcome to host h1, authorised use only" + "\n" + json.dumps(RESULT) + "\n",
    "Welcome to host h1 (no newline)" + json.dumps(RESULT) + "\n",
    "Last login: Mon\n\x1b[1mmotd\x1b[0m" + json.dumps(RESULT),
    "\n" + json.dumps(RESULT) + "\nlogout\n",
    "{\"banner\": \"json-looking motd\"}\n" + json.dumps(RESULT) + "\n",
    json.dumps(RESULT) + "\n{\"unrelated\": 1}\n",
], ids=["banner line", "banner glued without newline", "escape codes glued", "trailing noise",
        "json banner before", "unrelated object after"])
def test_result_object_survives_banners_and_noise(stdout: str) -> None:
    found = results.json_object(stdout)
    assert found == RESULT
    r = _read(stdout)
    assert (r.status, r.k3s_mode, r.message) == ("warn", "standin", "swap: swap is on")
    assert r.checks == RESULT["checks"]


def test_raw_control_characters_in_a_message_do_not_lose_the_result() -> None:
    """An older script (or any writer) that left ESC raw inside a string: still read."""
    raw = json.dumps(RESULT).replace("swap is on", "swap \x1b[31mis\x1b[0m on\x07")
    r = _read(raw + "\n")
    assert r.k3s_mode == "standin" and r.checks[0]["message"] == "swap \x1b[31mis\x1b[0m on\x07"


def test_exit_codes_follow_the_readme() -> None:
    """0 pass, 3 passed with warnings only, 1 failed, 2 bad input only."""
    ok = results.from_script("01", "a", "single", 0, '{"status": "pass"}', "", 0.1)
    warn = results.from_script("01", "a", "single", 3, '{"status": "warn"}', "", 0.1)
    bad = results.from_script("02", "a", "single", 2, "", "ERROR bad key\n", 0.1)
    failed = results.from_script("02", "b", "single", 1, '{"status": "fail"}', "", 0.1)
    skipped = results.from_script("04", "a", "single", 0, '{"status": "skipped"}', "", 0.1)
    assert results.exit_code([]) == 0
    assert results.exit_code([ok, skipped]) == 0
    assert results.exit_code([ok, warn]) == 3
    assert results.exit_code([warn, bad]) == 2 and bad.message == "ERROR bad key"
    assert results.exit_code([warn, bad, failed]) == 1
    assert results.exit_code([failed, results.not_run("03", "b", "single", "02 failed")]) == 1


def _report(tmp_path: Path, rs: list[results.PhaseResult]) -> dict[str, Any]:
    path = results.write_report(tmp_path / "out" / "report.json", rs, {"env_file": "env/single.env"})
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def test_table_and_json_report(tmp_path: Path) -> None:
    r = results.from_script("01_pre_install_check", "h1", "single", 3,
                            json.dumps({"status": "warn", "k3s_mode": "standin", "checks": [
                                {"name": "swap", "status": "warn", "message": "swap is on"}]}), "", 1.25)
    console = Console(record=True, width=200)
    results.print_table([r], console)
    text = console.export_text()
    assert "01_pre_install_check" in text and "swap: swap is on" in text and "1 warn" in text
    body = _report(tmp_path, [r])
    assert body["exit_code"] == 3 and body["status"] == "warn" and body["summary"] == {"warn": 1}
    assert body["env_file"] == "env/single.env"
    assert body["results"][0]["k3s_mode"] == "standin" and body["results"][0]["duration"] == 1.25


@pytest.mark.parametrize("outcome, status, code", [("pass", "pass", 0), ("fail", "fail", 1)])
def test_json_report_status_agrees_with_the_exit_code(tmp_path: Path, outcome: str, status: str, code: int) -> None:
    r = results.from_script("04", "h1", "single", code, json.dumps({"status": outcome, "checks": []}), "", 0.1)
    body = _report(tmp_path, [r])
    assert (body["status"], body["exit_code"]) == (status, code) == (status, results.exit_code([r]))


@pytest.mark.parametrize("message", [
    "unit [/] closed", "see [bold]this[/bold] and [word]", "[/]", "a [link=http://x]y[/link]", "\\[x]"])
def test_host_text_is_never_read_as_markup(message: str) -> None:
    report = {"status": "fail", "k3s_mode": "none", "checks": [{"name": "n[/]", "status": "fail", "message": message}]}
    r = results.from_script("03_deploy_gl_backend", "host[red]", "single", 1, json.dumps(report), "", 0.2)
    console = Console(record=True, width=300)
    results.print_table([r], console)
    text = console.export_text()
    assert f"n[/]: {message}" in text
    assert "host[red]" in text


def test_skipped_checks_are_named_in_the_notes_never_a_silent_pass() -> None:
    r = results.from_script("04_health_check", "h1", "single", 0, json.dumps(
        {"status": "pass", "k3s_mode": "standin", "checks": [
            {"name": "api-ping", "status": "pass", "message": "pong"},
            {"name": "node-ready", "status": "skipped", "message": "needs real k3s"},
            {"name": "system-pods", "status": "skipped", "message": "needs real k3s"}]}), "", 0.5)
    assert r.message == "2 check(s) skipped: needs real k3s"
    console = Console(record=True, width=200)
    results.print_table([r], console)
    assert "2 check(s) skipped: needs real k3s" in console.export_text()
