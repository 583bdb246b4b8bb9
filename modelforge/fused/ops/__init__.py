"""Keras layers as batched operations over a leading arm axis, in one closed registry keyed by class.

A layer fuses through the op registered for its exact class, or for the nearest parent class when neither its
class nor any class between overrides `call` or `build` (a subclass that only changes defaults computes what its
parent does); anything else is refused, naming its class. Ops take the node's inputs as a list.

- `base`: what every op is (`FusedOp`, `Op`, `Stacked`: weights by their Keras names, `biased`: the one bias).
- `simple`, `dense`, `conv`, `norm`, `recurrent`, `merge`, `attention`: the ops, by family (attention composed
  of einsum projections).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import keras

from modelforge import layers as own
from modelforge.fused.ops.attention import MultiHeadAttention
from modelforge.fused.ops.base import FusedOp, Op, Stacked
from modelforge.fused.ops.conv import (
    AveragePool,
    Conv,
    ConvTranspose,
    DepthwiseConv,
    GlobalAveragePool,
    GlobalMaxPool,
    MaxPool,
    SeparableConv,
)
from modelforge.fused.ops.dense import Dense, Embedding
from modelforge.fused.ops.merge import Add, Concatenate
from modelforge.fused.ops.norm import BatchNorm, LayerNorm, Normalization
from modelforge.fused.ops.recurrent import GRU, LSTM, SimpleRNN
from modelforge.fused.ops.simple import (
    Activation,
    Dropout,
    Elementwise,
    Flatten,
    Gate,
    Identity,
    LayerScale,
    PositionEmbedding,
    PReLU,
    Scale,
)

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["OPS", "FusedOp", "Op", "covered", "layer_refused", "make_op", "op_for"]

_layers = keras.layers
# Keras layer class -> its fused op: what the fused model covers, one line each.
OPS: dict[type[keras.Layer], FusedOp] = {
    _layers.InputLayer: Identity(), _layers.Flatten: Flatten(), _layers.Activation: Activation(),
    _layers.Dropout: Dropout(), _layers.Dense: Dense(), _layers.Embedding: Embedding(),
    _layers.Conv1D: Conv(), _layers.Conv2D: Conv(), _layers.DepthwiseConv2D: DepthwiseConv(),
    _layers.SeparableConv1D: SeparableConv(), _layers.SeparableConv2D: SeparableConv(),
    _layers.Conv2DTranspose: ConvTranspose(),
    _layers.MaxPooling1D: MaxPool(), _layers.MaxPooling2D: MaxPool(),
    _layers.AveragePooling1D: AveragePool(), _layers.AveragePooling2D: AveragePool(),
    _layers.GlobalAveragePooling1D: GlobalAveragePool(), _layers.GlobalAveragePooling2D: GlobalAveragePool(),
    _layers.GlobalMaxPooling1D: GlobalMaxPool(), _layers.GlobalMaxPooling2D: GlobalMaxPool(),
    _layers.BatchNormalization: BatchNorm(), _layers.LayerNormalization: LayerNorm(),
    _layers.Normalization: Normalization(),
    _layers.SimpleRNN: SimpleRNN(), _layers.LSTM: LSTM(), _layers.GRU: GRU(),
    _layers.LeakyReLU: Elementwise(), _layers.ELU: Elementwise(), _layers.ReLU: Elementwise(),
    _layers.PReLU: PReLU(), _layers.Add: Add(), _layers.Concatenate: Concatenate(),
    own.Gate: Gate(), own.LayerScale: LayerScale(), own.Scale: Scale(), own.PositionEmbedding: PositionEmbedding(),
    _layers.MultiHeadAttention: MultiHeadAttention(),
}


def _lookup(cls: type) -> tuple[type | None, type | None]:
    """The nearest registered class in `cls`'s MRO, and the first class on the way there that overrides `call`
    or `build` (None: none does)."""
    overrides = None
    for parent in cls.__mro__:
        if parent in OPS:
            return parent, overrides
        if overrides is None and ("call" in vars(parent) or "build" in vars(parent)):
            overrides = parent
    return None, overrides


def op_for(cls: type) -> FusedOp | None:
    """The op a layer class fuses through: its own, or its nearest registered parent's when no class on the way
    overrides `call` or `build` (None: it has none).

    Example:
        >>> class Wide(keras.layers.Dense):
        ...     def __init__(self, **kwargs):
        ...         super().__init__(units=512, **kwargs)
        >>> class Squared(keras.layers.Dense):
        ...     def call(self, inputs):
        ...         return super().call(inputs) ** 2
        >>> type(op_for(Wide)).__name__, op_for(Squared)
        ('Dense', None)
    """
    registered, overrides = _lookup(cls)
    return OPS[registered] if registered is not None and overrides is None else None


def covered() -> list[str]:
    """The Keras layers the fused model covers, by class name (InputLayer aside).

    Example:
        >>> "Dense" in covered() and "InputLayer" not in covered()
        True
    """
    return [cls.__name__ for cls in OPS if cls is not keras.layers.InputLayer]


def layer_refused(layer: keras.Layer) -> str | None:
    """Why a Keras layer cannot be fused (None: it can): a class without an op, one that computes its own way
    (it overrides `call` or `build` of a class with an op), or settings its op refuses."""
    kind = type(layer).__name__
    registered, overrides = _lookup(type(layer))
    if registered is None:
        return f"its model has a {kind} layer ({layer.name}); the fused model covers {', '.join(covered())}"
    if overrides is not None:
        method = "call" if "call" in vars(overrides) else "build"
        return (f"its model has a {kind} layer ({layer.name}): {overrides.__name__} overrides {method} of "
                f"{registered.__name__}, so it computes its own way; the fused model covers {', '.join(covered())}")
    return OPS[registered].refuse(layer)


def make_op(layers: Sequence[keras.Layer], stacked: Callable[[int], tf.Variable]) -> Op:
    """The fused op of a Keras layer, from that layer in every arm; `stacked(j)` is the layer's j-th weight for
    every arm, as a tf.Variable.

    Raises:
        ValueError: the layer has no op, or its op refuses its settings (`layer_refused` says which).
    """
    layer = layers[0]
    refused = layer_refused(layer)
    if refused is not None:
        raise ValueError(refused)
    op = op_for(type(layer))
    assert op is not None  # layer_refused said it has one
    return op.build(layers, Stacked(layer, [stacked(j) for j in range(len(layer.weights))]), len(layers))
