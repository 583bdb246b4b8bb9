"""Keras layers as batched operations over a leading arm axis: inputs (arms, batch, ...), weights (arms, ...).

Dense is one batched matmul. A convolution is each arm's own `tf.nn.convolution` (the op Keras calls), all
in one graph step: on this machine's CPU that beat image patches with one batched matmul (the issue's
im2col), and a grouped convolution (one group per arm) ran 0.81x of separate fits.
Recurrent cells run their time loop once for every arm, each step one batched matmul per weight. Dropout
draws every arm's mask apart; batch normalization keeps every arm's statistics apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Op:
    """One layer, fused: `run(h, training)` and its stacked variables in the order of the layer's `weights`."""

    run: Callable[[Any, bool], Any]
    variables: list[Any] = field(default_factory=list)
    trainable: list[bool] = field(default_factory=list)
    activation: Any = None  # the layer's activation, when it ends with one (a softmax head gives logits)
    # (ids, output) of the op's last call, for an op whose gradient Keras takes per occurrence (an embedding)
    taps: list[Any] = field(default_factory=list)


class FusedOp:
    """A Keras layer kind as a batched operation over the arm axis. A new kind is a subclass and a line in
    `OPS`; the op-by-op tests (tests/fused/test_ops.py) then cover it against the Keras layer it mirrors."""

    def refuse(self, layer: Any) -> str | None:
        """Why this layer's settings cannot be fused (None: they can)."""
        return None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        """The op over `weights`, the layer's weights stacked for every arm (tf.Variables); `layers` holds the
        layer of every arm (the same layer but for its values: per-arm constants, as a Normalization layer's
        statistics, are read from them)."""
        raise NotImplementedError

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        """A small Keras layer of class `kind` and one sample's input shape, for the op-by-op tests (None: the
        layer cannot be called on its own, as InputLayer)."""
        import keras

        return getattr(keras.layers, kind)(), (3, 4)

    def sample(self, layer: Any, shape: tuple[int, ...], seed: int) -> Any:
        """Inputs the layer takes, of `shape`, for the op-by-op tests: standard normal floats by default."""
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _merged(h: Any, arms: int) -> tuple[Any, Callable[[Any], Any]]:
    """(arms, batch, ...) as (arms*batch, ...), and the way back."""
    import tensorflow as tf

    shape = tf.shape(h)
    flat = tf.reshape(h, tf.concat([[-1], shape[2:]], 0))
    return flat, lambda out: tf.reshape(out, tf.concat([[arms, shape[1]], tf.shape(out)[1:]], 0))


def _add_bias(h: Any, bias: Any, arms: int) -> Any:
    import tensorflow as tf

    return h + tf.reshape(bias, [arms, 1] + [1] * (len(h.shape) - 3) + [bias.shape[-1]])


class Identity(FusedOp):
    """InputLayer."""

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        return Op(lambda h, training: h)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        return None


class Flatten(FusedOp):
    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        return Op(lambda h, training: tf.reshape(h, [arms, tf.shape(h)[1], -1]))


class Activation(FusedOp):
    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        layer = layers[0]
        return Op(lambda h, training: layer.activation(h))

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.Activation("tanh"), (3, 4)


class Dropout(FusedOp):
    """Every arm's mask drawn apart (one draw over the stacked tensor)."""

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        rate = float(layer.rate)
        return Op(lambda h, training: tf.nn.dropout(h, rate=rate) if training and rate else h)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.Dropout(0.25), (40, 50)


class Dense(FusedOp):
    """One batched matmul: (arms, batch, in) @ (arms, in, out)."""

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        def dense(h: Any, training: bool) -> Any:
            out = tf.matmul(h, weights[0]) if len(h.shape) == 3 else tf.einsum("kb...i,kio->kb...o", h, weights[0])
            return _add_bias(out, weights[1], arms) if len(weights) > 1 else out

        return Op(dense, weights, trainable, layer.activation)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.Dense(5, activation="tanh"), (6,)


class Conv(FusedOp):
    """Conv1D and Conv2D: each arm's own `tf.nn.convolution`, the op Keras calls, all in one graph step."""

    def refuse(self, layer: Any) -> str | None:
        config = layer.get_config()
        if config.get("groups", 1) != 1:
            return f"layer {layer.name} uses groups"
        if config.get("padding") not in ("valid", "same") or config.get("data_format") == "channels_first":
            return f"layer {layer.name} pads {config.get('padding')!r} or is channels_first"
        return None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        config = layer.get_config()
        step, dilations = list(_pair(config["strides"])), list(_pair(config["dilation_rate"]))
        padding = config["padding"].upper()

        def conv(h: Any, training: bool) -> Any:
            # Measured for 9 arms of the digits conv net, 3 epochs: 3.0-3.6 s, against 4.3-4.7 s for image
            # patches and one batched matmul (and 5.4 s for patches and an einsum).
            outs = [tf.nn.convolution(x, w, step, padding, dilations=dilations)
                    for x, w in zip(tf.unstack(h, arms), tf.unstack(weights[0], arms), strict=True)]
            if len(weights) > 1:  # the bias added per arm too, so its gradient sums as Keras' does
                outs = [out + tf.reshape(b, [1] * (len(out.shape) - 1) + [-1])
                        for out, b in zip(outs, tf.unstack(weights[1], arms), strict=True)]
            return tf.stack(outs)

        return Op(conv, weights, trainable, layer.activation)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        if kind == "Conv1D":
            return keras.layers.Conv1D(3, 2, padding="same", activation="relu"), (6, 2)
        return keras.layers.Conv2D(3, (2, 2), strides=(1, 2), activation="relu"), (5, 6, 2)


class Pool(FusedOp):
    """MaxPooling and AveragePooling, 1D and 2D: the arms merged into the batch."""

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        config = layer.get_config()
        pool, strides = _pair(config["pool_size"]), _pair(config["strides"] or config["pool_size"])
        pooled = tf.nn.max_pool if type(layer).__name__.startswith("Max") else tf.nn.avg_pool
        padding = config["padding"].upper()

        def pool_op(h: Any, training: bool) -> Any:
            flat, back = _merged(h, arms)
            return back(pooled(flat, ksize=list(pool), strides=list(strides), padding=padding))

        return Op(pool_op)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return getattr(keras.layers, kind)(2), (6, 2) if kind.endswith("1D") else (6, 4, 2)


class GlobalPool(FusedOp):
    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]
        reduce = tf.reduce_max if "Max" in type(layer).__name__ else tf.reduce_mean
        return Op(lambda h, training: reduce(h, axis=list(range(2, len(h.shape) - 1))))

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return getattr(keras.layers, kind)(), (6, 2) if kind.endswith("1D") else (6, 4, 2)


class BatchNorm(FusedOp):
    """Every arm's statistics kept apart."""

    def refuse(self, layer: Any) -> str | None:
        axis = layer.get_config().get("axis")
        return None if axis in (-1, [-1]) else f"layer {layer.name} normalizes axis {axis}"

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        layer = layers[0]
        return _batch_norm(layer, weights, trainable, arms)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.BatchNormalization(momentum=0.9), (4, 3)


class Recurrent(FusedOp):
    """SimpleRNN, LSTM and GRU: the time loop once for every arm, each step one batched matmul per weight."""

    def refuse(self, layer: Any) -> str | None:
        config = layer.get_config()
        if config.get("dropout") or config.get("recurrent_dropout") or config.get("go_backwards") \
                or config.get("stateful") or not config.get("use_bias", True):
            return f"layer {layer.name} uses dropout, go_backwards, stateful or no bias"
        if type(layer).__name__ == "GRU" and not config.get("reset_after", True):
            return f"layer {layer.name} has reset_after=false"
        return None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        layer = layers[0]
        return _recurrent(layer, weights, trainable, arms)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return getattr(keras.layers, kind)(3, return_sequences=kind == "GRU"), (5, 2)


class Elementwise(FusedOp):
    """Activation layers without weights (LeakyReLU, ELU, ReLU, Softmax over the last axis): Keras' own `call`,
    which is elementwise (or over the last axis), on the stacked tensor."""

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        layer = layers[0]
        return Op(lambda h, training: layer.call(h))

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return getattr(keras.layers, kind)(**({"negative_slope": 0.2} if kind == "LeakyReLU" else {})), (3, 4)


class PReLU(FusedOp):
    """Each arm's own slope: relu(x) - alpha * relu(-x), as Keras writes it."""

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        alpha = weights[0]

        def prelu(h: Any, training: bool) -> Any:
            shaped = tf.reshape(alpha, [arms, 1, *alpha.shape[1:]])
            return tf.nn.relu(h) + (-shaped) * tf.nn.relu(-h)

        return Op(prelu, weights, trainable)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.PReLU(shared_axes=[1]), (3, 4)


class Normalization(FusedOp):
    """Each arm's own statistics (its own training split's, for `data.standardize`), read from each arm's layer
    as Keras' call reads them."""

    def refuse(self, layer: Any) -> str | None:
        return f"layer {layer.name} inverts" if layer.get_config().get("invert") else None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import keras
        import tensorflow as tf

        # What Keras' call reads: the statistics the layer was made with, or those its adapt() finalized.
        mean = tf.constant(np.stack([np.asarray(layer.mean) for layer in layers]))
        variance = tf.constant(np.stack([np.asarray(layer.variance) for layer in layers]))
        epsilon = keras.config.epsilon()

        def normalize(h: Any, training: bool) -> Any:
            shape = [arms] + [1] * (len(h.shape) - len(mean.shape)) + list(mean.shape[1:])
            return (h - tf.reshape(mean, shape)) / tf.maximum(tf.sqrt(tf.reshape(variance, shape)), epsilon)

        return Op(normalize, weights, trainable)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.Normalization(axis=-1), (3, 4)


class LayerNorm(FusedOp):
    """Per sample over the last axis, each arm with its own gamma and beta."""

    def refuse(self, layer: Any) -> str | None:
        config = layer.get_config()
        if list(config.get("axis") or []) not in ([-1],) or config.get("rms_scaling"):
            return f"layer {layer.name} normalizes axis {config.get('axis')} or scales by RMS"
        return None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import keras

        layer = layers[0]
        names = [w.path.split("/")[-1] for w in layer.weights]
        gamma = weights[names.index("gamma")] if "gamma" in names else None
        beta = weights[names.index("beta")] if "beta" in names else None

        def norm(h: Any, training: bool) -> Any:
            def shaped(v: Any) -> Any:
                return keras.ops.reshape(v, [arms] + [1] * (len(h.shape) - 2) + [v.shape[-1]])

            # Keras' own op, per arm's gamma and beta broadcast over its samples.
            return keras.ops.layer_normalization(h, None if gamma is None else shaped(gamma),
                                                 None if beta is None else shaped(beta), -1, layer.epsilon)

        return Op(norm, weights, trainable)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.LayerNormalization(), (3, 4)


class Embedding(FusedOp):
    """Each arm's table, gathered per arm (its gradient dense in the fused model; the arms still equal their
    runs)."""

    def refuse(self, layer: Any) -> str | None:
        return f"layer {layer.name} masks zeros" if layer.get_config().get("mask_zero") else None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        table = weights[0]

        def lookup(h: Any, training: bool) -> Any:
            ids = tf.cast(h, tf.int32)
            out = tf.gather(table, ids, batch_dims=1)
            op.taps[:] = [(ids, out)]  # Keras squares an embedding's gradient per occurrence (IndexedSlices)
            return out

        op = Op(lookup, weights, trainable)
        return op

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        return keras.layers.Embedding(7, 3), (5,)

    def sample(self, layer: Any, shape: tuple[int, ...], seed: int) -> Any:
        return np.random.default_rng(seed).integers(0, layer.input_dim, shape).astype(np.int32)


class KerasConv(FusedOp):
    """Depthwise, separable and transposed convolutions: each arm's own call of the `keras.ops` function the
    Keras layer calls, all in one graph step."""

    def refuse(self, layer: Any) -> str | None:
        config = layer.get_config()
        if config.get("data_format") == "channels_first":
            return f"layer {layer.name} is channels_first"
        return None

    def build(self, layers: Sequence[Any], weights: list[Any], trainable: list[bool], arms: int) -> Op:
        import tensorflow as tf

        layer = layers[0]

        def conv(h: Any, training: bool) -> Any:
            outs = []
            for a, x in enumerate(tf.unstack(h, arms)):
                mine = [w[a] for w in weights]
                outs.append(_keras_conv(layer, x, mine))
            return tf.stack(outs)

        return Op(conv, weights, trainable, layer.activation)

    def example(self, kind: str) -> tuple[Any, tuple[int, ...]] | None:
        import keras

        if kind == "DepthwiseConv2D":
            return keras.layers.DepthwiseConv2D(2, depth_multiplier=2, activation="relu"), (5, 5, 2)
        if kind == "Conv2DTranspose":
            return keras.layers.Conv2DTranspose(3, 2, strides=2, activation="relu"), (3, 3, 2)
        shape = (6, 2) if kind.endswith("1D") else (5, 5, 2)
        return getattr(keras.layers, kind)(3, 2, padding="same", activation="relu"), shape


def _keras_conv(layer: Any, x: Any, weights: list[Any]) -> Any:
    """One arm's convolution through the `keras.ops` function its Keras layer calls, plus its bias."""
    import keras

    config, kind = layer.get_config(), type(layer).__name__
    common = {"padding": config["padding"], "data_format": "channels_last", "dilation_rate": config["dilation_rate"]}
    if kind == "DepthwiseConv2D":
        out = keras.ops.depthwise_conv(x, weights[0], config["strides"], **common)
    elif kind.startswith("SeparableConv"):
        out = keras.ops.separable_conv(x, weights[0], weights[1], config["strides"], **common)
    else:
        out = keras.ops.conv_transpose(x, weights[0], config["strides"], output_padding=config["output_padding"],
                                       **common)
    if layer.use_bias:
        out = keras.ops.add(out, keras.ops.reshape(weights[-1], [1] * (len(out.shape) - 1) + [-1]))
    return out


# Keras layer class name -> its fused op: what the fused model covers, in one place.
OPS: dict[str, FusedOp] = {
    "InputLayer": Identity(), "Flatten": Flatten(), "Activation": Activation(), "Dropout": Dropout(),
    "Dense": Dense(), "Conv1D": Conv(), "Conv2D": Conv(),
    "MaxPooling1D": Pool(), "MaxPooling2D": Pool(), "AveragePooling1D": Pool(), "AveragePooling2D": Pool(),
    "GlobalAveragePooling1D": GlobalPool(), "GlobalAveragePooling2D": GlobalPool(),
    "GlobalMaxPooling1D": GlobalPool(), "GlobalMaxPooling2D": GlobalPool(),
    "BatchNormalization": BatchNorm(), "LSTM": Recurrent(), "GRU": Recurrent(), "SimpleRNN": Recurrent(),
    "LeakyReLU": Elementwise(), "ELU": Elementwise(), "ReLU": Elementwise(), "PReLU": PReLU(),
    "Normalization": Normalization(), "LayerNormalization": LayerNorm(), "Embedding": Embedding(),
    "DepthwiseConv2D": KerasConv(), "SeparableConv1D": KerasConv(), "SeparableConv2D": KerasConv(),
    "Conv2DTranspose": KerasConv(),
}


def covered() -> list[str]:
    """The Keras layers the fused model covers, by class name (InputLayer aside).

    Example:
        >>> "Dense" in covered() and "InputLayer" not in covered()
        True
    """
    return [name for name in OPS if name != "InputLayer"]


def layer_refused(layer: Any) -> str | None:
    """Why a Keras layer cannot be fused (None: it can): a kind without an op, or settings its op refuses."""
    kind = type(layer).__name__
    op = OPS.get(kind)
    if op is None:
        return f"its model has a {kind} layer ({layer.name}); the fused model covers {', '.join(covered())}"
    return op.refuse(layer)


def make_op(layers: Sequence[Any], stacked: Callable[[int], Any]) -> Op:
    """The fused op of a Keras layer, from that layer in every arm; `stacked(j)` is the layer's j-th weight for
    every arm, as a tf.Variable.

    Raises:
        ValueError: the layer has no op, or its op refuses its settings (`layer_refused` says which).
    """
    layer = layers[0]
    refused = layer_refused(layer)
    if refused is not None:
        raise ValueError(refused)
    weights = [stacked(j) for j in range(len(layer.weights))]
    return OPS[type(layer).__name__].build(layers, weights, [w.trainable for w in layer.weights], len(layers))


def _batch_norm(layer: Any, weights: list[Any], trainable: list[bool], arms: int) -> Op:
    import tensorflow as tf

    config = layer.get_config()
    names = [w.path.split("/")[-1] for w in layer.weights]
    gamma = weights[names.index("gamma")] if "gamma" in names else None
    beta = weights[names.index("beta")] if "beta" in names else None
    moving_mean, moving_var = weights[names.index("moving_mean")], weights[names.index("moving_variance")]
    momentum, epsilon = float(config["momentum"]), float(config["epsilon"])

    def norm(h: Any, training: bool) -> Any:
        import keras

        # Each arm through the ops its Keras layer calls, on its own tensor with its own (channels,) statistics:
        # the same reductions, so the same numbers (its gradients' cancellations included), bit for bit.
        outs = []
        for a, x in enumerate(tf.unstack(h, arms)):
            if training:  # Keras' moments (its variance stops the mean's gradient)
                mean, var = keras.ops.moments(x, axes=list(range(len(x.shape) - 1)))
                moving_mean[a].assign(moving_mean[a] * momentum + mean * (1.0 - momentum))
                moving_var[a].assign(moving_var[a] * momentum + var * (1.0 - momentum))
            else:
                mean, var = moving_mean[a], moving_var[a]
            outs.append(tf.nn.batch_normalization(x, mean, var, None if beta is None else beta[a],
                                                  None if gamma is None else gamma[a], epsilon))
        return tf.stack(outs)

    return Op(norm, weights, trainable)


def _recurrent(layer: Any, weights: list[Any], trainable: list[bool], arms: int) -> Op:
    import tensorflow as tf

    kind = type(layer).__name__
    cell = layer.cell
    act: Any = cell.activation
    rec_act: Any = getattr(cell, "recurrent_activation", None)  # SimpleRNN has none
    kernel, recurrent, bias = weights
    units = int(cell.units)
    sequences = bool(layer.return_sequences)

    def run(h: Any, training: bool) -> Any:
        steps = h.shape[2]
        state = tf.zeros([arms, tf.shape(h)[1], units])
        carry = tf.zeros_like(state)
        outputs = []
        for t in range(steps):
            x_t = h[:, :, t]
            if kind == "SimpleRNN":  # Keras' order: (x.W + b) + h.U, then the activation
                state = act(tf.einsum("kbi,kio->kbo", x_t, kernel) + bias[:, None, :]
                            + tf.einsum("kbu,kuo->kbo", state, recurrent))
            elif kind == "LSTM":
                z = (tf.einsum("kbi,kio->kbo", x_t, kernel) + tf.einsum("kbu,kuo->kbo", state, recurrent)
                     + bias[:, None, :])
                i, f, c, o = tf.split(z, 4, axis=-1)
                carry = rec_act(f) * carry + rec_act(i) * act(c)
                state = rec_act(o) * act(carry)
            else:  # GRU, reset_after (Keras' default): the recurrent bias is applied before the reset gate
                x_z, x_r, x_h = tf.split(tf.einsum("kbi,kio->kbo", x_t, kernel) + bias[:, 0][:, None, :], 3, -1)
                r_z, r_r, r_h = tf.split(tf.einsum("kbu,kuo->kbo", state, recurrent) + bias[:, 1][:, None, :], 3,
                                         -1)
                update, reset = rec_act(x_z + r_z), rec_act(x_r + r_r)
                state = update * state + (1 - update) * act(x_h + reset * r_h)
            outputs.append(state)
        return tf.stack(outputs, axis=2) if sequences else state

    return Op(run, weights, trainable)
