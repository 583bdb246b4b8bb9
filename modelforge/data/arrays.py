"""The arrays of a data set, loaded (or generated) and split with the run seed.

Splits are drawn with the run seed, so every arm of a sweep with the same seed trains and validates on the
same samples. What a data set looks like before loading (its shape) is in `modelforge.core.config.datasets`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelforge.core.config.datasets import IMAGES, DataInfo, check_split, split_counts
from modelforge.core.config.schema import USER_DATA, Data, ImagesData, MnistData, SyntheticData


@dataclass
class Dataset:
    """Train and validation samples with their `DataInfo`.

    The samples are arrays, or (for image folders) arrays of file paths with `decode` turning a path into its
    pixels inside the `tf.data` pipeline.
    """

    info: DataInfo
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    decode: Callable[[Any], Any] | None = None

    def validation(self, batch_size: int) -> Any:
        """What Keras' `fit` takes as `validation_data`: the arrays, or a `tf.data` pipeline of decoded batches."""
        if self.decode is None:
            return self.x_val, self.y_val
        import tensorflow as tf

        from modelforge.data.batches import plain

        decode = self.decode
        pairs = tf.data.Dataset.from_tensor_slices((self.x_val, self.y_val))
        return pairs.map(plain(lambda path, y: (decode(path), y)), num_parallel_calls=tf.data.AUTOTUNE).batch(
            batch_size).prefetch(tf.data.AUTOTUNE)

    def probe(self, n: int) -> tuple[Any, Any]:
        """The first `n` training samples as arrays (decoded, for image folders)."""
        return self._decoded(self.x_train[:n]), self.y_train[:n]

    def sample(self, n: int, seed: int) -> Any:
        """`n` training inputs drawn with `seed` (all of them when there are fewer), in their stored order: what
        LSUV measures on, the same in a separate run and in a fused arm of the same seed."""
        import numpy as np

        count = len(self.x_train)
        picked = np.sort(np.random.default_rng(seed).choice(count, size=min(n, count), replace=False))
        return self._decoded(self.x_train[picked])

    def _decoded(self, x: Any) -> Any:
        if self.decode is None:
            return x
        import numpy as np

        return np.stack([self.decode(path).numpy() for path in x])


def split_indices(n: int, validation_split: float, seed: int) -> tuple[Any, Any]:
    """Train and validation indices of n samples, drawn with `seed` (the same for every sweep arm)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    n_val = split_counts(n, validation_split)[1]
    return order[n_val:], order[:n_val]


@functools.cache
def _digits() -> tuple[Any, Any]:
    """scikit-learn's digits, read once a process (~20 ms each time, measured: a fused sweep reads it per job);
    read-only, as every caller makes its own arrays from them."""
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels, labels = bunch.data, bunch.target.astype(np.int32)
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels


def _load_images(data: Data, info: DataInfo) -> tuple[Any, Any]:
    """Grey images as integer tokens, or scaled to [0, 1] and shaped for the first layer."""
    import numpy as np

    if info.name == "digits":
        pixels, labels = _digits()
    else:
        from modelforge.data.downloads import fetch, load_mnist_npz

        assert isinstance(data, MnistData)
        path = fetch(info.name, data.url, data.sha256, data.cache_dir)
        pixels, labels = load_mnist_npz(path, data.max_samples)
    pixels = pixels.reshape(len(pixels), -1)
    if info.vocab_size:
        return pixels.astype(np.int32), labels
    x = (pixels / (IMAGES[info.name].levels - 1)).astype(np.float32).reshape((-1, *info.input_shape))
    return x, labels


def _make_synthetic(data: SyntheticData, info: DataInfo, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng([seed, 7919])
    n, features = data.num_samples, math.prod(info.input_shape)
    x = rng.standard_normal((n, *info.input_shape)).astype(np.float32)
    teacher = rng.standard_normal((features, info.num_outputs)) / math.sqrt(features)
    signal = x.reshape(n, features) @ teacher + data.noise * rng.standard_normal((n, info.num_outputs))
    if info.task == "classification":
        return x, signal.argmax(axis=1).astype(np.int32)
    return x, signal.astype(np.float32)


def load(data: Data, info: DataInfo, seed: int, batch_size: int = 1) -> Dataset:
    """Loads (or generates) the data described by `info` and splits it with `seed`.

    The split is checked again on the samples really loaded (a file may hold fewer than the config said).
    """
    decode = None
    if isinstance(data, SyntheticData):
        x, y = _make_synthetic(data, info, seed)
    elif isinstance(data, ImagesData):
        from modelforge.data.images import decoder
        from modelforge.data.sources import image_folder

        folder = image_folder(data)
        x, y, decode = folder.paths, folder.labels, decoder(data, folder.shape)
    elif isinstance(data, USER_DATA):
        from modelforge.data.sources import user_arrays

        found = user_arrays(data)
        if found.x_val is not None:
            return Dataset(info, found.x, found.y, found.x_val, found.y_val)
        x, y = found.x, found.y
    else:
        x, y = _load_images(data, info)
    check_split(len(x), data.validation_split, batch_size)
    train, val = split_indices(len(x), data.validation_split, seed)
    return Dataset(info, x[train], y[train], x[val], y[val], decode)
