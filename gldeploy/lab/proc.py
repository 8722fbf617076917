"""Small process helpers for the lab: argv-only commands, bounded waits, loud progress."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gldeploy.errors import DeployError


def say(message: str) -> None:
    """Progress line for the operator (stderr, so stdout stays machine-readable)."""
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, timeout: float = 600, check: bool = True, capture: bool = True,
        env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
        input_text: str | None = None, what: str = "") -> subprocess.CompletedProcess[str]:
    """Run an argv list (never a shell string) with a timeout; raise DeployError on failure."""
    label = what or Path(argv[0]).name
    try:
        proc = subprocess.run(list(argv), text=True, timeout=timeout, env=dict(env) if env else None,
                              cwd=cwd, input=input_text,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise DeployError(f"{label}: command {argv[0]!r} not found; run `invoke lab.host-setup` "
                          f"to install the lab's packages") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{label}: still running after {timeout:.0f} s, gave up") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:] if capture else []
        raise DeployError(f"{label} failed (exit {proc.returncode})"
                          + (f": {' | '.join(detail)}" if detail else ""))
    return proc


def wait_for(probe: Callable[[], bool], *, timeout: float, interval: float = 1.0, what: str) -> float:
    """Poll `probe` until true; raise DeployError naming `what` after `timeout` seconds. Returns secs."""
    start = time.monotonic()
    while True:
        if probe():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise DeployError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def have(command: str) -> bool:
    """True when `command` is on PATH."""
    return shutil.which(command) is not None


def invoke_argv(task: str, env_file: Path, sets: list[str], *extra: str) -> list[str]:
    """`invoke <task> --env ... --set K=V ...` as the user would type it (argv list)."""
    argv = [sys.executable, "-m", "invoke", task, "--env", str(env_file)]
    for item in sets:
        argv += ["--set", item]
    return argv + list(extra)
