"""The Python verifier (invoke bundle.verify) on the shared fault table; verify.sh runs the same table."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest

from gldeploy.errors import DeployError
from gldeploy.sitebundle import split, verify
from tests.fixtures import sitebundle_cases as cases


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cases.build_signed(tmp_path_factory.mktemp("sitebundle"))


@contextlib.contextmanager
def destination(tmp: Path, case: cases.Case) -> Iterator[Path]:
    if not case.small_disk:
        (tmp / "dest").mkdir()
        yield tmp / "dest"
        return
    try:
        mounted = cases.small_tmpfs(tmp / "small")
        yield next(mounted)
    except OSError as exc:
        pytest.skip(f"cannot mount a small tmpfs here: {exc}")
    finally:
        with contextlib.suppress(StopIteration, UnboundLocalError):
            next(mounted)


def run_python(case: cases.Case, out: Path, dest: Path) -> tuple[int, str]:
    opts = cases.options(case, out)
    try:
        root = split.unpack(split.parts_file(out, cases.NAME), dest) if case.unpack else cases.bundle(out)
        verify.verify_bundle(root, arch=str(opts["arch"]), require_signature=bool(opts["require_signature"]),
                             allowed_signers=Path(str(opts["allowed_signers"])) if opts["allowed_signers"] else None)
    except DeployError as exc:
        return exc.exit_code, str(exc)
    return 0, "OK"


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_python_verifier_refuses_each_fault(built: Path, tmp_path: Path, case: cases.Case) -> None:
    out = cases.prepared(built, tmp_path, case)
    with destination(tmp_path, case) as dest:
        code, message = run_python(case, out, dest)
        assert code == case.code, message
        assert case.names in message
        if code:
            assert "; " in message  # a sentence naming the fix follows the finding
            if case.unpack:
                assert not any(dest.iterdir()), "a refused unpack wrote into the destination"


def test_statvfs_seam_refuses_before_writing(built: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DeployError) as err:
        split.unpack(split.parts_file(built, cases.NAME), dest, free=lambda p: 1000)
    assert err.value.exit_code == 2 and "larger disk" in str(err.value)
    assert not any(dest.iterdir())
