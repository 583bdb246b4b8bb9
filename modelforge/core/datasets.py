"""What each data set looks like before it is loaded: its input shape, task and outputs. Pure and cheap.

The plan and the shape checks need only this (each data config's `describe()`); `modelforge.data` loads the
arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUTS = ("auto", "flat", "image", "sequence", "tokens")


@dataclass(frozen=True)
class GreyImages:
    """A set of square grey images of digits; as tokens, each pixel is its integer grey level."""

    side: int
    levels: int  # grey levels, 0..levels-1: the vocabulary size as tokens

    def shape(self, layout: str) -> tuple[int, ...]:
        n = self.side
        return {"flat": (n * n,), "image": (n, n, 1), "sequence": (n, n), "tokens": (n * n,)}[layout]


    def describe(self, name: str, layout: str, wanted_layout: str) -> DataInfo:
        """The images of data set `name` shaped for `layout` (`auto`: what the first layer wants)."""
        layout = wanted_layout if layout == "auto" else layout
        return DataInfo(name, self.shape(layout), "classification", 10, self.levels if layout == "tokens" else None)


# sklearn's digits: 1797 8x8 images, values 0..16, bundled. MNIST: 60,000 28x28 training images, 0..255,
# downloaded once (modelforge.data.downloads).
IMAGES = {"digits": GreyImages(8, 17), "mnist": GreyImages(28, 256)}
DATASETS = ("digits", "mnist", "synthetic")


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
