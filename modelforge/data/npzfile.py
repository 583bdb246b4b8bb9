"""`data=npz`: the user's arrays from a NumPy .npz file, checked before a model is built."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

from modelforge.core.config.schema import NpzData
from modelforge.core.init.memory import available_memory
from modelforge.data.finite import check_finite
from modelforge.data.paths import looks_like, user_path
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
    _check_sizes(path, [k for k in keys.values() if k is not None])
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = list(arrays.files)
            for role, key in keys.items():
                if key is not None and key in names:
                    found[role] = arrays[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise _not_npz(path, err) from None
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
        for role in (x_role, y_role):
            check_finite(found[role], f"data.{role}_key: {path}'s {keys[role]!r}",
                         lambda at: f"sample {at[0]}" + (f", index {list(at[1:])}" if len(at) > 1 else ""))
    if "x_val" in found and found["x_val"].shape[1:] != found["x"].shape[1:]:
        raise ConfigError(f"{path}: validation inputs {keys['x_val']!r} have samples of shape "
                          f"{list(found['x_val'].shape[1:])}, the training inputs {list(found['x'].shape[1:])}")
    return found


def _not_npz(path: Path, err: Exception) -> ConfigError:
    """The message for a file numpy cannot read as an .npz: what the file looks like, and what reads that."""
    return ConfigError(f"data.path: {path} is not an .npz archive numpy can read ({err}); it looks like "
                       f"{looks_like(path)}")


def _check_sizes(path: Path, keys: list[str]) -> None:
    """Reads each wanted member's .npy header (not its data) and refuses one whose declared shape needs more
    bytes than the member holds, or than the memory free now: such a file would fail inside numpy's reader
    with a MemoryError, or after filling the memory."""
    import numpy as np

    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise _not_npz(path, err) from None
    with archive:
        for key in keys:
            try:
                info = archive.getinfo(f"{key}.npy")
            except KeyError:
                continue  # named in the message about missing keys
            try:
                with archive.open(info) as member:
                    major, _ = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                    header = member.tell()
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
                raise ConfigError(f"data.path: {path}'s array {key!r} is not readable ({err}); write the file "
                                  "again with numpy.savez") from None
            declared = math.prod(shape) * dtype.itemsize
            if declared > info.file_size - header:
                raise ConfigError(f"data.path: {path}'s array {key!r} declares shape {list(shape)} ({declared:,} "
                                  f"bytes) but holds {info.file_size - header:,} bytes: the file is damaged or "
                                  "truncated; write it again with numpy.savez")
            if declared > (available_memory() or 1 << 62):
                raise ConfigError(f"data.path: {path}'s array {key!r} needs {declared / 2**30:.1f} GiB "
                                  f"(shape {list(shape)}), more than the memory free now; use a smaller sample")
