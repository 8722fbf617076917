"""verify.sh on an upgrade bundle: it verifies the bundle's own files like any bundle and, with
--base OLD_DIR, the files it relies on in the previous bundle; it agrees with the Python verifier."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gldeploy.errors import DeployError
from gldeploy.sitebundle import build, verify
from gldeploy.sitebundle import manifest as mf
from tests.fixtures import sitebundle_cases as cases
from tests.unit.test_sitebundle_upgrade import NEW, OLD, load

VERIFY_SH = Path(__file__).resolve().parents[2] / "scripts" / "bundle" / "verify.sh"
CHART = f"{cases.PREFIX}/backend/gl-backend-0.2.0.tgz"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("upgrade-sh")
    old = build.build(load(tmp, OLD), tmp / "old", version=cases.VERSION, sample_image=True).bundle_dir
    new = build.build(load(tmp, NEW), tmp / "new", version=cases.VERSION, sample_image=True,
                      upgrade_from=old).bundle_dir
    return old, new


def bash(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(bundle / mf.VERIFIER), *args, str(bundle)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})


def python(bundle: Path, base: Path | None) -> int:
    try:
        verify.verify_bundle(bundle, base=base)
    except DeployError as exc:
        return exc.exit_code
    return 0


def test_verify_sh_checks_an_upgrade_bundle_and_its_base(pair: tuple[Path, Path]) -> None:
    old, new = pair
    own = bash(new)
    assert own.returncode == 0, own.stderr
    assert "upgrade bundle" in own.stderr and "not checked" in own.stderr
    with_base = bash(new, "--base", str(old))
    assert with_base.returncode == 0, with_base.stderr
    assert "relied-on file(s) verified in" in with_base.stderr


@pytest.mark.parametrize("fault", ["changed", "missing", "other-base"])
def test_verify_sh_refuses_a_base_that_lacks_what_the_upgrade_relies_on(pair: tuple[Path, Path], tmp_path: Path,
                                                                        fault: str) -> None:
    old, new = pair
    base = tmp_path / "base"
    shutil.copytree(old, base)
    if fault == "changed":
        (base / CHART).write_bytes((base / CHART).read_bytes()[:-1] + b"x")
    elif fault == "missing":
        (base / CHART).unlink()
    else:
        (base / mf.MANIFEST).write_text((base / mf.MANIFEST).read_text() + " ")
    proc = bash(new, "--base", str(base))
    assert proc.returncode == 1 == python(new, base), proc.stderr
    assert (CHART if fault != "other-base" else "not the one this upgrade bundle was built against") in proc.stderr


def test_verify_sh_refuses_base_on_a_full_bundle(pair: tuple[Path, Path]) -> None:
    old, _ = pair
    proc = bash(old, "--base", str(old))
    assert proc.returncode == 2 and "not an upgrade bundle" in proc.stderr


def test_shellcheck_clean() -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    proc = subprocess.run(["shellcheck", "-S", "warning", str(VERIFY_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
