"""Recurrent layers: the time loop once for every arm, each step one batched matmul per weight, in Keras' order
of operations (`step`, one subclass per cell)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modelforge.fused.ops.base import FusedOp, Op, Stacked, biased, with_weights

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

Function = Callable[["tf.Tensor"], "tf.Tensor"]


def _times(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """(arms, batch, in) @ (arms, in, out), the product every cell step takes."""
    import tensorflow as tf

    return tf.einsum("kbi,kio->kbo", x, w)


class Recurrent(FusedOp):
    """A recurrent layer: its cell's `step` over the time axis, the state (and LSTM's carry) per arm."""

    def refuse(self, layer: keras.Layer) -> str | None:
        config = layer.get_config()
        if config.get("dropout") or config.get("recurrent_dropout") or config.get("go_backwards") \
                or config.get("stateful") or not config.get("use_bias", True):
            return f"layer {layer.name} uses dropout, go_backwards, stateful or no bias"
        return None

    def step(self, x_t: tf.Tensor, state: tf.Tensor, carry: tf.Tensor, weights: Stacked, act: Function,
             rec_act: Function | None) -> tuple[tf.Tensor, tf.Tensor]:
        """One time step: the new state and carry."""
        raise NotImplementedError

    def build(self, layers: Sequence[keras.Layer], weights: Stacked, arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        cell, sequences = layer.cell, bool(layer.return_sequences)
        act, rec_act = cell.activation, getattr(cell, "recurrent_activation", None)  # SimpleRNN has no second
        units = int(cell.units)

        def run(xs: list[tf.Tensor], training: bool) -> tf.Tensor:
            h = xs[0]
            state = tf.zeros([arms, tf.shape(h)[1], units])
            carry, outputs = tf.zeros_like(state), []
            for t in range(h.shape[2]):
                state, carry = self.step(h[:, :, t], state, carry, weights, act, rec_act)
                outputs.append(state)
            return tf.stack(outputs, axis=2) if sequences else state

        return with_weights(run, weights, layer)


class SimpleRNN(Recurrent):
    """Keras' order: (x.W + b) + h.U, then the activation."""

    def step(self, x_t: tf.Tensor, state: tf.Tensor, carry: tf.Tensor, weights: Stacked, act: Function,
             rec_act: Function | None) -> tuple[tf.Tensor, tf.Tensor]:
        z = biased(_times(x_t, weights["kernel"]), weights["bias"]) + _times(state, weights["recurrent_kernel"])
        return act(z), carry


class LSTM(Recurrent):
    """The input, forget, cell and output gates from one product each of the input and the state."""

    def step(self, x_t: tf.Tensor, state: tf.Tensor, carry: tf.Tensor, weights: Stacked, act: Function,
             rec_act: Function | None) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        z = biased(_times(x_t, weights["kernel"]) + _times(state, weights["recurrent_kernel"]), weights["bias"])
        i, f, c, o = tf.split(z, 4, axis=-1)
        assert rec_act is not None  # every gated cell has one
        carry = rec_act(f) * carry + rec_act(i) * act(c)
        return rec_act(o) * act(carry), carry


class GRU(Recurrent):
    """reset_after (Keras' default): the recurrent bias is applied before the reset gate."""

    def refuse(self, layer: keras.Layer) -> str | None:
        refused = super().refuse(layer)
        if refused is None and not layer.get_config().get("reset_after", True):
            return f"layer {layer.name} has reset_after=false"
        return refused

    def step(self, x_t: tf.Tensor, state: tf.Tensor, carry: tf.Tensor, weights: Stacked, act: Function,
             rec_act: Function | None) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        bias = weights["bias"]
        assert rec_act is not None  # every gated cell has one
        x_z, x_r, x_h = tf.split(biased(_times(x_t, weights["kernel"]), bias[:, 0]), 3, -1)
        r_z, r_r, r_h = tf.split(biased(_times(state, weights["recurrent_kernel"]), bias[:, 1]), 3, -1)
        update, reset = rec_act(x_z + r_z), rec_act(x_r + r_r)
        return update * state + (1 - update) * act(x_h + reset * r_h), carry
