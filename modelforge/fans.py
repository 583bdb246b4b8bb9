"""Fan-in and fan-out of a weight: the numbers every variance-scaling initializer divides by.

Pure. For now these are the fans Keras itself computes from the kernel shape (`compute_fans`), because
those are what the built layers use; the plan reports exactly what the model gets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def keras_fans(shape: Sequence[int]) -> tuple[int, int]:
    """The fans Keras' `compute_fans` derives from a weight shape alone.

    A 2-D shape is (inputs, outputs); a longer one is read as a convolution kernel
    (*receptive_field, in_channels, out_channels).

    Example:
        >>> keras_fans((3, 3, 16, 32))
        (144, 288)
    """
    shape = tuple(shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def fan_for_mode(fan_in: int, fan_out: int, mode: str) -> float:
    """The divisor a `VarianceScaling` initializer uses in `mode`, floored at 1 as Keras does."""
    if mode == "fan_in":
        n = fan_in
    elif mode == "fan_out":
        n = fan_out
    else:
        n = (fan_in + fan_out) / 2.0
    return max(1.0, n)
