"""The zh-TW troubleshooting guide and configuration reference are generated from translation tables
keyed by check name / key name; a missing or stale translation fails here, so they cannot drift."""
from __future__ import annotations

import dataclasses
import re

import pytest

from gldeploy import doctor, doctor_zh, settings, settings_zh
from gldeploy.errors import ConfigError, DeployError
from gldeploy.paths import REPO
from gldeploy.tasks.settings_tasks import DOCS_PATHS, configuration_markdown

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_doctor_check_has_a_current_translation() -> None:
    checks = doctor.table()
    assert set(doctor_zh.ZH) == {c.name for c in checks}, "translate every check, and only the table's checks"
    stale = [c.name for c in checks
             if doctor_zh.ZH[c.name].source != doctor_zh.fingerprint(c.symptom, c.cause, c.fix)]
    assert stale == [], f"English text changed since translation: {stale} (update gldeploy/doctor_zh.py)"
    for name, entry in doctor_zh.ZH.items():
        assert all(CJK.search(text) for text in (entry.symptom, entry.cause, entry.fix)), name


def test_every_settings_key_has_a_current_translation() -> None:
    rows = settings.describe_keys()
    assert set(settings_zh.ZH) == {r["key"] for r in rows}, "translate every key, and only the table's keys"
    stale = [r["key"] for r in rows if settings_zh.ZH[r["key"]].source != settings_zh.fingerprint(r["doc"])]
    assert stale == [], f"English doc changed since translation: {stale} (update gldeploy/settings_zh.py)"
    assert all(CJK.search(e.doc) for e in settings_zh.ZH.values())


def test_committed_zh_guides_are_current() -> None:
    for lang, path in doctor.GUIDES.items():
        assert path.read_text() == doctor.guide(doctor.table(), lang) + "\n", \
            f"{path} is stale: run python -m gldeploy.doctor --write"
    for lang, rel in DOCS_PATHS.items():
        assert (REPO / rel).read_text() == configuration_markdown(lang), f"{rel} is stale: run invoke settings.docs"


def test_zh_guide_has_the_same_entries_and_anchors() -> None:
    en, zh = (doctor.guide(doctor.table(), lang) for lang in ("en", "zh-TW"))
    heads = [line for line in en.splitlines() if line.startswith("#")]
    assert len(heads) == len([line for line in zh.splitlines() if line.startswith("#")])
    for c in doctor.table():
        assert f"## {c.name}\n" in zh and f"[`{c.name}`](#{c.name})" in zh
    assert "| 症狀 | 檢查 | 修正 |" in zh and "| symptom |" not in zh


def test_changed_english_makes_the_translation_stale() -> None:
    checks = list(doctor.table())
    checks[0] = dataclasses.replace(checks[0], fix=checks[0].fix + " (changed)")
    with pytest.raises(DeployError, match=rf"check '{checks[0].name}' has no current zh-TW translation"):
        doctor.guide(checks, "zh-TW")
    assert "(changed)" in doctor.guide(checks, "en")


def test_missing_key_translation_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(settings_zh.ZH, "WORK_DIR")
    with pytest.raises(DeployError, match="key WORK_DIR has no current zh-TW translation"):
        configuration_markdown("zh-TW")
    with pytest.raises(ConfigError, match="language 'fr'"):
        configuration_markdown("fr")


def test_zh_reference_rows_match_the_english_rows() -> None:
    def keys(text: str) -> list[str]:
        return re.findall(r"^\| `([A-Z0-9_]+)` \|", text, re.M)
    assert keys(configuration_markdown("zh-TW")) == keys(configuration_markdown("en")) == list(settings.KEYS)
