"""The lab picks its k3s the way a deploy verifies it: given dir, pinned download, else the stand-in."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gldeploy import settings
from gldeploy.errors import ConfigError, DeployError
from gldeploy.lab import k3s_source
from gldeploy.paths import REPO
from tests.fixtures.k3s_standin.release import STANDIN, make_release
from tests.fixtures.k3s_standin.testing import free_port, serve_dir

VERSION = "v1.28.3+k3s2"


def load(**values: str) -> settings.Settings:
    overrides = {"CONTROL_PLANE_IPS": "192.168.56.10", "K3S_VERSION": VERSION, **values}
    return settings.load(None, environ={}, overrides=[f"{k}={v}" for k, v in overrides.items()])


def test_given_directory_is_verified_and_its_mode_reported(tmp_path: Path) -> None:
    make_release(tmp_path / "rel", VERSION)
    source = k3s_source.choose(str(tmp_path / "rel"), load(), standin=None, allow_download=False)
    assert (source.mode, source.directory) == ("standin", tmp_path / "rel")


def test_tampered_given_directory_is_refused(tmp_path: Path) -> None:
    binary = make_release(tmp_path / "rel", VERSION)
    binary.write_bytes(binary.read_bytes() + b"\n# tampered\n")
    with pytest.raises(DeployError, match="sha256"):
        k3s_source.choose(str(tmp_path / "rel"), load(), standin=None, allow_download=False)


def test_download_goes_through_the_product_verification_with_airgap_images(tmp_path: Path) -> None:
    make_release(tmp_path / "site" / VERSION, VERSION, images={"k3s-airgap-images-amd64.tar.zst": b"imgs"})
    with serve_dir(tmp_path / "site") as (url, requests):
        source = k3s_source.choose("", load(K3S_RELEASE_URL=url), standin=STANDIN, cache_dir=tmp_path / "cache")
    assert source.mode == "standin"  # what was served is the stand-in, and it is labelled so
    assert (source.directory / "k3s-airgap-images-amd64.tar.zst").read_bytes() == b"imgs"
    assert any(r.endswith("k3s-airgap-images-amd64.tar.zst") for r in requests)


def test_unreachable_release_server_falls_back_to_the_labelled_standin(tmp_path: Path) -> None:
    source = k3s_source.choose("", load(K3S_RELEASE_URL=f"http://127.0.0.1:{free_port()}"),
                               standin=STANDIN, cache_dir=tmp_path / "cache")
    assert source.mode == "standin" and "STAND-IN" in source.reason


def test_a_missing_release_is_an_error_not_a_silent_standin(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    with serve_dir(tmp_path / "site") as (url, _):
        with pytest.raises(DeployError, match="HTTP 404"):
            k3s_source.choose("", load(K3S_RELEASE_URL=url), standin=STANDIN, cache_dir=tmp_path / "cache")


def test_standin_release_is_the_fixture_release_byte_for_byte(tmp_path: Path) -> None:
    """The lab lays the stand-in out from the path it was given exactly as the test fixture does."""
    make_release(tmp_path / "fixture", VERSION)
    made = k3s_source.standin_release(STANDIN, load(), tmp_path / "lab")
    assert sorted(p.name for p in made.iterdir()) == sorted(p.name for p in (tmp_path / "fixture").iterdir())
    for path in (tmp_path / "fixture").iterdir():
        assert (made / path.name).read_bytes() == path.read_bytes(), path.name
    assert k3s_source.inspect(made, load()) == "standin"


def test_fallback_uses_the_standin_the_caller_named_and_says_so(tmp_path: Path) -> None:
    source = k3s_source.choose("", load(), standin=STANDIN, allow_download=False)
    assert source.mode == "standin" and "STAND-IN" in source.reason and str(STANDIN) in source.reason
    assert f'VERSION = "{VERSION}"' in (source.directory / "k3s").read_text()


def test_no_real_k3s_and_no_standin_is_bad_input_naming_both_fixes() -> None:
    with pytest.raises(ConfigError, match="--artifacts DIR.*--standin FILE"):
        k3s_source.choose("", load(), standin=None, allow_download=False)


def test_a_file_that_is_not_the_standin_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k3s").write_text('VERSION = "x"\n')
    with pytest.raises(ConfigError, match="not the k3s stand-in"):
        k3s_source.choose("", load(), standin=tmp_path / "k3s", allow_download=False)


def test_the_lab_never_imports_test_code(tmp_path: Path) -> None:
    """Product code (the lab included) imports nothing under tests/, even when it falls back."""
    code = ("import sys; from pathlib import Path; from gldeploy import settings; "
            "from gldeploy.lab import k3s_source; "
            "s = settings.load(None, environ={}, overrides=['CONTROL_PLANE_IPS=192.168.56.10']); "
            f"k3s_source.choose('', s, standin=Path({str(STANDIN)!r}), allow_download=False); "
            "print(sorted(m for m in sys.modules if m == 'tests' or m.startswith('tests.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, text=True, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
