"""One error type for the whole toolkit, mapped to exit codes in one place."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

EXIT_FAILED = 1  # a phase or check failed on a host
EXIT_BAD_INPUT = 2  # bad configuration or arguments: nothing was touched
EXIT_WARNINGS = 3  # passed, with warnings worth reading
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class DeployError(Exception):
    """An expected failure with a message for the operator."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(DeployError):
    """Bad input (env file, environment, flag): exit 2, nothing touched."""

    exit_code = EXIT_BAD_INPUT


def guarded(func: F) -> F:
    """Run an entry point, turning DeployError/Ctrl-C into invoke's Exit with the right code."""
    from invoke.exceptions import Exit

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DeployError as exc:
            label = "warning" if exc.exit_code == EXIT_WARNINGS else "error"
            raise Exit(f"{label}: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Exit(code=EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]
