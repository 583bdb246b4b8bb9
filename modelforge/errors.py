"""The one error type users see for bad input."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A config value modelforge cannot use.

    The message is one paragraph that names the bad value and what would be valid; the CLI prints it
    without a traceback and exits non-zero.
    """


def invalid(what: str, value: object, valid: Iterable[object], hint: str = "") -> ConfigError:
    """Builds a `ConfigError` for a value outside a known set.

    Example:
        >>> str(invalid("activation", "relu7", ["relu", "tanh"]))
        "unknown activation 'relu7'; valid: relu, tanh"
    """
    names = sorted((str(v) for v in valid), key=str)
    message = f"unknown {what} {value!r}"
    close = difflib.get_close_matches(str(value), names, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    message += f"; valid: {', '.join(names)}"
    if hint:
        message += f". {hint}"
    return ConfigError(message)


def positive_int(value: object, key: str, minimum: int = 1) -> int:
    """Returns `value` if it is an integer >= `minimum`, else raises a `ConfigError` naming `key`.

    Example:
        >>> positive_int(3, "model.depth")
        3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer (1 or more)" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key}={value!r} must be {wanted}")
    return value


class RunFailed(RuntimeError):
    """Training ran but could not finish usefully (for example the loss became NaN)."""
