"""Data sets: what shape they have (pure, cheap) and their arrays (loaded on demand).

`describe()` answers the shape questions the plan and the shape check need without loading anything;
`load()` returns the split arrays. Splits are drawn with the run seed, so every arm of a sweep with the
same seed trains and validates on the same samples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelforge.errors import ConfigError, invalid, positive_int

LAYOUTS = ("auto", "flat", "image", "sequence", "tokens")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class _GreyImages:
    """A set of square grey images of digits; as tokens, each pixel is its integer grey level."""

    side: int
    levels: int  # grey levels, 0..levels-1: the vocabulary size as tokens

    def shape(self, layout: str) -> tuple[int, ...]:
        n = self.side
        return {"flat": (n * n,), "image": (n, n, 1), "sequence": (n, n), "tokens": (n * n,)}[layout]


# sklearn's digits: 1797 8x8 images, values 0..16, bundled. MNIST: 60,000 28x28 training images, 0..255,
# downloaded once (modelforge.downloads).
_IMAGES = {"digits": _GreyImages(8, 17), "mnist": _GreyImages(28, 256)}


@dataclass(frozen=True)
class DataInfo:
    """What the builder needs to know of a data set before loading it.

    Attributes:
        name: the data set's config name.
        input_shape: one sample's shape.
        task: `classification` or `regression`.
        num_outputs: classes for classification, targets for regression.
        vocab_size: for integer token inputs, the number of distinct tokens; None for real-valued inputs.
    """

    name: str
    input_shape: tuple[int, ...]
    task: str
    num_outputs: int
    vocab_size: int | None = None


@dataclass
class Dataset:
    """Train and validation arrays with their `DataInfo`."""

    info: DataInfo
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any


def check(data: Mapping[str, Any]) -> None:
    """Checks a `data` config; raises `ConfigError` naming the bad key."""
    name = data.get("name")
    if name not in DATASETS:
        raise invalid("data set", name, DATASETS)
    split = data.get("validation_split")
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 < split < 1:
        raise ConfigError(
            f"data.validation_split={split!r} must be a number strictly between 0 and 1 (for example 0.2)"
        )
    if name in _IMAGES:
        layout = data.get("layout", "auto")
        if layout not in LAYOUTS:
            raise invalid("data.layout", layout, LAYOUTS)
    if name == "mnist":
        if not isinstance(data.get("url"), str) or not data["url"]:
            raise ConfigError(f"data.url={data.get('url')!r} must be the address of mnist.npz (https:// or file://)")
        sha = data.get("sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
            raise ConfigError(f"data.sha256={sha!r} must be 64 hex digits, or null to skip the check")
        if data.get("max_samples") is not None:
            positive_int(data["max_samples"], "data.max_samples", 2)
    elif name == "synthetic":
        if data.get("task") not in TASKS:
            raise invalid("data.task", data.get("task"), TASKS)
        positive_int(data.get("num_samples"), "data.num_samples", 2)
        shape = data.get("shape")
        if not isinstance(shape, (list, tuple)) or not shape or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
        ):
            raise ConfigError(f"data.shape={shape!r} must be a non-empty list of positive integers, e.g. [16]")
        if data["task"] == "classification":
            positive_int(data.get("num_classes"), "data.num_classes", 2)
        else:
            positive_int(data.get("num_targets"), "data.num_targets")


def describe(data: Mapping[str, Any], wanted_layout: str) -> DataInfo:
    """The shape and task of the configured data, shaped for a first layer that wants `wanted_layout`.

    Example:
        >>> describe({"name": "digits", "validation_split": 0.2, "layout": "auto"}, "image").input_shape
        (8, 8, 1)
    """
    check(data)
    if data["name"] in _IMAGES:
        images = _IMAGES[data["name"]]
        layout = data.get("layout", "auto")
        layout = wanted_layout if layout == "auto" else layout
        vocab = images.levels if layout == "tokens" else None
        return DataInfo(data["name"], images.shape(layout), "classification", 10, vocab)
    task = data["task"]
    outputs = data["num_classes"] if task == "classification" else data["num_targets"]
    return DataInfo("synthetic", tuple(data["shape"]), task, outputs)


def split_indices(n: int, validation_split: float, seed: int) -> tuple[Any, Any]:
    """Train and validation indices of n samples, drawn with `seed` (the same for every sweep arm)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * validation_split)))
    return order[n_val:], order[:n_val]


def _load_images(data: Mapping[str, Any], info: DataInfo) -> tuple[Any, Any]:
    """Grey images as integer tokens, or scaled to [0, 1] and shaped for the first layer."""
    import numpy as np

    if info.name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, labels = bunch.data, bunch.target.astype(np.int32)
    else:
        from modelforge.downloads import fetch, load_mnist_npz

        path = fetch(info.name, data["url"], data.get("sha256"), data.get("cache_dir"))
        pixels, labels = load_mnist_npz(path, data.get("max_samples"))
    pixels = pixels.reshape(len(pixels), -1)
    if info.vocab_size:
        return pixels.astype(np.int32), labels
    x = (pixels / (_IMAGES[info.name].levels - 1)).astype(np.float32).reshape((-1, *info.input_shape))
    return x, labels


def _make_synthetic(data: Mapping[str, Any], info: DataInfo, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng([seed, 7919])
    n, features = data["num_samples"], math.prod(info.input_shape)
    x = rng.standard_normal((n, *info.input_shape)).astype(np.float32)
    teacher = rng.standard_normal((features, info.num_outputs)) / math.sqrt(features)
    signal = x.reshape(n, features) @ teacher + data.get("noise", 0.0) * rng.standard_normal((n, info.num_outputs))
    if info.task == "classification":
        return x, signal.argmax(axis=1).astype(np.int32)
    return x, signal.astype(np.float32)


DATASETS = ("digits", "mnist", "synthetic")


def load(data: Mapping[str, Any], info: DataInfo, seed: int) -> Dataset:
    """Loads (or generates) the data described by `info` and splits it with `seed`."""
    if info.name in _IMAGES:
        x, y = _load_images(data, info)
    else:
        x, y = _make_synthetic(data, info, seed)
    train, val = split_indices(len(x), float(data["validation_split"]), seed)
    return Dataset(info, x[train], y[train], x[val], y[val])
