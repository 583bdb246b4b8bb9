"""Initializers whose values modelforge computes itself: delta-orthogonal (by formula) and LSUV (from data).

Keras makes each such kernel with a plain base initializer (so model.keras names only Keras classes and loads
without modelforge); the builder then writes the values (`modelforge.initializers`). This module decides, per
kernel and before anything is built, what the base is, what is computed, and what the plan says about it.
Pure: no Keras, no NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelforge.core import lsuv
from modelforge.core.config.policy import InitChoice, activation_gain, stock_choice
from modelforge.core.model.layer_types import Weight
from modelforge.core.names import HEAD
from modelforge.errors import ConfigError


@dataclass(frozen=True)
class Resolved:
    """One kernel's initializer once computed ones are resolved.

    Attributes:
        shown: what the plan shows (`lsuv(orthogonal)`, `delta_orthogonal(gain=1.414)`).
        base: what Keras makes the kernel with before modelforge writes its values.
        computed: what the builder then computes (`kind` and its parameters), or None when the base is it.
        target_std: the std the values get, when known before build (None: LSUV measures it).
    """

    shown: InitChoice
    base: InitChoice
    computed: dict[str, Any] | None
    target_std: float | None = None


def _is_depthwise(weight: Weight) -> bool:
    return weight.init_arg == "depthwise_initializer"


def delta_centre(weight: Weight, kind: str) -> str:
    """What a delta-orthogonal convolution kernel holds at its centre tap, in words for the plan.

    Example:
        >>> delta_centre(Weight("kernel", (3, 3, 32, 16), "kernel", "kernel_initializer"), "conv2d")
        'c_in=32 > c_out=16: orthonormal columns at the centre (a projection; no isometry exists)'
    """
    if _is_depthwise(weight):
        return "a unit vector per channel at the centre tap, zeros elsewhere"
    rows, cols = weight.shape[-2:]
    # Keras stores a transposed convolution's kernel as (..., out, in): its input side is the last axis.
    c_in, c_out = (cols, rows) if kind.endswith("_transpose") else (rows, cols)
    if c_in > c_out:
        return (f"c_in={c_in} > c_out={c_out}: orthonormal columns at the centre (a projection; no isometry "
                "exists)")
    return "orthogonal at the centre tap (index k // 2 on each axis), zeros elsewhere"


def delta_std(shape: tuple[int, ...], gain: float, depthwise: bool) -> float:
    """The std of a delta-orthogonal kernel's values: the centre's squares spread over every tap.

    Example:
        >>> round(delta_std((3, 3, 16, 16), 1.0, False), 6) == round(1 / math.sqrt(16 * 9), 6)
        True
    """
    taps = math.prod(shape[:-2])
    if depthwise:
        return gain / math.sqrt(taps * shape[-1])
    return gain / math.sqrt(taps * max(shape[-2:]))


def _delta(choice: InitChoice, weight: Weight, layer: str, kind: str, activation: str,
           params: Mapping[str, Any]) -> Resolved:
    gain = activation_gain(activation, params)
    base = InitChoice("orthogonal", {"gain": gain}, choice.source)
    if len(weight.shape) < 3 or weight.axes is not None:  # no spatial taps (an attention projection's are heads)
        shown = InitChoice("delta_orthogonal", {"gain": gain}, choice.source,
                           note=f"not a convolution: orthogonal with the gain {gain:.4g}")
        return Resolved(shown, base, None)
    taps = weight.shape[:-2]
    if any(k % 2 == 0 for k in taps):
        raise ConfigError(f"initializer delta_orthogonal needs an odd kernel size, and {layer}/{weight.name} "
                          f"({kind}) is {'x'.join(map(str, taps))}: it has no centre tap (index k // 2 is off "
                          "centre); use an odd kernel_size (3), or give that layer its own initializer")
    centre = delta_centre(weight, kind)
    shown = InitChoice("delta_orthogonal", {"gain": gain}, choice.source, note=centre)
    computed = {"kind": "delta_orthogonal", "gain": gain, "depthwise": _is_depthwise(weight), "centre": centre}
    return Resolved(shown, base, computed, delta_std(weight.shape, gain, _is_depthwise(weight)))


def _lsuv(choice: InitChoice, weight: Weight, layer: str, kind: str, activation: str,
          params: Mapping[str, Any]) -> Resolved:
    if weight.axes is not None:
        raise ConfigError(f"initializer=lsuv cannot rescale {layer}/{weight.name} ({kind}): an attention "
                          "projection's output variance depends on the other three, so one scale per kernel has no "
                          "unit-variance solution; use orthogonal or the policy (initializer=auto) for attention "
                          "models")
    settings = dict(choice.params)
    left = lsuv.left_to_policy(settings, layer == HEAD, kind, weight.name)
    if left:
        stock = stock_choice(activation, params, left)
        return Resolved(stock, stock, None)
    base = (stock_choice(activation, params, "") if _is_depthwise(weight) else
            InitChoice(lsuv.BASE[0], dict(lsuv.BASE[1]), choice.source))
    shown = InitChoice("lsuv", {"base": base.label, **settings}, choice.source,
                       note=lsuv.start_note(_is_depthwise(weight)))
    return Resolved(shown, base, {"kind": "lsuv", **settings})


def resolve(choice: InitChoice, weight: Weight, layer: str, kind: str, activation: str | None,
            params: Mapping[str, Any]) -> Resolved:
    """The base and the computed part of one kernel's choice (plain choices pass through).

    Args:
        choice: the kernel's initializer, by the precedence of `policy.kernel_choice`.
        weight: the kernel.
        layer, kind: its layer's name and type.
        activation, params: the activation that follows it, and that activation's parameters.

    Example:
        >>> from modelforge.core.config.policy import parse_initializer
        >>> kernel = Weight("kernel", (64, 64), "kernel", "kernel_initializer")
        >>> name, lsuv = parse_initializer("lsuv", "initializer")
        >>> resolve(InitChoice(name, lsuv, "override"), kernel, "block1_dense", "dense", "relu", {}).base.name
        'orthogonal'
    """
    act = activation or "linear"
    if choice.name == "delta_orthogonal":
        return _delta(choice, weight, layer, kind, act, params)
    if choice.name == "lsuv":
        return _lsuv(choice, weight, layer, kind, act, params)
    return Resolved(choice, choice, None)
