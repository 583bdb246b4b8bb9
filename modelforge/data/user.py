"""`data=callable`: the user's own function returns the data; its result is checked like a file's."""

from __future__ import annotations

from typing import Any

from modelforge.core.config import CallableData
from modelforge.core.targets import import_target
from modelforge.errors import ConfigError

SHAPES = ("(x, y) arrays, ((x_train, y_train), (x_val, y_val)), or a tf.data.Dataset of (x, y) samples")


def _is_dataset(value: Any) -> bool:
    return hasattr(value, "element_spec") and hasattr(value, "as_numpy_iterator")


def _from_dataset(dataset: Any, where: str) -> tuple[Any, Any]:
    """A tf.data.Dataset's (x, y) samples, read whole into arrays (batched datasets are unbatched first)."""
    import numpy as np

    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ConfigError(f"{where} returned a tf.data.Dataset of {spec}; it must yield (x, y) pairs")
    if spec[0].shape.rank and spec[0].shape[0] is None:
        dataset = dataset.unbatch()
    samples = list(dataset.as_numpy_iterator())
    if not samples:
        raise ConfigError(f"{where} returned an empty tf.data.Dataset")
    return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])


def call_loader(data: CallableData) -> dict[str, Any]:
    """Imports and calls `data._target_(**data.kwargs)`; returns `x`, `y` (and `x_val`, `y_val` if it gave them).

    Raises:
        ConfigError: the target is refused or not a function, it raised, or it returned something else.
    """
    import numpy as np

    where = f"data._target_={data._target_!r}"
    function = import_target(data._target_, "data._target_", "data-loading function")
    if not callable(function) or isinstance(function, type):
        raise ConfigError(f"{where} is not a function; name a function that returns {SHAPES}")
    try:
        result = function(**dict(data.kwargs))
    except Exception as err:
        raise ConfigError(f"{where} raised {type(err).__name__}: {err} (called with data.kwargs="
                          f"{dict(data.kwargs)})") from None
    if _is_dataset(result):
        x, y = _from_dataset(result, where)
        return {"x": x, "y": y}
    if isinstance(result, (tuple, list)) and len(result) == 2:
        first, second = result
        if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in (first, second)):
            (x, y), (x_val, y_val) = first, second
            return {"x": np.asarray(x), "y": np.asarray(y), "x_val": np.asarray(x_val), "y_val": np.asarray(y_val)}
        return {"x": np.asarray(first), "y": np.asarray(second)}
    raise ConfigError(f"{where} returned a {type(result).__name__}; it must return {SHAPES}")
