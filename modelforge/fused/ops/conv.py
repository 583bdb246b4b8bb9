"""Convolutions and pooling. A convolution is each arm's own call of the function its Keras layer calls, all in one
graph step (on this project's CPU that beat image patches with one batched matmul, and a grouped convolution with
one group per arm: docs/benchmarks.md); pooling merges the arms into the batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from modelforge.fused.ops.base import FusedOp, Op, Stacked, biased, merged, pair, per_arm, with_weights

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class Conv(FusedOp):
    """Conv1D and Conv2D: each arm's own `tf.nn.convolution`, the op Keras calls."""

    def refuse(self, layer: keras.Layer) -> str | None:
        config = layer.get_config()
        if config.get("groups", 1) != 1:
            return f"layer {layer.name} uses groups"
        if config.get("padding") not in ("valid", "same") or config.get("data_format") == "channels_first":
            return f"layer {layer.name} pads {config.get('padding')!r} or is channels_first"
        return None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        config = layers[0].get_config()
        step, dilations = list(pair(config["strides"])), list(pair(config["dilation_rate"]))
        padding = config["padding"].upper()
        kernel, bias = weights["kernel"], weights.get("bias")

        def conv(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            kernels = tf.unstack(kernel, arms)
            biases = tf.unstack(bias, arms) if bias is not None else [None] * arms
            # The bias added per arm too, so its gradient sums as Keras' does.
            return per_arm(xs[0], arms, lambda a, x: biased(
                tf.nn.convolution(x, kernels[a], step, padding, dilations=dilations), biases[a]))

        return with_weights(conv, weights, layers[0], activation=True)


class KerasConv(FusedOp):
    """Depthwise, separable and transposed convolutions: each arm's own call of the `keras.ops` function the
    Keras layer calls (`convolve`, one subclass per function)."""

    def refuse(self, layer: keras.Layer) -> str | None:
        return f"layer {layer.name} is channels_first" if layer.get_config().get("data_format") == "channels_first" \
            else None

    def convolve(self, config: dict[str, object], x: tf.Tensor, weights: Stacked, arm: int) -> tf.Tensor:
        """One arm's convolution, without its bias."""
        raise NotImplementedError

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        config = layers[0].get_config()
        bias = weights.get("bias")

        def conv(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            return per_arm(xs[0], arms, lambda a, x: biased(self.convolve(config, x, weights, a),
                                                             None if bias is None else bias[a]))

        return with_weights(conv, weights, layers[0], activation=True)


def _common(config: dict[str, object]) -> dict[str, object]:
    return {"padding": config["padding"], "data_format": "channels_last", "dilation_rate": config["dilation_rate"]}


class DepthwiseConv(KerasConv):
    """DepthwiseConv2D: `keras.ops.depthwise_conv`."""

    def convolve(self, config: dict[str, object], x: tf.Tensor, weights: Stacked, arm: int) -> tf.Tensor:
        import keras

        return keras.ops.depthwise_conv(x, weights["kernel"][arm], config["strides"], **_common(config))


class SeparableConv(KerasConv):
    """SeparableConv1D and SeparableConv2D: `keras.ops.separable_conv`."""

    def convolve(self, config: dict[str, object], x: tf.Tensor, weights: Stacked, arm: int) -> tf.Tensor:
        import keras

        return keras.ops.separable_conv(x, weights["depthwise_kernel"][arm], weights["pointwise_kernel"][arm],
                                        config["strides"], **_common(config))


class ConvTranspose(KerasConv):
    """Conv2DTranspose: `keras.ops.conv_transpose`."""

    def convolve(self, config: dict[str, object], x: tf.Tensor, weights: Stacked, arm: int) -> tf.Tensor:
        import keras

        return keras.ops.conv_transpose(x, weights["kernel"][arm], config["strides"],
                                        output_padding=config["output_padding"], **_common(config))


class Pool(FusedOp):
    """Pooling, 1D and 2D, the arms merged into the batch: `reduce` names the `tf.nn` function."""

    reduce: ClassVar[str]

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        config = layers[0].get_config()
        pool, strides = pair(config["pool_size"]), pair(config["strides"] or config["pool_size"])
        pooled, padding = getattr(tf.nn, self.reduce), config["padding"].upper()

        def pool_op(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            flat, back = merged(xs[0], arms)
            return back(pooled(flat, ksize=list(pool), strides=list(strides), padding=padding))

        return Op(pool_op)


class MaxPool(Pool):
    """MaxPooling1D and MaxPooling2D."""

    reduce = "max_pool"


class AveragePool(Pool):
    """AveragePooling1D and AveragePooling2D."""

    reduce = "avg_pool"


class GlobalPool(FusedOp):
    """Global pooling over every axis between the batch and the channels: `reduce` names the `tf` function."""

    reduce: ClassVar[str]

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        reduce = getattr(tf, self.reduce)
        return Op(lambda xs, training: reduce(xs[0], axis=list(range(2, len(xs[0].shape) - 1))))


class GlobalMaxPool(GlobalPool):
    """GlobalMaxPooling1D and GlobalMaxPooling2D."""

    reduce = "reduce_max"


class GlobalAveragePool(GlobalPool):
    """GlobalAveragePooling1D and GlobalAveragePooling2D."""

    reduce = "reduce_mean"
