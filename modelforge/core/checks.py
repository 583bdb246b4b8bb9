"""The one check for numbers in a config: a real int or float (never a bool), within bounds."""

from __future__ import annotations

import math

from modelforge.errors import ConfigError


def number(value: object, key: str, *, integer: bool = False, minimum: float | None = None,
           maximum: float | None = None, open_min: bool = False, open_max: bool = False) -> float:
    """Returns `value` if it is a number within the bounds, else raises a `ConfigError` naming `key`.

    Args:
        value: what the config holds.
        key: its dotted key, for the message.
        integer: whether only whole numbers are allowed.
        minimum, maximum: the bounds, None for none.
        open_min, open_max: whether the bound itself is excluded.

    Example:
        >>> number(0.2, "data.validation_split", minimum=0, maximum=1, open_min=True, open_max=True)
        0.2
        >>> number(float("inf"), "optimizer.learning_rate", minimum=0, open_min=True)
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: optimizer.learning_rate=inf must be a finite number > 0
        >>> number(True, "trainer.epochs", integer=True, minimum=1)
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: trainer.epochs=True must be a positive integer (1 or more)
    """
    kinds = (int,) if integer else (int, float)
    low_ok = minimum is None or (value > minimum if open_min else value >= minimum)  # type: ignore[operator]
    # inf and nan are no setting's value: inf passes an open upper bound, and nan fails every comparison.
    ok = not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value)
    if ok:
        high_ok = maximum is None or (value < maximum if open_max else value <= maximum)  # type: ignore[operator]
        ok = low_ok and high_ok
    if not ok:
        raise ConfigError(f"{key}={value!r} must be {_wanted(integer, minimum, maximum, open_min, open_max)}")
    return value  # type: ignore[return-value]


def positive_int(value: object, key: str, minimum: int = 1) -> int:
    """An integer >= `minimum` (1 by default).

    Example:
        >>> positive_int(3, "model.depth")
        3
    """
    return int(number(value, key, integer=True, minimum=minimum))


def _wanted(integer: bool, minimum: float | None, maximum: float | None, open_min: bool, open_max: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if integer and maximum is None and not open_min and minimum in (0, 1):
        return "a positive integer (1 or more)" if minimum == 1 else "a non-negative integer (0 or more)"
    if minimum is not None and maximum is not None:
        low, high = (f"{b:,}" if integer else f"{b:g}" for b in (minimum, maximum))
        return (f"{kind} {'strictly ' if open_min and open_max else ''}between {low} and {high}"
                + ("" if open_min == open_max else f" ({'excluding' if open_min else 'including'} {low})"))
    if minimum is not None:
        return f"{kind} {'>' if open_min else '>='} {minimum:g}"
    if maximum is not None:
        return f"{kind} {'<' if open_max else '<='} {maximum:g}"
    return kind
