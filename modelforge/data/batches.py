"""The training batches, as a `tf.data` pipeline with an explicit shuffle seed.

TensorFlow is the point here, so it lives in this one module. Keras' own `shuffle=True` draws from op seeds
that depend on what else the process created first; an explicit seed makes the batch order a function of
the run seed alone: every arm of a sweep with the same seed sees the same batches in the same order, and a
job run after others in one process sees what it would see alone.
"""

from __future__ import annotations

from typing import Any


def train_batches(x: Any, y: Any, batch_size: int, seed: int, shuffle: bool = True) -> Any:
    """A `tf.data.Dataset` of (x, y) batches, reshuffled each epoch in an order fixed by `seed`.

    Example:
        >>> import numpy as np
        >>> ds = train_batches(np.arange(6.0), np.arange(6), batch_size=4, seed=0)
        >>> [len(b[1]) for b in ds]
        [4, 2]
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
