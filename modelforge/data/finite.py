"""Numbers a model can train on: every feature and target finite and within float32's range.

A value beyond float32's range (1e39, or a CSV cell of 1e400) becomes infinite once it is cast, and one infinite
input turns a Normalization layer's mean, and then every prediction, into NaN or a constant. So the user's data
is refused before training, naming where the first bad value is and how many there are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelforge.errors import ConfigError

FLOAT32_MAX = 3.4028234663852886e38


def check_finite(values: Any, where: str, locate: Callable[[tuple[int, ...]], str] | None = None) -> None:
    """Refuses NaN, infinite or out-of-float32-range numbers in `values`.

    Args:
        values: an array (or nested lists) of numbers.
        where: what the values are, for the message (`data.path: my.csv`).
        locate: the first bad value's index -> where it is in the user's terms (`line 4, column 'b'`); by
            default its array index.

    Raises:
        ConfigError: naming the first bad value's place, its value, and the count.

    Example:
        >>> check_finite([[1.0, 2.0]], "x")
        >>> check_finite([[1.0, float("inf")], [1e39, 0.0]], "data.path: t.npz's 'x'")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data.path: t.npz's 'x' has 2 values that are NaN or infinite, or...
    """
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind not in "fc":
        return  # integers and booleans are always finite (and within range for any real data set)
    with np.errstate(invalid="ignore", over="ignore"):
        as_float = array.astype(np.float64)
        bad = ~np.isfinite(as_float) | (np.abs(as_float) > FLOAT32_MAX)
    count = int(bad.sum())
    if not count:
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    place = locate(first) if locate is not None else f"index {list(first)}"
    raise ConfigError(f"{where} has {count} value{'s' if count > 1 else ''} that {'are' if count > 1 else 'is'} "
                      f"NaN or infinite, or beyond float32's range (±3.4e38), first at {place} "
                      f"({float(as_float[first])}); fill, clip or drop them before training")
