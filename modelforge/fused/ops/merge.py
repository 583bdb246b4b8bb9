"""Merges of a node's several inputs (a residual's sum, a skip's concatenation), on the stacked tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelforge.fused.ops.base import FusedOp, Op, Stacked

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class Add(FusedOp):
    """Add: the inputs summed in their order, as Keras' merge adds them."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        def add(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out

        return Op(add)


class Concatenate(FusedOp):
    """Concatenate along the layer's axis: a negative one as it is, a positive one (counted from the batch axis)
    one further, past the arm axis."""

    def refuse(self, layer: keras.Layer) -> str | None:
        return f"layer {layer.name} concatenates along the batch axis" if layer.axis == 0 else None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        axis = int(layers[0].axis)
        shifted = axis if axis < 0 else axis + 1
        return Op(lambda xs, training: tf.concat(xs, axis=shifted))
