"""Fan-in and fan-out: the numbers every variance-scaling initializer divides by.

Keras' `compute_fans` guesses them from a kernel's shape alone, reading it as (inputs, outputs) or
(*receptive_field, in_channels, out_channels). That guess is right for Dense and plain convolutions and
wrong for kernels whose axes mean something else. The rules below count, for one forward pass, how many
input units feed one output unit (fan_in) and how many output units one input unit reaches (fan_out).
Pure functions of shapes and layer arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Fans = tuple[float, float]


def keras_fans(shape: Sequence[int], input_axes: Sequence[int] | None = None,
               output_axes: Sequence[int] | None = None) -> tuple[int, int]:
    """The fans Keras' `compute_fans` derives from a weight shape alone, or, given an einsum kernel's input and
    output axes (as `EinsumDense` hands them to its initializer since Keras 3.15), from those axes.

    Example:
        >>> keras_fans((3, 3, 16, 32))
        (144, 288)
        >>> keras_fans((32, 4, 8), (0,), (1, 2))  # an attention query kernel (d_model, heads, key_dim)
        (32, 32)
    """
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def dense_fans(in_features: int, units: int) -> Fans:
    """Dense: every output sums all `in_features` inputs; every input feeds all `units` outputs.

    Example:
        >>> dense_fans(64, 10)
        (64, 10)
    """
    return in_features, units


def conv_fans(kernel: Sequence[int], in_channels: int, filters: int, groups: int = 1) -> Fans:
    """Convolution with `groups`: channels split into groups that never mix.

    An output unit sums its receptive field over the in_channels/groups channels of its own group, so
    fan_in = prod(kernel) * in_channels / groups. An input unit reaches prod(kernel) positions in each of
    the filters/groups output channels of its group, so fan_out = prod(kernel) * filters / groups. Keras
    reads the kernel (*kernel, in_channels/groups, filters) and so counts fan_out `groups` times too high.

    Example:
        >>> conv_fans((3, 3), 16, 32, groups=4)
        (36, 72)
    """
    receptive = math.prod(kernel)
    return receptive * in_channels // groups, receptive * filters // groups


def conv_transpose_fans(kernel: Sequence[int], strides: Sequence[int], in_channels: int, filters: int) -> Fans:
    """Transposed convolution: each input unit is scattered, the kernel stamped at stride steps.

    One input unit reaches prod(kernel) positions of every output channel: fan_out = prod(kernel) * filters.
    One output position gathers, on average, from kernel/stride input positions per axis, over every
    input channel: fan_in = prod(kernel_i / stride_i) * in_channels (a mean, so it may be fractional).
    Keras reads the kernel (*kernel, filters, in_channels) as a forward kernel: it swaps the channel
    counts and ignores the strides.

    Example:
        >>> conv_transpose_fans((4, 4), (2, 2), 8, 16)
        (32.0, 256)
    """
    gathered = math.prod(max(1.0, k / s) for k, s in zip(kernel, strides))
    return gathered * in_channels, math.prod(kernel) * filters


def depthwise_fans(kernel: Sequence[int], depth_multiplier: int = 1) -> Fans:
    """Depthwise convolution: each channel is filtered on its own.

    An output unit sees one channel's receptive field: fan_in = prod(kernel). An input unit reaches
    prod(kernel) positions of its `depth_multiplier` output channels: fan_out = prod(kernel) * depth_multiplier.
    Keras reads the kernel (*kernel, in_channels, depth_multiplier) as a forward kernel and multiplies
    fan_in by the number of channels.

    Example:
        >>> depthwise_fans((3, 3), 2)
        (9, 18)
    """
    receptive = math.prod(kernel)
    return receptive, receptive * depth_multiplier


def pointwise_fans(in_channels: int, filters: int) -> Fans:
    """The 1x1 pointwise kernel of a separable convolution: a Dense over channels.

    Example:
        >>> pointwise_fans(32, 64)
        (32, 64)
    """
    return in_channels, filters


def recurrent_gate_fans(in_features: int, units: int) -> Fans:
    """One gate of a recurrent cell (SimpleRNN has 1, GRU 3, LSTM 4).

    Keras stores the gates side by side, kernel (in_features, gates * units), and so guesses
    fan_out = gates * units. But each gate is its own affine map followed by its own nonlinearity: a gate
    unit sums `in_features` inputs (fan_in), and an input feeds `units` units of that gate (fan_out). The
    same holds for the recurrent kernel with in_features = units.

    Example:
        >>> recurrent_gate_fans(8, 32)
        (8, 32)
    """
    return in_features, units


def embedding_fans(output_dim: int) -> Fans:
    """Embedding: a lookup, i.e. a Dense layer on a one-hot input.

    Exactly one input unit is non-zero, so an output unit sums one term: fan_in = 1. That input reaches
    all `output_dim` outputs: fan_out = output_dim. Keras' guess, (input_dim, output_dim), counts the
    whole vocabulary as inputs.

    Example:
        >>> embedding_fans(16)
        (1, 16)
    """
    return 1, output_dim


def einsum_fans(shape: Sequence[int], input_axes: Sequence[int], output_axes: Sequence[int]) -> Fans:
    """An einsum kernel (an attention projection): every output unit sums the units along its input axes, and
    every input unit reaches the units along its output axes. A query kernel (d_model, heads, key_dim) maps
    d_model inputs to heads x key_dim outputs; Keras before 3.15 read it as a convolution and took
    heads x d_model for its fan_in.

    Example:
        >>> einsum_fans((4, 8, 32), (0, 1), (2,))  # the output kernel (heads, value_dim, d_model)
        (32, 32)
    """
    return keras_fans(shape, input_axes, output_axes)
