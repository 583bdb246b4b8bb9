"""Normalization ops, each arm's statistics and scales kept apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelforge.fused.ops.base import FusedOp, Op, Stacked, per_arm, with_weights

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class BatchNorm(FusedOp):
    """Each arm through the ops its Keras layer calls, on its own tensor with its own (channels,) statistics: the
    same reductions, so the same numbers (its gradients' cancellations included), bit for bit."""

    def refuse(self, layer: keras.Layer) -> str | None:
        axis = layer.get_config().get("axis")
        return None if axis in (-1, [-1]) else f"layer {layer.name} normalizes axis {axis}"

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import keras
        import tensorflow as tf

        config = layers[0].get_config()
        gamma, beta = weights.get("gamma"), weights.get("beta")
        moving_mean, moving_var = weights["moving_mean"], weights["moving_variance"]
        momentum, epsilon = float(config["momentum"]), float(config["epsilon"])

        def one_arm(a: int, x: tf.Tensor, training: bool) -> tf.Tensor:
            if training:  # Keras' moments (its variance stops the mean's gradient)
                mean, var = keras.ops.moments(x, axes=list(range(len(x.shape) - 1)))
                moving_mean[a].assign(moving_mean[a] * momentum + mean * (1.0 - momentum))
                moving_var[a].assign(moving_var[a] * momentum + var * (1.0 - momentum))
            else:
                mean, var = moving_mean[a], moving_var[a]
            return tf.nn.batch_normalization(x, mean, var, None if beta is None else beta[a],
                                             None if gamma is None else gamma[a], epsilon)

        return with_weights(lambda xs, training: per_arm(xs[0], arms, lambda a, x: one_arm(a, x, training)),
                            weights, layers[0])


class LayerNorm(FusedOp):
    """Per sample over the last axis, each arm with its own gamma and beta, through Keras' own op."""

    def refuse(self, layer: keras.Layer) -> str | None:
        config = layer.get_config()
        if list(config.get("axis") or []) not in ([-1],) or config.get("rms_scaling"):
            return f"layer {layer.name} normalizes axis {config.get('axis')} or scales by RMS"
        return None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import keras

        gamma, beta, epsilon = weights.get("gamma"), weights.get("beta"), layers[0].epsilon

        def norm(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            h = xs[0]

            def shaped(v: tf.Variable | None) -> tf.Tensor | None:  # each arm's, broadcast over its samples
                return None if v is None else keras.ops.reshape(v, [arms] + [1] * (len(h.shape) - 2) + [v.shape[-1]])

            return keras.ops.layer_normalization(h, shaped(gamma), shaped(beta), -1, epsilon)

        return with_weights(norm, weights, layers[0])


class Normalization(FusedOp):
    """Each arm's own statistics (its own training split's, for `data.standardize`), read from each arm's layer
    as Keras' call reads them: those it was made with, or those its adapt() finalized."""

    def refuse(self, layer: keras.Layer) -> str | None:
        return f"layer {layer.name} inverts" if layer.get_config().get("invert") else None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import keras
        import numpy as np
        import tensorflow as tf

        mean = tf.constant(np.stack([np.asarray(layer.mean) for layer in layers]))
        variance = tf.constant(np.stack([np.asarray(layer.variance) for layer in layers]))
        epsilon = keras.config.epsilon()

        def normalize(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            h = xs[0]
            shape = [arms] + [1] * (len(h.shape) - len(mean.shape)) + list(mean.shape[1:])
            return (h - tf.reshape(mean, shape)) / tf.maximum(tf.sqrt(tf.reshape(variance, shape)), epsilon)

        return with_weights(normalize, weights, layers[0])
