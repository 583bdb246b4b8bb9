"""Multi-head attention as fused ops: its four projections are einsums over the arm axis, composed as Keras'
MultiHeadAttention composes its EinsumDense layers (HFTA builds its fused attention from fused linear layers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelforge.fused.ops.base import FusedOp, Op, Stacked
from modelforge.layers import weight_name

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def _project(h: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
    """(arms, batch, steps, features) through each arm's (features, heads, size) kernel: (arms, batch, steps,
    heads, size)."""
    import tensorflow as tf

    out = tf.einsum("abtd,adhk->abthk", h, kernel)
    return out if bias is None else out + bias[:, None, None]


class MultiHeadAttention(FusedOp):
    """Keras' MultiHeadAttention over sequences: each arm's query, key, value and output projections, logits scaled
    by 1/sqrt(key_dim), a softmax over the attended steps. Self-attention takes one input, attention to another
    block's output two (the query, then the value)."""

    def refuse(self, layer: keras.Layer) -> str | None:
        config = layer.get_config()
        if config.get("dropout"):
            return f"layer {layer.name} drops attention weights (dropout={config['dropout']}), drawn per arm"
        # Keras sets the axes when it builds: over the steps of sequences they are (1,).
        if config.get("attention_axes") not in (None, (1,), [1]) or config.get("use_gate"):
            return f"layer {layer.name} attends over other axes or with a gate"
        return None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        # An attention layer's weights share their last names (`kernel`): they are read by their whole names.
        named = dict(zip((weight_name(layer, w) for w in layer.weights), weights.variables))
        kernel = {p: named[f"{p}/kernel"] for p in ("query", "key", "value", "attention_output")}
        bias = {p: named.get(f"{p}/bias") for p in kernel}
        inverse = 1.0 / math.sqrt(float(layer.get_config()["key_dim"]))

        def attend(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            source = xs[-1]
            query = _project(xs[0], kernel["query"], bias["query"])
            key = _project(source, kernel["key"], bias["key"])
            value = _project(source, kernel["value"], bias["value"])
            # Keras' dot-product attention: the logits, then the scale, as its TensorFlow backend orders them.
            logits = tf.einsum("abthk,abshk->abhts", query, key) * inverse
            scores = tf.nn.softmax(logits, axis=-1)
            out = tf.einsum("abthv,ahvo->abto", tf.einsum("abhts,abshv->abthv", scores, value),
                            kernel["attention_output"])
            last = bias["attention_output"]
            return out if last is None else out + last[:, None, None]

        return Op(attend, weights.variables, [w.trainable for w in layer.weights])
