"""The training batches, as a `tf.data` pipeline whose order is a function of the run seed and the epoch.

TensorFlow is the point here, so it lives in this one module. Keras' own `shuffle=True` draws from op seeds
that depend on what else the process created first, and a reshuffling `tf.data` iterator carries its state
from epoch to epoch. Here epoch e's order is drawn from (seed, e) alone: every arm of a sweep with the same
seed sees the same batches in the same order, a job run after others sees what it would see alone, and a run
resumed at epoch e sees exactly the batches the uninterrupted run saw from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def plain(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A `tf.data` map function, traced as written. Autograph would otherwise parse its source file to convert
    Python control flow that these functions do not have, about 0.1 s a lambda on every run."""
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)  # type: ignore[no-any-return]


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Any:
    """The order of the n training samples in `epoch` (0-based).

    Example:
        >>> list(epoch_order(5, seed=0, epoch=3)) == list(epoch_order(5, seed=0, epoch=3))
        True
        >>> epoch_order(4, seed=0, epoch=0, shuffle=False).tolist()
        [0, 1, 2, 3]
    """
    import numpy as np

    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch (the last may be smaller)."""
    return math.ceil(n / batch_size)


def train_batches(x: Any, y: Any, batch_size: int, seed: int, shuffle: bool = True, first_epoch: int = 0,
                  epochs: int = 1, decode: Callable[[Any], Any] | None = None) -> Any:
    """A `tf.data.Dataset` of (x, y) batches for epochs `first_epoch` .. `epochs - 1`, one after another.

    Fit it with `steps_per_epoch=steps_per_epoch(len(x), batch_size)` and `initial_epoch=first_epoch`. With
    `decode`, `x` holds file paths and each is decoded as its batch is made (the samples are never all in
    memory).

    Example:
        >>> import numpy as np
        >>> ds = train_batches(np.arange(6.0), np.arange(6), batch_size=4, seed=0, epochs=2)
        >>> [len(b[1]) for b in ds]
        [4, 2, 4, 2]
    """
    import numpy as np
    import tensorflow as tf

    orders = np.stack([epoch_order(len(x), seed, e, shuffle) for e in range(first_epoch, max(epochs, first_epoch))]
                      or [np.arange(0)]).astype(np.int64)
    features, targets = tf.constant(x), tf.constant(y)
    if decode is not None:
        @plain
        def sample(index: Any) -> Any:
            return decode(tf.gather(features, index)), tf.gather(targets, index)

        return tf.data.Dataset.from_tensor_slices(orders).flat_map(plain(
            lambda order: tf.data.Dataset.from_tensor_slices(order).map(sample, num_parallel_calls=tf.data.AUTOTUNE,
                                                                        deterministic=True).batch(batch_size)
        )).prefetch(tf.data.AUTOTUNE)
    dataset = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        plain(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)))
    return dataset.map(plain(lambda idx: (tf.gather(features, idx), tf.gather(targets, idx)))).prefetch(
        tf.data.AUTOTUNE)
