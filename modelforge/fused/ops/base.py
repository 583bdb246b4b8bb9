"""What every fused op is: a Keras layer kind as a batched operation over a leading arm axis.

Inputs are (arms, batch, ...), weights (arms, ...). An op gets the layer of every arm (the same layer but for its
values) and the layer's weights stacked over the arms, looked up by their Keras names (`Stacked`), and returns an
`Op`: the call, its variables in the layer's order, and, where Keras takes a weight's gradient in its own way (an
embedding's per occurrence), the hook that gives the optimizer what Keras would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# An op's call: the node's inputs (one tensor, or a merge's several) and whether it trains.
Call = Callable[[list["tf.Tensor"], bool], "tf.Tensor"]


class SecondMoments(Protocol):
    """An op's hook for optimizers whose second moment Keras takes from an IndexedSlices gradient: given the
    gradients of the op's `tapped` tensors and a per-arm factor for each occurrence (None: 1), the sum of squares
    per row of each variable it concerns, by the variable's index in the op's `variables`."""

    def __call__(self, grads: list[tf.Tensor], scale: list[float] | None) -> dict[int, tf.Tensor]: ...


@dataclass
class Op:
    """One layer, fused: `run(inputs, training)` and its stacked variables in the order of the layer's weights."""

    run: Call
    variables: list[tf.Variable] = field(default_factory=list)
    trainable: list[bool] = field(default_factory=list)
    # The layer's activation, when it ends with one (a softmax head gives logits).
    activation: Callable[[tf.Tensor], tf.Tensor] | None = None
    # Tensors of the op's last call whose gradients `second_moments` reads (an embedding's gathered rows).
    tapped: list[tf.Tensor] = field(default_factory=list)
    second_moments: SecondMoments | None = None


class Stacked:
    """A layer's weights stacked over the arms, by the names Keras gives them (`kernel`, `bias`, `gamma`), in the
    layer's own order."""

    def __init__(self, layer: keras.Layer, variables: Sequence[tf.Variable]) -> None:
        self.names = [w.path.split("/")[-1] for w in layer.weights]
        self.variables = list(variables)

    def __getitem__(self, name: str) -> tf.Variable:
        return self.variables[self.names.index(name)]

    def get(self, name: str) -> tf.Variable | None:
        """The weight called `name`, or None where the layer has none (a Dense without bias)."""
        return self[name] if name in self.names else None


def biased(out: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
    """`out` plus a bias over its last axis: a stacked bias (arms, channels) on a stacked output (arms, batch,
    ..., channels), or one arm's (channels,) on its own output (batch, ..., channels).

    Example:
        >>> import numpy as np
        >>> biased(np.zeros((2, 3, 4)), np.arange(8.0).reshape(2, 4))[1, 0].numpy().tolist()
        [4.0, 5.0, 6.0, 7.0]
    """
    import tensorflow as tf

    if bias is None:
        return out
    leading = list(bias.shape[:-1])
    return out + tf.reshape(bias, leading + [1] * (len(out.shape) - len(leading) - 1) + [bias.shape[-1]])


def per_arm(h: tf.Tensor, arms: int, each: Callable[[int, tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """Each arm's own call of `each(arm, its input)`, stacked: for ops whose Keras function takes one arm's
    tensor (convolutions, batch normalization), all in one graph step."""
    import tensorflow as tf

    return tf.stack([each(a, x) for a, x in enumerate(tf.unstack(h, arms))])


def merged(h: tf.Tensor, arms: int) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """(arms, batch, ...) as (arms*batch, ...), and the way back."""
    import tensorflow as tf

    shape = tf.shape(h)
    flat = tf.reshape(h, tf.concat([[-1], shape[2:]], 0))
    return flat, lambda out: tf.reshape(out, tf.concat([[arms, shape[1]], tf.shape(out)[1:]], 0))


def pair(value: int | Sequence[int]) -> tuple[int, ...]:
    """A Keras size argument (`3` or `(3, 3)`) as a tuple.

    Example:
        >>> pair(3), pair([2, 1])
        ((3,), (2, 1))
    """
    return (value,) if isinstance(value, int) else tuple(value)


class FusedOp:
    """A Keras layer kind as a batched operation over the arm axis. A new kind is a subclass and a line in the
    registry (`modelforge.fused.ops.OPS`); the op-by-op tests (tests/fused/test_ops.py) then cover it against the
    Keras layer it mirrors, from the example layer the tests keep for it."""

    # Whether Keras gets this layer's gradient per occurrence (IndexedSlices): the op then gives the optimizer
    # the per-occurrence second moments (`Op.second_moments`), and clipping, by occurrence in Keras, is refused.
    sparse_gradient: ClassVar[bool] = False

    def refuse(self, layer: keras.Layer) -> str | None:
        """Why this layer's settings cannot be fused (None: they can)."""
        return None

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        """The op over `weights`, the layer's weights stacked for every arm; `layers` holds the layer of every
        arm (per-arm constants, as a Normalization layer's statistics, are read from them)."""
        raise NotImplementedError


def with_weights(run: Call, weights: Stacked, layer: keras.Layer, activation: bool = False) -> Op:
    """An op that holds the layer's weights (trainable as the layer's are), ending with the layer's activation
    where `activation`."""
    return Op(run, weights.variables, [w.trainable for w in layer.weights],
              layer.activation if activation else None)
