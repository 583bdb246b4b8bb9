"""Every layer type a config may name: its Keras class, the shape it maps, and the weights it makes.

Pure shape arithmetic, no Keras: the plan and the shape check run before TensorFlow is imported. Shapes
are per sample (no batch axis), channels last, as Keras builds them by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelforge.core.checks import positive_int
from modelforge.core.model import fans as fan_rules
from modelforge.errors import ConfigError, invalid

Shape = tuple[int, ...]
Args = Mapping[str, Any]


@dataclass(frozen=True)
class Weight:
    """One weight a layer creates.

    Attributes:
        name: Keras' name for it (`kernel`, `bias`, `recurrent_kernel`, `depthwise_kernel`, ...).
        shape: its shape.
        role: `kernel` (chosen by the initializer policy), `recurrent`, `bias`, a normalization
            statistic (`gamma`, `beta`, `moving_mean`, `moving_variance`), or a residual branch's `gate` or
            `layer_scale`.
        init_arg: the Keras constructor argument that sets its initializer.
        fans: the true (fan_in, fan_out) of the layer's forward computation (see `fans.py`), for the
            weights a variance-scaling initializer may draw; None for biases and statistics.
        axes: an einsum kernel's (input axes, output axes) (an attention projection's): its values are drawn as
            the (input units) x (output units) matrix and reshaped; None for every other weight.
    """

    name: str
    shape: Shape
    role: str
    init_arg: str
    fans: tuple[float, float] | None = None
    axes: tuple[tuple[int, ...], tuple[int, ...]] | None = None


@dataclass(frozen=True, kw_only=True)
class LayerType:
    """What modelforge knows of one layer type.

    Attributes:
        name: the name configs use (`conv2d`).
        keras_class: the class in `keras.layers`.
        size_key: the argument holding its width (`units`, `filters`) or None.
        input_rank: the rank of one input sample it needs, or None for any.
        layout: the data layout it wants when it comes first (`flat`, `image`, `sequence`, `tokens`), or None.
        has_activation: whether it takes an `activation` argument.
        output_shape: maps (input shape, args) to the output shape.
        weights: maps (input shape, args) to the weights it creates.
        recurrent: whether its kernels include recurrent ones.
        merge: for a layer that takes two or more inputs (`add`, `concatenate`), maps (their shapes, args) to
            its output shape; None for a layer that takes one input.
        attends: whether it is an attention layer: it takes one input (self-attention) or two (a query, then
            the value it attends to), and its weights depend on both shapes (`VALUE_SHAPE` in their args).
        kept: the values per sample a layer keeps inside for the backward pass besides its output (attention's
            projections and scores), for the memory estimate; None: none.
    """

    name: str
    keras_class: str
    output_shape: Callable[[Shape, Args], Shape]
    weights: Callable[[Shape, Args], list[Weight]]
    size_key: str | None = None
    input_rank: int | None = None
    layout: str | None = None
    has_activation: bool = False
    recurrent: bool = False
    merge: Callable[[Sequence[Shape], Args], Shape] | None = None
    attends: bool = False
    kept: Callable[[Shape, Args], int] | None = None

    @property
    def default_activation(self) -> str:
        """What `activation=auto` means for this layer: Keras' own tanh for recurrent cells, else relu."""
        return "tanh" if self.recurrent else "relu"


def _ints(value: Any, n: int, key: str) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
    try:
        if len(values) != n:
            raise ConfigError(key)
        return tuple(positive_int(v, key) for v in values)
    except ConfigError:
        raise ConfigError(f"{key}={value!r} must be a positive integer or a list of {n} positive integers") from None


def _padding(args: Args) -> str:
    padding = str(args.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise invalid("padding", args.get("padding"), ["valid", "same"])
    return padding


def _window_out(size: int, k: int, stride: int, padding: str, dilation: int = 1) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    span = dilation * (k - 1) + 1
    return (size - span) // stride + 1


def _spatial(shape: Shape, args: Args, n: int, window_key: str, default_window: Any = None) -> Shape:
    window = _ints(args.get(window_key, default_window), n, window_key)
    # Pooling strides default to the window, convolution strides to 1, as in Keras.
    default_strides = window if window_key == "pool_size" else 1
    strides = _ints(args.get("strides") or default_strides, n, "strides")
    dilation = _ints(args.get("dilation_rate", 1), n, "dilation_rate")
    padding = _padding(args)
    out = tuple(_window_out(s, k, st, padding, d) for s, k, st, d in zip(shape[:n], window, strides, dilation))
    if any(o < 1 for o in out):
        raise ConfigError(
            f"{window_key}={list(window)} with padding={padding!r} does not fit an input of spatial size "
            f"{list(shape[:n])}: the output would be {list(out)}; use padding='same', a smaller {window_key}, "
            "or fewer downsampling layers"
        )
    return out


def _bias(args: Args, size: int) -> list[Weight]:
    return [Weight("bias", (size,), "bias", "bias_initializer")] if args.get("use_bias", True) else []


def _dense_out(shape: Shape, args: Args) -> Shape:
    return (*shape[:-1], args["units"])


def _dense_weights(shape: Shape, args: Args) -> list[Weight]:
    units = args["units"]
    fans = fan_rules.dense_fans(shape[-1], units)
    return [Weight("kernel", (shape[-1], units), "kernel", "kernel_initializer", fans), *_bias(args, units)]


def _conv(n: int) -> tuple[Callable[[Shape, Args], Shape], Callable[[Shape, Args], list[Weight]]]:
    def out(shape: Shape, args: Args) -> Shape:
        return (*_spatial(shape, args, n, "kernel_size"), args["filters"])

    def weights(shape: Shape, args: Args) -> list[Weight]:
        groups = args.get("groups", 1)
        cin, filters = shape[-1], args["filters"]
        if cin % groups or filters % groups:
            raise ConfigError(
                f"groups={groups} must divide both the input channels ({cin}) and filters ({filters})"
            )
        k = _ints(args["kernel_size"], n, "kernel_size")
        fans = fan_rules.conv_fans(k, cin, filters, groups)
        return [Weight("kernel", (*k, cin // groups, filters), "kernel", "kernel_initializer", fans),
                *_bias(args, filters)]

    return out, weights


def _conv_transpose(n: int) -> tuple[Callable[[Shape, Args], Shape], Callable[[Shape, Args], list[Weight]]]:
    def out(shape: Shape, args: Args) -> Shape:
        k = _ints(args["kernel_size"], n, "kernel_size")
        strides = _ints(args.get("strides", 1), n, "strides")
        dilation = _ints(args.get("dilation_rate", 1), n, "dilation_rate")
        padding = _padding(args)
        sizes = tuple(
            s * st if padding == "same" else (s - 1) * st + d * (kk - 1) + 1
            for s, kk, st, d in zip(shape[:n], k, strides, dilation)
        )
        return (*sizes, args["filters"])

    def weights(shape: Shape, args: Args) -> list[Weight]:
        k = _ints(args["kernel_size"], n, "kernel_size")
        strides = _ints(args.get("strides", 1), n, "strides")
        fans = fan_rules.conv_transpose_fans(k, strides, shape[-1], args["filters"])
        # Keras stores transposed kernels as (*k, filters, in_channels): output channels first.
        return [Weight("kernel", (*k, args["filters"], shape[-1]), "kernel", "kernel_initializer", fans),
                *_bias(args, args["filters"])]

    return out, weights


def _depthwise(n: int) -> tuple[Callable[[Shape, Args], Shape], Callable[[Shape, Args], list[Weight]]]:
    def out(shape: Shape, args: Args) -> Shape:
        return (*_spatial(shape, args, n, "kernel_size"), shape[-1] * args.get("depth_multiplier", 1))

    def weights(shape: Shape, args: Args) -> list[Weight]:
        k = _ints(args["kernel_size"], n, "kernel_size")
        dm = args.get("depth_multiplier", 1)
        # Keras names a depthwise layer's kernel plain `kernel` (a separable layer's is `depthwise_kernel`).
        return [Weight("kernel", (*k, shape[-1], dm), "kernel", "depthwise_initializer",
                       fan_rules.depthwise_fans(k, dm)),
                *_bias(args, shape[-1] * dm)]

    return out, weights


def _separable(n: int) -> tuple[Callable[[Shape, Args], Shape], Callable[[Shape, Args], list[Weight]]]:
    def out(shape: Shape, args: Args) -> Shape:
        return (*_spatial(shape, args, n, "kernel_size"), args["filters"])

    def weights(shape: Shape, args: Args) -> list[Weight]:
        k = _ints(args["kernel_size"], n, "kernel_size")
        dm = args.get("depth_multiplier", 1)
        return [
            Weight("depthwise_kernel", (*k, shape[-1], dm), "kernel", "depthwise_initializer",
                   fan_rules.depthwise_fans(k, dm)),
            Weight("pointwise_kernel", (*(1,) * n, shape[-1] * dm, args["filters"]), "kernel",
                   "pointwise_initializer", fan_rules.pointwise_fans(shape[-1] * dm, args["filters"])),
            *_bias(args, args["filters"]),
        ]

    return out, weights


GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _recurrent(name: str) -> tuple[Callable[[Shape, Args], Shape], Callable[[Shape, Args], list[Weight]]]:
    gates = GATES[name]

    def out(shape: Shape, args: Args) -> Shape:
        return (shape[0], args["units"]) if args.get("return_sequences", False) else (args["units"],)

    def weights(shape: Shape, args: Args) -> list[Weight]:
        units = args["units"]
        found = [
            Weight("kernel", (shape[-1], gates * units), "kernel", "kernel_initializer",
                   fan_rules.recurrent_gate_fans(shape[-1], units)),
            Weight("recurrent_kernel", (units, gates * units), "recurrent", "recurrent_initializer",
                   fan_rules.recurrent_gate_fans(units, units)),
        ]
        if args.get("use_bias", True):
            # GRU with reset_after (Keras' default) keeps separate input and recurrent biases.
            two = name == "gru" and args.get("reset_after", True)
            found.append(Weight("bias", (2, gates * units) if two else (gates * units,), "bias", "bias_initializer"))
        return found

    return out, weights


def _embedding_out(shape: Shape, args: Args) -> Shape:
    return (*shape, args["output_dim"])


def _embedding_weights(shape: Shape, args: Args) -> list[Weight]:
    for key in ("input_dim", "output_dim"):
        positive_int(args.get(key), key)
    return [Weight("embeddings", (args["input_dim"], args["output_dim"]), "kernel", "embeddings_initializer",
                   fan_rules.embedding_fans(args["output_dim"]))]


# The argument an attention layer's weight rule reads the attended value's shape from (never passed to Keras).
VALUE_SHAPE = "_value_shape"
# An attention layer's projections, in the order Keras makes their weights, each with its kernel's axes.
PROJECTIONS = ("query", "key", "value", "attention_output")


def _attention_sizes(shape: Shape, args: Args) -> tuple[int, int, int, int]:
    """(heads, key_dim, value_dim, output size) of a multi_head_attention layer on queries of `shape`."""
    heads = positive_int(args.get("num_heads"), "num_heads")
    key_dim = positive_int(args.get("key_dim"), "key_dim")
    value_dim = key_dim if args.get("value_dim") is None else positive_int(args["value_dim"], "value_dim")
    out = args.get("output_shape")
    out = shape[-1] if out is None else positive_int(out, "output_shape")
    for key, allowed in (("attention_axes", None), ("use_gate", False)):
        if args.get(key, allowed) != allowed:
            raise ConfigError(f"{key}={args[key]!r} is not planned by modelforge (attention over the steps of "
                              f"sequences, without a gate); leave {key} out")
    return heads, key_dim, value_dim, out


def _attention_out(shape: Shape, args: Args) -> Shape:
    return (*shape[:-1], _attention_sizes(shape, args)[3])


def _attention_weights(shape: Shape, args: Args) -> list[Weight]:
    """Keras' MultiHeadAttention: query, key and value kernels (features, heads, size) and an output kernel (heads,
    value_dim, output), each an EinsumDense with its bias; fans from each kernel's einsum axes, as Keras 3.15's
    `compute_fans(shape, input_axes, output_axes)` reads them."""
    heads, key_dim, value_dim, out = _attention_sizes(shape, args)
    source = tuple(args.get(VALUE_SHAPE) or shape)[-1]
    kernels = {"query": ((shape[-1], heads, key_dim), ((0,), (1, 2))),
               "key": ((source, heads, key_dim), ((0,), (1, 2))),
               "value": ((source, heads, value_dim), ((0,), (1, 2))),
               "attention_output": ((heads, value_dim, out), ((0, 1), (2,)))}
    found = []
    for name in PROJECTIONS:
        kernel, axes = kernels[name]
        found.append(Weight(f"{name}/kernel", kernel, "kernel", "kernel_initializer",
                            fan_rules.einsum_fans(kernel, *axes), axes))
        if args.get("use_bias", True):
            found.append(Weight(f"{name}/bias", kernel[-1:] if name == "attention_output" else kernel[1:], "bias",
                                "bias_initializer"))
    return found


def _attention_kept(shape: Shape, args: Args) -> int:
    """Per sample: the query, key and value projections, the logits and the softmax over (heads, steps, steps), and
    the heads' output (self-attention's sizes: the value's steps are taken as the query's)."""
    heads, key_dim, value_dim, _ = _attention_sizes(shape, args)
    steps = shape[0]
    return steps * heads * (2 * key_dim + 2 * value_dim) + 2 * heads * steps * steps


def _position_weights(shape: Shape, args: Args) -> list[Weight]:
    """A learned vector per position, added to the input: a lookup of the step's index (fans as an embedding's)."""
    return [Weight("embeddings", (shape[0], shape[-1]), "kernel", "embeddings_initializer",
                   fan_rules.embedding_fans(shape[-1]))]


def _scale_factor(shape: Shape, args: Args) -> list[Weight]:
    return [Weight("factor", (), "shortcut_scale", "factor_initializer")]


def _pool(n: int) -> Callable[[Shape, Args], Shape]:
    def out(shape: Shape, args: Args) -> Shape:
        return (*_spatial(shape, args, n, "pool_size", 2), shape[-1])

    return out


def _same(shape: Shape, args: Args) -> Shape:
    return shape


def _none(shape: Shape, args: Args) -> list[Weight]:
    return []


def _add(shapes: Sequence[Shape], args: Args) -> Shape:
    if len(set(shapes)) > 1:
        raise ConfigError(f"add takes inputs of one shape, not {' and '.join(str(list(s)) for s in shapes)}")
    return shapes[0]


def _concatenate(shapes: Sequence[Shape], args: Args) -> Shape:
    rank = len(shapes[0])
    axis = args.get("axis", -1)
    if not isinstance(axis, int) or isinstance(axis, bool) or not (1 <= axis <= rank or -rank <= axis <= -1):
        raise ConfigError(f"axis={axis!r} is not an axis of inputs of shape {list(shapes[0])} (1 to {rank}, or -1)")
    at = axis - 1 if axis > 0 else rank + axis  # the sample's axis (Keras counts the batch as axis 0)
    rest = {(len(s), s[:at] + s[at + 1:]) for s in shapes}
    if len(rest) > 1:
        raise ConfigError(f"concatenate takes inputs that differ only along axis {axis}, not "
                          f"{' and '.join(str(list(s)) for s in shapes)}")
    return (*shapes[0][:at], sum(s[at] for s in shapes), *shapes[0][at + 1:])


def _channels(shape: Shape, args: Args) -> Shape:
    return (shape[-1],)


def _flatten(shape: Shape, args: Args) -> Shape:
    return (math.prod(shape),)


def _norm_weights(*stats: str) -> Callable[[Shape, Args], list[Weight]]:
    def weights(shape: Shape, args: Args) -> list[Weight]:
        return [Weight(name, (shape[-1],), name, f"{name}_initializer") for name in stats]

    return weights


def _gate_weights(shape: Shape, args: Args) -> list[Weight]:
    return [Weight("alpha", (), "gate", "alpha_initializer")]


def _scale_weights(shape: Shape, args: Args) -> list[Weight]:
    return [Weight("gamma", (shape[-1],), "layer_scale", "gamma_initializer")]


_LAYOUT = {1: "sequence", 2: "image"}
_DIMS = {1: "1d", 2: "2d", 3: "3d"}


def _table() -> dict[str, LayerType]:
    types = [
        LayerType(name="dense", keras_class="Dense", output_shape=_dense_out, weights=_dense_weights,
                  size_key="units", layout="flat", has_activation=True),
        LayerType(name="embedding", keras_class="Embedding", output_shape=_embedding_out,
                  weights=_embedding_weights, input_rank=1, layout="tokens"),
        LayerType(name="flatten", keras_class="Flatten", output_shape=_flatten, weights=_none),
        LayerType(name="dropout", keras_class="Dropout", output_shape=_same, weights=_none),
        LayerType(name="activation", keras_class="Activation", output_shape=_same, weights=_none,
                  has_activation=True),
        LayerType(name="batch_normalization", keras_class="BatchNormalization", output_shape=_same,
                  weights=_norm_weights("gamma", "beta", "moving_mean", "moving_variance")),
        LayerType(name="layer_normalization", keras_class="LayerNormalization", output_shape=_same,
                  weights=_norm_weights("gamma", "beta")),
        LayerType(name="add", keras_class="Add", output_shape=_same, weights=_none, merge=_add),
        # modelforge's own layers (modelforge.layers), for a residual branch's end: ReZero's or SkipInit's
        # scalar gate, and LayerScale's per-channel scale.
        LayerType(name="gate", keras_class="Gate", output_shape=_same, weights=_gate_weights),
        LayerType(name="layer_scale", keras_class="LayerScale", output_shape=_same, weights=_scale_weights),
        LayerType(name="concatenate", keras_class="Concatenate", output_shape=_same, weights=_none,
                  merge=_concatenate),
        LayerType(name="multi_head_attention", keras_class="MultiHeadAttention", output_shape=_attention_out,
                  weights=_attention_weights, input_rank=2, attends=True, kept=_attention_kept),
        # modelforge's own: learned positions added to a sequence, and DeepNorm's fixed factor on a shortcut.
        LayerType(name="position_embedding", keras_class="PositionEmbedding", output_shape=_same,
                  weights=_position_weights, input_rank=2),
        LayerType(name="scale", keras_class="Scale", output_shape=_same, weights=_scale_factor),
    ]
    for n, dims in _DIMS.items():
        suffix = dims.upper()
        rank, layout = n + 1, _LAYOUT.get(n)
        out, weights = _conv(n)
        types.append(LayerType(name=f"conv{dims}", keras_class=f"Conv{suffix}", output_shape=out, weights=weights,
                               size_key="filters", has_activation=True, input_rank=rank, layout=layout))
        out, weights = _conv_transpose(n)
        types.append(LayerType(name=f"conv{dims}_transpose", keras_class=f"Conv{suffix}Transpose",
                               output_shape=out, weights=weights, size_key="filters", has_activation=True,
                               input_rank=rank, layout=layout))
        pools = (("max_pooling", "MaxPooling", _pool(n)), ("average_pooling", "AveragePooling", _pool(n)),
                 ("global_average_pooling", "GlobalAveragePooling", _channels),
                 ("global_max_pooling", "GlobalMaxPooling", _channels))
        for name, cls, shape in pools:
            types.append(LayerType(name=f"{name}{dims}", keras_class=f"{cls}{suffix}", output_shape=shape,
                                   weights=_none, input_rank=rank, layout=layout))
        if n < 3:
            out, weights = _depthwise(n)
            types.append(LayerType(name=f"depthwise_conv{dims}", keras_class=f"DepthwiseConv{suffix}",
                                   output_shape=out, weights=weights, has_activation=True, input_rank=rank,
                                   layout=layout))
            out, weights = _separable(n)
            types.append(LayerType(name=f"separable_conv{dims}", keras_class=f"SeparableConv{suffix}",
                                   output_shape=out, weights=weights, size_key="filters", has_activation=True,
                                   input_rank=rank, layout=layout))
    for name, cls in (("simple_rnn", "SimpleRNN"), ("lstm", "LSTM"), ("gru", "GRU")):
        out, weights = _recurrent(name)
        types.append(LayerType(name=name, keras_class=cls, output_shape=out, weights=weights, size_key="units",
                               input_rank=2, layout="sequence", has_activation=True, recurrent=True))
    return {t.name: t for t in types}


LAYER_TYPES: dict[str, LayerType] = _table()


def get_layer_type(name: Any) -> LayerType:
    """Returns the layer type called `name`, or raises a `ConfigError` listing the valid ones."""
    if name not in LAYER_TYPES:
        raise invalid("layer type", name, LAYER_TYPES)
    return LAYER_TYPES[name]
