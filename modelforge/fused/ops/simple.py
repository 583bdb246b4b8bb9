"""Ops without a kernel: the input, reshapes, activations and dropout, each on the stacked tensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelforge.fused.ops.base import FusedOp, Op, Stacked, with_weights

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class Identity(FusedOp):
    """InputLayer: the input as it is."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        return Op(lambda xs, training: xs[0])


class Flatten(FusedOp):
    """Each sample's values in one axis, the arm and batch axes kept."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        return Op(lambda xs, training: tf.reshape(xs[0], [arms, tf.shape(xs[0])[1], -1]))


class Activation(FusedOp):
    """An Activation layer: its function on the stacked tensor."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        function = layers[0].activation
        return Op(lambda xs, training: function(xs[0]))


class Elementwise(FusedOp):
    """Activation layers without weights (LeakyReLU, ELU, ReLU): Keras' own `call`, which is elementwise, on the
    stacked tensor."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        layer = layers[0]
        return Op(lambda xs, training: layer.call(xs[0]))


class Dropout(FusedOp):
    """Every arm's mask drawn apart (one draw over the stacked tensor)."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        rate = float(layers[0].rate)
        return Op(lambda xs, training: tf.nn.dropout(xs[0], rate=rate) if training and rate else xs[0])


class PReLU(FusedOp):
    """Each arm's own slope: relu(x) - alpha * relu(-x), as Keras writes it."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        alpha = weights["alpha"]

        def prelu(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            shaped = tf.reshape(alpha, [arms, 1, *alpha.shape[1:]])
            return tf.nn.relu(xs[0]) + (-shaped) * tf.nn.relu(-xs[0])

        return with_weights(prelu, weights, layers[0])


class Gate(FusedOp):
    """modelforge's Gate: each arm's own scalar times the input."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        alpha = weights["alpha"]

        def gate(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            return xs[0] * tf.reshape(alpha, [arms] + [1] * (len(xs[0].shape) - 1))

        return with_weights(gate, weights, layers[0])


class LayerScale(FusedOp):
    """modelforge's LayerScale: each arm's own scale per channel times the input."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        gamma = weights["gamma"]

        def scale(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            return xs[0] * tf.reshape(gamma, [arms] + [1] * (len(xs[0].shape) - 2) + [gamma.shape[-1]])

        return with_weights(scale, weights, layers[0])


class Scale(FusedOp):
    """modelforge's Scale: each arm's fixed factor times the input (DeepNorm's shortcut)."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        factor = weights["factor"]

        def scale(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            return xs[0] * tf.reshape(factor, [arms] + [1] * (len(xs[0].shape) - 1))

        return with_weights(scale, weights, layers[0])


class PositionEmbedding(FusedOp):
    """modelforge's PositionEmbedding: each arm's (steps, features) table added to every sample."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        table = weights["embeddings"]

        def add(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            return xs[0] + tf.expand_dims(table, 1)

        return with_weights(add, weights, layers[0])
