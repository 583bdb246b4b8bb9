"""Targets as a model trains on them: class labels mapped to 0..K-1, regression values as float columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelforge.errors import ConfigError

# A "classification" target with more distinct values than this share of its samples (and more than
# MANY_CLASSES of them) is most likely a number to regress on.
MANY_CLASSES, CLASS_SHARE = 50, 0.5


def _order(values: Sequence[Any]) -> list[Any]:
    """Sorted values; strings that all read as numbers sort as numbers ("2" before "10")."""
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def encode_classes(values: Any, where: str) -> tuple[Any, tuple[str, ...]]:
    """Class labels (any values) as int32 indices 0..K-1 in sorted order, with the class names.

    Raises:
        ConfigError: fewer than two classes, or so many that the target looks like a number.

    Example:
        >>> y, names = encode_classes(["dog", "cat", "dog"], "t.csv, column 'label'")
        >>> y.tolist(), names
        ([1, 0, 1], ('cat', 'dog'))
        >>> encode_classes(["10", "9", "10"], "t")[1]
        ('9', '10')
    """
    import numpy as np

    flat = np.asarray(values)
    if flat.ndim == 2 and flat.shape[1] == 1:
        flat = flat[:, 0]
    if flat.ndim != 1:
        raise ConfigError(f"{where}: classification labels must be one per sample, not shape {list(flat.shape)}; "
                          "give integer or string labels (not one-hot rows), or set data.task=regression")
    names = _order(list({v.item() if hasattr(v, "item") else v for v in flat}))
    if len(names) < 2:
        shown = names[0] if names else None
        raise ConfigError(f"{where} holds one class only ({shown!r}); classification needs at least two. Check "
                          "that the target is the right column or array, or set data.task=regression")
    if len(names) > MANY_CLASSES and len(names) > CLASS_SHARE * len(flat):
        raise ConfigError(f"{where} holds {len(names)} distinct values in {len(flat)} samples: that looks like a "
                          "number to predict, not classes; set data.task=regression")
    index = {name: i for i, name in enumerate(names)}
    encoded = np.array([index[v.item() if hasattr(v, "item") else v] for v in flat], dtype=np.int32)
    return encoded, tuple(str(n) for n in names)


def regression_targets(values: Any, where: str) -> Any:
    """Regression targets as a float32 (samples, targets) array, finite.

    Example:
        >>> regression_targets([1, 2.5], "t").tolist()
        [[1.0], [2.5]]
    """
    import numpy as np

    try:
        y = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: regression targets must be numbers; set data.task=classification for labels"
                          ) from None
    y = y.reshape(len(y), -1)
    bad = np.flatnonzero(~np.isfinite(y).all(axis=1))
    if len(bad):
        raise ConfigError(f"{where}: sample {bad[0]} has a target that is NaN or infinite ({len(bad)} samples "
                          "do); drop or fill them first")
    return y
