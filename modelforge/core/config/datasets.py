"""What each data set looks like before it is loaded: its input shape, task and outputs. Pure and cheap.

The plan and the shape checks need only this (each data config's `describe()`); `modelforge.data` loads the
arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelforge.errors import ConfigError

LAYOUTS = ("auto", "flat", "image", "sequence", "tokens")


@dataclass(frozen=True)
class GreyImages:
    """A set of square grey images of digits; as tokens, each pixel is its integer grey level."""

    side: int
    levels: int  # grey levels, 0..levels-1: the vocabulary size as tokens
    samples: int  # images in the set (training images, for MNIST)

    def shape(self, layout: str) -> tuple[int, ...]:
        n = self.side
        return {"flat": (n * n,), "image": (n, n, 1), "sequence": (n, n), "tokens": (n * n,)}[layout]


    def describe(self, name: str, layout: str, wanted_layout: str) -> DataInfo:
        """The images of data set `name` shaped for `layout` (`auto`: what the first layer wants)."""
        layout = wanted_layout if layout == "auto" else layout
        return DataInfo(name, self.shape(layout), "classification", 10, self.levels if layout == "tokens" else None)


# sklearn's digits: 1797 8x8 images, values 0..16, bundled. MNIST: 60,000 28x28 training images, 0..255,
# downloaded once (modelforge.data.downloads).
IMAGES = {"digits": GreyImages(8, 17, 1797), "mnist": GreyImages(28, 256, 60000)}
# A split must leave at least this many samples on each side: fewer gives metrics that mean nothing.
MIN_SPLIT_SAMPLES = 10


def split_counts(n: int, validation_split: float) -> tuple[int, int]:
    """(train, validation) sample counts of n samples split so: at least one on each side.

    Example:
        >>> split_counts(1797, 0.2)
        (1438, 359)
    """
    n_val = min(n - 1, max(1, round(n * validation_split)))
    return n - n_val, n_val


def check_split(n: int, validation_split: float, batch_size: int) -> None:
    """Refuses a split that leaves too little to train on (a batch, and a few samples) or to validate on.

    Example:
        >>> check_split(1797, 0.9999, 32)
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data.validation_split=0.9999 leaves 1 of 1797 samples to train on and 1796...
    """
    train, val = split_counts(n, validation_split)
    if train < max(batch_size, MIN_SPLIT_SAMPLES) or val < MIN_SPLIT_SAMPLES:
        least_train = max(batch_size, MIN_SPLIT_SAMPLES)
        low, high = math.ceil(100 * MIN_SPLIT_SAMPLES / n), math.floor(100 * (1 - least_train / n))
        fix = (f"choose data.validation_split between {low / 100} and {high / 100}" if low <= high else
               "use more data")
        raise ConfigError(
            f"data.validation_split={validation_split} leaves {train} of {n} samples to train on and {val} to "
            f"validate on; each side needs at least {MIN_SPLIT_SAMPLES} samples, and training at least one batch "
            f"(trainer.batch_size={batch_size}): {fix}, or a smaller batch"
        )


@dataclass(frozen=True)
class DataInfo:
    """What the builder needs to know of a data set before loading it.

    Attributes:
        name: the data set's config name.
        input_shape: one sample's shape.
        task: `classification` or `regression`.
        num_outputs: classes for classification, targets for regression.
        vocab_size: for integer token inputs, the number of distinct tokens; None for real-valued inputs.
        samples: for the user's data, the samples to split (None: the config knows, or no split is made).
    """

    name: str
    input_shape: tuple[int, ...]
    task: str
    num_outputs: int
    vocab_size: int | None = None
    samples: int | None = None
