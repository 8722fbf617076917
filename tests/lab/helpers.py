"""Helpers for the lab verifiers."""
from __future__ import annotations

import time
from typing import Callable


def eventually(probe: Callable[[], bool], timeout: float, what: str, interval: float = 2.0) -> None:
    """Bounded wait for a condition on the host; fails loudly naming what never became true."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not true after {timeout:.0f} s")
        time.sleep(interval)
