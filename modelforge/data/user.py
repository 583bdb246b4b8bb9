"""`data=callable`: the user's own function returns the data; its result is checked like a file's."""

from __future__ import annotations

from typing import Any

from modelforge.core.config.schema import CallableData
from modelforge.core.config.targets import import_target
from modelforge.data.finite import check_finite
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
    where = f"data._target_={data._target_!r}"
    function = import_target(data._target_, "data._target_", "data-loading function")
    if not callable(function) or isinstance(function, type):
        raise ConfigError(f"{where} is not a function; name a function that returns {SHAPES}")
    try:
        result = function(**dict(data.kwargs))
    except (Exception, SystemExit) as err:  # SystemExit too: a loader that exits must not end the run as done
        raise ConfigError(f"{where} raised {type(err).__name__}: {err} (called with data.kwargs="
                          f"{dict(data.kwargs)})") from None
    if _is_dataset(result):
        x, y = _from_dataset(result, where)
        return checked({"x": x, "y": y}, where)
    if isinstance(result, (tuple, list)) and len(result) == 2:
        first, second = result
        if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in (first, second)):
            (x, y), (x_val, y_val) = first, second
            return checked({"x": x, "y": y, "x_val": x_val, "y_val": y_val}, where)
        return checked({"x": first, "y": second}, where)
    raise ConfigError(f"{where} returned a {type(result).__name__}; it must return {SHAPES}")


def _array(value: Any, name: str, where: str) -> Any:
    import numpy as np

    if value is None:
        raise ConfigError(f"{where} returned None for {name}; it must return {SHAPES}")
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ConfigError(f"{where} returned a {name} numpy cannot make one array of ({err}); give every sample "
                          "the same shape") from None
    if array.dtype.kind == "O":
        raise ConfigError(f"{where} returned a {name} of Python objects (ragged lists, or mixed types); give "
                          "numbers, every sample of one shape")
    return array


def checked(found: dict[str, Any], where: str) -> dict[str, Any]:
    """The loader's arrays, checked: numeric inputs of at least 2 dimensions (samples x features...), one target
    per input, validation inputs of the training inputs' feature shape, nothing None, every number finite.

    Raises:
        ConfigError: naming what was returned and what it must be.

    Example:
        >>> checked({"x": [1.0, 2.0], "y": [0, 1]}, "data._target_='mine.load'")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data._target_='mine.load' returned x of shape [2]; inputs are one row...
    """
    arrays = {name: _array(value, name, where) for name, value in found.items()}
    for x_name, y_name in (("x", "y"), ("x_val", "y_val")):
        if x_name not in arrays:
            continue
        x, y = arrays[x_name], arrays[y_name]
        if x.dtype.kind not in "biuf":
            raise ConfigError(f"{where} returned {x_name} of {x.dtype} values; inputs must be numbers")
        if x.ndim < 2:
            raise ConfigError(f"{where} returned {x_name} of shape {list(x.shape)}; inputs are one row per sample "
                              "(N x features...): return x.reshape(-1, 1) for one feature")
        if y.ndim == 0 or len(x) != len(y):
            raise ConfigError(f"{where} returned {len(x)} samples in {x_name} but {y.size if y.ndim == 0 else len(y)}"
                              f" in {y_name}; return one target per sample")
        for name in (x_name, y_name):
            check_finite(arrays[name], f"{where}'s {name}")
    if "x_val" in arrays and arrays["x_val"].shape[1:] != arrays["x"].shape[1:]:
        raise ConfigError(f"{where} returned validation inputs of shape {list(arrays['x_val'].shape[1:])} per sample "
                          f"but training inputs of {list(arrays['x'].shape[1:])}; they must match")
    return arrays
