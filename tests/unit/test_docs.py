"""The operator handbook: every page is in the mkdocs nav with its zh-TW twin (same headings), the
strict build passes and really fails on a broken link, and the pages say where the backend image
comes from."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gldeploy.paths import REPO

DOCS = REPO / "docs"
ZH = DOCS / "zh-TW"
CJK = re.compile(r"[\u4e00-\u9fff]")
HAS_MKDOCS = importlib.util.find_spec("mkdocs") is not None


class _Loader(yaml.SafeLoader):
    """mkdocs.yml may carry !!python/name tags (the toc slugify); read them as plain strings."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)


def _config() -> dict[str, Any]:
    loaded = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)  # noqa: S506 (safe loader subclass)
    assert isinstance(loaded, dict)
    return loaded


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def headings(text: str) -> list[int]:
    """Levels of the Markdown headings outside fenced code blocks."""
    levels, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#{1,6}) \S", line)):
            levels.append(len(m.group(1)))
    return levels


def english_pages() -> list[str]:
    return sorted(p.name for p in DOCS.glob("*.md"))


def test_headings_ignore_code_blocks() -> None:
    assert headings("# a\n```bash\n# comment\n```\n## b\n#not\n") == [1, 2]


def test_nav_lists_every_page_and_its_twin_and_nothing_else() -> None:
    nav = _nav_pages(_config()["nav"])
    expected = set(english_pages()) | {f"zh-TW/{p}" for p in english_pages()}
    assert set(nav) == expected and len(nav) == len(expected)
    assert all((DOCS / p).is_file() for p in nav)


@pytest.mark.parametrize("page", english_pages())
def test_every_english_page_has_a_zh_twin_with_the_same_headings(page: str) -> None:
    twin = ZH / page
    assert twin.is_file(), f"docs/zh-TW/{page} is missing: translate docs/{page}"
    en, zh = (DOCS / page).read_text(), twin.read_text()
    assert headings(zh) == headings(en), f"docs/zh-TW/{page}: headings differ from docs/{page}"
    prose = re.sub(r"```.*?```|`[^`]*`", "", zh, flags=re.S)
    assert len(CJK.findall(prose)) * 4 > len(re.findall(r"[A-Za-z]", prose)), \
        f"docs/zh-TW/{page} reads mostly as English: translate it"


def test_readme_twin_has_the_same_headings() -> None:
    assert headings((ZH / "README.md").read_text()) == headings((REPO / "README.md").read_text())


@pytest.mark.parametrize("page", ["README.md", "docs/index.md", "docs/runbook-single.md",
                                  "docs/runbook-cluster.md", "docs/runbook-airgap.md",
                                  "docs/zh-TW/README.md", "docs/zh-TW/index.md"])
def test_backend_image_origin_is_explained(page: str) -> None:
    text = (REPO / page).read_text()
    assert "BACKEND_IMAGE" in text
    if page not in ("docs/runbook-cluster.md", "docs/runbook-airgap.md"):
        assert "--sample-image" in text


def _build(config_dir: Path) -> subprocess.CompletedProcess[str]:
    # no --quiet: it hides the warnings strict mode counts, and a broken link then passes
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(config_dir / "site")], cwd=config_dir, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.skipif(not HAS_MKDOCS, reason="mkdocs not installed (pyproject's docs group; nox -s docs)")
def test_strict_build_passes_and_fails_on_a_broken_link(tmp_path: Path) -> None:
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    ok = _build(tmp_path)
    assert ok.returncode == 0, ok.stderr
    page = tmp_path / "docs" / "zh-TW" / "runbook-single.md"
    page.write_text(page.read_text() + "\n[壞連結](no-such-page.md#nowhere)\n")
    broken = _build(tmp_path)
    assert broken.returncode != 0 and "no-such-page.md" in broken.stderr
