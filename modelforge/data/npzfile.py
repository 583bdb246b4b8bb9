"""`data=npz`: the user's arrays from a NumPy .npz file, checked before a model is built."""

from __future__ import annotations

import zipfile
from typing import Any

from modelforge.core.config import NpzData
from modelforge.data.paths import user_path
from modelforge.errors import ConfigError, closest


def read_npz(data: NpzData) -> dict[str, Any]:
    """The arrays `data` names, read from `data.path` (no pickles: an npz is data, never code).

    Returns:
        `x` and `y`, and `x_val` and `y_val` when the config names validation arrays.

    Raises:
        ConfigError: a missing or unreadable file, a missing key, arrays of different lengths, or inputs that are
            not finite numbers.
    """
    import numpy as np

    path = user_path(data.path, "file")
    keys = {"x": data.x_key, "y": data.y_key, "x_val": data.x_val_key, "y_val": data.y_val_key}
    found: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = list(arrays.files)
            for role, key in keys.items():
                if key is not None and key in names:
                    found[role] = arrays[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(f"data.path: {path} is not a readable .npz file ({err}); write it with numpy.savez, "
                          "without object arrays") from None
    for role, key in keys.items():
        if key is not None and role not in found:
            near = closest(key, names)
            raise ConfigError(f"data.{role}_key={key!r}: {path} holds no array {key!r}"
                              + (f" (did you mean {near!r}?)" if near else "")
                              + f"; it holds {', '.join(names) or 'no arrays'}")
    for x_role, y_role in (("x", "y"), ("x_val", "y_val")):
        if x_role not in found:
            continue
        x, y = found[x_role], found[y_role]
        if x.ndim < 2:
            raise ConfigError(f"data.{x_role}_key: {path}'s {keys[x_role]!r} has shape {list(x.shape)}; inputs are "
                              "one row per sample (N x features...): save x.reshape(-1, 1) for one feature")
        if len(x) != len(y):
            raise ConfigError(f"{path}: {keys[x_role]!r} has {len(x)} samples but {keys[y_role]!r} has {len(y)}; "
                              "they must have one target per sample")
        if x.dtype.kind not in "biuf":
            raise ConfigError(f"data.{x_role}_key: {path}'s {keys[x_role]!r} holds {x.dtype} values; inputs must be "
                              "numbers")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
            raise ConfigError(f"data.{x_role}_key: {path}'s {keys[x_role]!r} has NaN or infinite values (sample "
                              f"{bad} first); fill or drop them first")
    if "x_val" in found and found["x_val"].shape[1:] != found["x"].shape[1:]:
        raise ConfigError(f"{path}: validation inputs {keys['x_val']!r} have samples of shape "
                          f"{list(found['x_val'].shape[1:])}, the training inputs {list(found['x'].shape[1:])}")
    return found
