"""Names users type, mapped to what they mean, with `get()` functions that fail clearly.

Pure: nothing here imports Keras, so plans and config checks stay fast. The Keras objects are looked up
by class name in `modelforge.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelforge.core import lsuv
from modelforge.errors import invalid


class Family(StrEnum):
    """How an activation treats the signal, which decides the initializer the policy gives it.

    The policy's rules in `conf/initializer/auto.yaml` follow these families, and the init health report
    counts dead units after rectifiers.
    """

    RECTIFIER = "rectifier"  # zero (or a small slope) below 0: He et al. 2015
    SATURATING = "saturating"  # symmetric, flat at both ends: Glorot & Bengio 2010
    SELF_NORMALIZING = "self_normalizing"  # SELU: Klambauer et al. 2017
    LINEAR = "linear"


@dataclass(frozen=True)
class Activation:
    """An activation name, its family and the parameters it takes.

    `family` is what the policy and the init health report read; `layer` names the Keras layer used when
    parameters are given (a plain string activation cannot carry them); `params` holds each parameter with
    its default (conf/activation/<name>.yaml carries the same, checked by tests/core/test_defaults.py);
    `has_string` says whether Keras also knows the name as a plain activation string (PReLU, with its learned
    slope, is a layer only).
    """

    name: str
    family: Family
    layer: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    has_string: bool = True


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("relu", Family.RECTIFIER),
        Activation("relu6", Family.RECTIFIER),
        Activation("elu", Family.RECTIFIER, layer="ELU", params={"alpha": 1.0}),
        Activation("gelu", Family.RECTIFIER),
        Activation("silu", Family.RECTIFIER),
        Activation("swish", Family.RECTIFIER),
        Activation("mish", Family.RECTIFIER),
        Activation("softplus", Family.RECTIFIER),
        Activation("leaky_relu", Family.RECTIFIER, layer="LeakyReLU", params={"negative_slope": 0.2}),
        # The slope starts at 0.25 as in He et al. 2015 and is learned per channel.
        Activation("prelu", Family.RECTIFIER, layer="PReLU", params={"negative_slope": 0.25}, has_string=False),
        Activation("selu", Family.SELF_NORMALIZING),
        Activation("tanh", Family.SATURATING),
        Activation("sigmoid", Family.SATURATING),
        Activation("hard_sigmoid", Family.SATURATING),
        Activation("softsign", Family.SATURATING),
        Activation("softmax", Family.SATURATING),
        Activation("linear", Family.LINEAR),
    ]
}


def get_activation(name: Any) -> Activation:
    """Returns the activation called `name`, or raises a `ConfigError` listing the valid ones."""
    key = "linear" if name is None else name
    if key not in ACTIVATIONS:
        raise invalid("activation", name, ACTIVATIONS)
    return ACTIVATIONS[key]


# Variance-scaling presets as (scale, mode, distribution), exactly as Keras defines them, plus Glorot &
# Bengio 2010's "standard" init U[-1/sqrt(n), 1/sqrt(n)]: variance 1/(3n), which Keras has no name for.
VARIANCE_SCALING_PRESETS: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "standard_uniform": (1.0 / 3.0, "fan_in", "uniform"),
}

# The preset each activation family's derivation gives, as conf/initializer/auto.yaml's `families` has it (a test
# holds the two equal). Kernels whose initializer takes its gain from the activation (delta_orthogonal) and LSUV's
# depthwise kernels read it even when `initializer=<name>` has replaced the policy.
FAMILY_PRESETS: dict[Family, str] = {
    Family.RECTIFIER: "he_normal",
    Family.SATURATING: "glorot_uniform",
    Family.SELF_NORMALIZING: "lecun_normal",
    Family.LINEAR: "glorot_uniform",
}

# Initializers whose values modelforge computes itself, after Keras has made the layer with a plain base
# initializer (so model.keras names only Keras classes): by formula (delta_orthogonal) or from data (lsuv).
COMPUTED = frozenset({"delta_orthogonal", "lsuv"})

# Every initializer name a config may use, with the parameters each accepts and their defaults. For Keras' classes
# these mirror Keras' constructor defaults; conf/initializer/*.yaml carries the same values. tests/core/test_defaults.py
# checks both.
INITIALIZERS: dict[str, dict[str, Any]] = {
    **{name: {} for name in VARIANCE_SCALING_PRESETS},
    "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
    "orthogonal": {"gain": 1.0},
    # Xiao et al. 2018: an orthogonal matrix at a convolution kernel's centre tap, zeros elsewhere; the gain is
    # that of the activation's variance-scaling rule (sqrt 2 after rectifiers, 1 otherwise).
    "delta_orthogonal": {},
    "lsuv": dict(lsuv.DEFAULTS),
    "random_normal": {"mean": 0.0, "stddev": 0.05},
    "random_uniform": {"minval": -0.05, "maxval": 0.05},
    "truncated_normal": {"mean": 0.0, "stddev": 0.05},
    "constant": {"value": 0.0},
    "zeros": {},
    "ones": {},
}

# Keras class names; the presets map to their own classes so saved models read naturally.
INITIALIZER_CLASSES: dict[str, str] = {
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform",
    "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform",
    "lecun_normal": "LecunNormal",
    "variance_scaling": "VarianceScaling",
    "orthogonal": "Orthogonal",
    "random_normal": "RandomNormal",
    "random_uniform": "RandomUniform",
    "truncated_normal": "TruncatedNormal",
    "constant": "Constant",
    "zeros": "Zeros",
    "ones": "Ones",
}

# Initializers that draw random values and so take a seed.
SEEDED = frozenset(INITIALIZERS) - {"zeros", "ones", "constant"}

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

OPTIMIZERS: dict[str, str] = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "nadam": "Nadam",
}


# Learning-rate schedules (`optimizer.schedule`), each with its parameters and their defaults (epochs count
# whole epochs; modelforge turns them into Keras' steps). The default is `constant`.
SCHEDULES: dict[str, dict[str, float]] = {
    "constant": {},
    "cosine": {"alpha": 0.0},  # cosine decay over the run to alpha x the initial rate
    "warmup_cosine": {"warmup_epochs": 1, "alpha": 0.0},  # linear warm-up from 0, then cosine decay
    "exponential": {"decay_rate": 0.9},  # x decay_rate every epoch (smoothly)
    "step": {"decay_rate": 0.1, "decay_epochs": 10},  # x decay_rate every decay_epochs epochs
}
DEFAULT_SCHEDULE = "constant"

# Values each optimizer keeps per weight besides the weight and its gradient (an upper bound: SGD keeps its
# momentum only when momentum > 0, RMSprop a second one only when centered), for the memory estimate.
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "nadam": 2, "rmsprop": 2, "sgd": 1, "adagrad": 1}

# The optimizer arguments that may differ between the arms of a fused group, with Keras' constructor defaults:
# a mirror of Keras', not modelforge's own (weight_decay None is 0.0 here), checked against Keras' signatures in
# tests/core/test_defaults.py.
_ADAM = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": 0.0}
ARM_SCALARS = {"adam": _ADAM, "adamw": {**_ADAM, "weight_decay": 0.004},
               "sgd": {"learning_rate": 0.01, "momentum": 0.0, "weight_decay": 0.0},
               "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                           "weight_decay": 0.0}}
# Argument names from Keras 2 that people still type, and the Keras 3 name each became.
RENAMED_ARGUMENTS = {"lr": "learning_rate"}


def get_optimizer_class(name: Any) -> str:
    """Returns the Keras optimizer class name for `name`, or raises a `ConfigError`."""
    if name not in OPTIMIZERS:
        raise invalid("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]
