"""The user's data (npz, CSV, image folders, their own function): read once per process, checked, described.

Their shapes are known only once they are read, so the plan asks `describe()` here instead of the config.
Reads are cached by the config and the file's size and modification time: the plan and the training read
the file once, and the jobs of a sweep that one process runs share it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from modelforge.core.config.datasets import DataInfo
from modelforge.core.config.schema import USER_DATA, CallableData, CsvData, Data, ImagesData, NpzData, task_of
from modelforge.data.labels import encode_classes, regression_targets
from modelforge.errors import ConfigError


@dataclass
class UserArrays:
    """The user's inputs (float32) and targets (class indices, or float columns), split or not."""

    x: Any
    y: Any
    x_val: Any | None
    y_val: Any | None
    classes: tuple[str, ...] | None


_cache: dict[str, Any] = {}


def _signature(data: Data) -> str:
    """What identifies a read: the config, and the file's (or folder's) size and modification time."""
    stamp: tuple[int, ...] = ()
    path = getattr(data, "path", None)
    if path:
        try:
            found = os.stat(path)
            stamp = (found.st_mtime_ns, found.st_size)
        except OSError:
            pass
    return f"{data!r}{stamp}{os.getcwd()}"


def _cached(data: Data, read: Any) -> Any:
    key = _signature(data)
    if key not in _cache:
        _cache.clear()  # one data set at a time: a sweep over data sets does not keep them all
        _cache[key] = read()
    return _cache[key]


def _arrays(data: NpzData | CsvData | CallableData) -> UserArrays:
    import numpy as np

    if isinstance(data, CsvData):
        from modelforge.data.tables import read_table

        table = read_table(data)
        return UserArrays(table.x, table.y, None, None, table.classes)
    if isinstance(data, NpzData):
        from modelforge.data.npzfile import read_npz

        found, where = read_npz(data), f"data.y_key: {data.path}'s {data.y_key!r}"
    else:
        from modelforge.data.user import call_loader

        found, where = call_loader(data), f"data._target_={data._target_!r}'s targets"
    x, y = found["x"], found["y"]
    if len(x) != len(y):
        raise ConfigError(f"{where}: {len(x)} inputs but {len(y)} targets; give one target per sample")
    x_val: Any = found.get("x_val")
    y_val: Any = found.get("y_val")
    if x_val is not None and (len(x_val) != len(y_val) or not len(x_val)):
        raise ConfigError(f"{where}: the validation set has {len(x_val)} inputs and {len(y_val)} targets; give a "
                          "non-empty set with one target per sample")
    classes = None
    ys = y if y_val is None else np.concatenate([np.asarray(y), np.asarray(y_val)])
    if task_of(data) == "classification":
        ys, classes = encode_classes(ys, where)
    else:
        ys = regression_targets(ys, where)
    x = np.asarray(x, dtype=np.float32)
    if x_val is None:
        return UserArrays(x, ys, None, None, classes)
    return UserArrays(x, ys[: len(y)], np.asarray(x_val, dtype=np.float32), ys[len(y):], classes)


def user_arrays(data: NpzData | CsvData | CallableData) -> UserArrays:
    """The data `data` describes, read (once) and checked."""
    return _cached(data, lambda: _arrays(data))  # type: ignore[no-any-return]


def image_folder(data: ImagesData) -> Any:
    """The image files `data.path` holds, listed (once) and checked (`modelforge.data.images.ImageFolder`)."""
    from modelforge.data.images import list_images

    return _cached(data, lambda: list_images(data))


def describe(data: Data) -> DataInfo | None:
    """What the user's data looks like (read to find out); None for modelforge's own data sets, which the config
    describes.

    Raises:
        ConfigError: the data cannot be read or used, with the file and the fix.
    """
    if not isinstance(data, USER_DATA):
        return None
    if isinstance(data, ImagesData):
        folder = image_folder(data)
        return DataInfo(data.name, folder.shape, "classification", len(folder.classes), samples=len(folder.paths))
    found = user_arrays(data)
    outputs = len(found.classes) if found.classes is not None else int(found.y.shape[1])
    return DataInfo(data.name, tuple(int(s) for s in found.x.shape[1:]), task_of(data), outputs,
                    samples=len(found.x) if found.x_val is None else None)
