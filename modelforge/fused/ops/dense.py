"""Ops with a kernel read by matmul or lookup: Dense and Embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelforge.fused.ops.base import FusedOp, Op, Stacked, biased, with_weights

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class Dense(FusedOp):
    """One batched matmul: (arms, batch, in) @ (arms, in, out)."""

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        kernel, bias = weights["kernel"], weights.get("bias")

        def dense(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            h = xs[0]
            out = tf.matmul(h, kernel) if len(h.shape) == 3 else tf.einsum("kb...i,kio->kb...o", h, kernel)
            return biased(out, bias)

        return with_weights(dense, weights, layers[0], activation=True)


class Embedding(FusedOp):
    """Each arm's table, gathered per arm. Its gradient is dense in the fused model, while Keras gets an
    IndexedSlices one and squares it per occurrence before summing rows: the op's `second_moments` hook gives
    Adam and RMSprop that sum, so the arms still equal their runs."""

    sparse_gradient = True

    def refuse(self, layer: keras.Layer) -> str | None:
        return f"layer {layer.name} masks zeros" if layer.get_config().get("mask_zero") else None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        table = weights["embeddings"]
        vocab, width = int(table.shape[1]), int(table.shape[-1])
        seen: list[tf.Tensor] = []  # the ids of the last call

        def lookup(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            ids = tf.cast(xs[0], tf.int32)
            out = tf.gather(table, ids, batch_dims=1)
            seen[:], op.tapped[:] = [ids], [out]
            return out

        def second_moments(grads: list[tf.Tensor], scale: list[float] | None) -> dict[int, tf.Tensor]:
            (ids,), (d_out,) = seen, grads
            occurrences = tf.square(d_out)
            if scale is not None:  # each occurrence scaled before the rows are summed, as Keras does it
                occurrences = occurrences * tf.reshape(tf.constant(scale, tf.float32),
                                                       [arms] + [1] * (len(d_out.shape) - 1))
            offsets = tf.reshape(tf.range(arms) * vocab, [arms] + [1] * (len(ids.shape) - 1))
            summed = tf.math.unsorted_segment_sum(tf.reshape(occurrences, [-1, width]),
                                                  tf.reshape(ids + offsets, [-1]), arms * vocab)
            return {0: tf.reshape(summed, table.shape)}

        op = with_weights(lookup, weights, layers[0])
        op.second_moments = second_moments
        return op
