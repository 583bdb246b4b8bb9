"""The maximal update parametrization (muP; Yang et al. 2022, "Tensor Programs V", Table 3), per weight of the plan.

Each weight's width multiplier m compares it with the same weight (matched by path) in the base model, which
`parametrization.base` makes from the run's config. Its class follows from which of its dimensions grow with width:

- `hidden`: fan_in and fan_out grow. Init: the policy's scale over fan_in. Learning rate: / m (Adam, AdamW, RMSprop);
  the rate itself (SGD).
- `input`: only fan_out grows (an embedding, the first layer). Init: the policy's scale over fan_in. Learning rate: the
  rate itself (Adam's kind); x m, fan_out over the base's (SGD).
- `readout`: only fan_in grows (the head). Init: zero (`parametrization.readout=zero`), or variance 1/fan_in^2
  (`scaled`). Learning rate: / m.
- `bias`: vectors (biases, normalization's gamma and beta, gates). Init: the policy's. Learning rate: the rate itself
  (Adam's kind); x m (SGD).

These are the effective values: no forward multiplier on top (the learning rates are per variable, exactly:
`modelforge.optimizers`). At the base width every m is 1 and the rates are the standard ones. The initializer group
picks each kernel's distribution (normal, truncated, uniform), muP its scale; initializers that set their own scale
(orthogonal, LSUV, delta-orthogonal, a fixed std, a user's class) are refused. Pure: no Keras.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from modelforge.core.config.policy import InitChoice, fan_for_mode
from modelforge.core.registry import VARIANCE_SCALING_PRESETS
from modelforge.errors import ConfigError, closest

if TYPE_CHECKING:
    from modelforge.core.config.schema import RunConfig
    from modelforge.core.init.plan import Plan, PlanEntry

# The optimizers muP's rates are given for: Adam's kind (rates / m for hidden and readout) and SGD's.
ADAM_LIKE = ("adam", "adamw", "rmsprop")
OPTIMIZERS = (*ADAM_LIKE, "sgd")
# The plan table's footnote under muP.
FOOTNOTE = ("parametrization=mup (docs/initialization.md#mup): m = each weight's fan_in (input weights and vectors: "
            "fan_out) over the base model's; hidden and readout learning rates / m (SGD: input and vectors x m), the "
            "readout from zero; the initializer picks each kernel's distribution, muP its scale (fan_in)")
# Weights no optimizer trains (batch norm's statistics; DeepNorm's shortcut factor is a `scale` layer's): muP leaves
# them out.
_UNTRAINED = ("moving_mean", "moving_variance")


def doubled(value: Any) -> Any:
    """A base override's value at twice the width: every integer doubled (in lists and mappings too).

    Example:
        >>> doubled({"units": 64, "layers": [{"units": 32, "use_bias": True}]})
        {'units': 128, 'layers': [{'units': 64, 'use_bias': True}]}
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return 2 * value
    if isinstance(value, Mapping):
        return {k: doubled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [doubled(v) for v in value]
    return value


def base_config(run: RunConfig, delta: bool = False) -> dict[str, Any]:
    """The base model's config: the run's, with `parametrization.base`'s dotted overrides applied (and the standard
    parametrization, whose plan gives the base fans). `delta`: the base at twice its width (each override's integers
    doubled), whose fans tell which dimensions grow with width, as mup's delta model does.

    Example:
        >>> from modelforge.core.config.schema import RunConfig
        >>> run = RunConfig.from_mapping({**composed, "parametrization": {"name": "mup", "base": {"model.units": 3}}})
        >>> base_config(run)["model"]["units"], base_config(run, delta=True)["model"]["units"]
        (3, 6)
    """
    cfg = copy.deepcopy(dict(run.resolved))
    for key, value in run.parametrization.base.items():
        value = doubled(value) if delta else value
        node: Any = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                near = closest(part, node) if isinstance(node, dict) else None
                raise ConfigError(f"parametrization.base: {key!r} names no config key ('{'.'.join(parts[:i + 1])}' is "
                                  "not there" + (f"; did you mean '{'.'.join([*parts[:i], near])}'?" if near else "")
                                  + "); the base model is this config with keys changed, e.g. {model.units: 64}")
            if i == len(parts) - 1:
                node[part] = value
            node = node[part]
    cfg["parametrization"] = {"name": "standard"}
    return cfg


def check(run: RunConfig, plan: Plan) -> None:
    """Refuses what contradicts muP, naming both sides: an optimizer it gives no rates for, attention (its logits'
    1/d scaling is not built yet), and an initializer that sets its own scale."""
    name = run.optimizer.name
    if name not in OPTIMIZERS:
        raise ConfigError(f"parametrization=mup with optimizer={name}: muP's learning rates are given for "
                          f"{', '.join(OPTIMIZERS)}; choose one of them, or parametrization=standard")
    attention = next((e.layer for e in plan.entries if e.type == "multi_head_attention"), None)
    if attention is not None:
        raise ConfigError(f"parametrization=mup on a model with attention ({attention}): muP scales attention logits "
                          "by 1/d, which modelforge does not build yet; use parametrization=standard for attention "
                          "models")
    for entry in plan.entries:
        if entry.fan_in is not None and _scale(entry) is None:
            raise ConfigError(f"parametrization=mup with initializer {entry.choice.label} ({entry.path}): that "
                              "initializer sets its own scale, and muP sets each weight's scale by its width; choose "
                              "a variance-scaling initializer (auto, he_normal, glorot_uniform, lecun_normal, ...), "
                              "whose distribution muP keeps")


def _scale(entry: PlanEntry) -> tuple[float, str] | None:
    """The variance-scaling scale and distribution of the entry's choice (None: it is no variance scaling)."""
    name, params = entry.choice.name, entry.choice.params
    if entry.computed is not None:
        return None
    if name in VARIANCE_SCALING_PRESETS:
        scale, _, distribution = VARIANCE_SCALING_PRESETS[name]
        return float(scale), distribution
    if name == "variance_scaling":
        return float(params["scale"]), str(params["distribution"])
    return None


def weight_class(entry: PlanEntry, base: PlanEntry, delta: PlanEntry) -> tuple[str, float]:
    """The weight's muP class, from which of its fans grow from the base model to its double (`delta`), and its width
    multiplier m over the base (of fan_in for hidden and readout, of fan_out for input weights, of the size for
    vectors).

    Example:
        >>> from modelforge.core.init.plan import PlanEntry
        >>> def kernel(fan_in, fan_out):
        ...     return PlanEntry("d", "kernel", "dense", "relu", InitChoice("he_normal", {}, "policy:relu"),
        ...                      ("he_normal", {}), fan_in, fan_out, None, 0.1, (fan_in, fan_out), 1, "kernel")
        >>> weight_class(kernel(256, 256), kernel(64, 64), kernel(128, 128))
        ('hidden', 4.0)
        >>> weight_class(kernel(64, 10), kernel(64, 10), kernel(128, 10))  # at the base width: still the readout
        ('readout', 1.0)
    """
    fans = (entry.fan_in, entry.fan_out, base.fan_in, base.fan_out, delta.fan_in, delta.fan_out)
    if any(f is None for f in fans):
        return "bias", math.prod(entry.shape) / max(1, math.prod(base.shape))
    fan_in, fan_out, base_in, base_out, delta_in, delta_out = (float(f or 0) for f in fans)
    grows_in, grows_out = delta_in != base_in, delta_out != base_out
    if grows_in and grows_out:
        return "hidden", fan_in / base_in
    if grows_in:
        return "readout", fan_in / base_in
    return "input", fan_out / base_out


def rate(kind: str, m: float, optimizer: str) -> float:
    """The weight's learning-rate multiplier (Table 3's effective values).

    Example:
        >>> rate("hidden", 4.0, "adam"), rate("hidden", 4.0, "sgd"), rate("input", 4.0, "sgd")
        (0.25, 1.0, 4.0)
    """
    if kind == "readout":
        return 1.0 / m
    if optimizer in ADAM_LIKE:
        return 1.0 / m if kind == "hidden" else 1.0
    return 1.0 if kind == "hidden" else m


def _init(entry: PlanEntry, kind: str, readout: str) -> PlanEntry:
    """The entry with muP's init: fan-in scaling for input and hidden kernels, the readout at zero or at variance
    1/fan_in^2; vectors as the policy says."""
    found = _scale(entry)
    if kind == "bias" or found is None or entry.fan_in is None:
        return entry
    scale, distribution = found
    if kind == "readout" and readout == "zero":
        zeros = InitChoice("zeros", {}, "mup", note=f"{entry.choice.label}: muP's readout starts at zero")
        return replace(entry, choice=zeros, build=("zeros", {}), target_std=0.0, seed=None)
    if kind == "readout":
        scale, label = 1.0 / entry.fan_in, f"{entry.choice.label}, var 1/fan_in^2"
    elif VARIANCE_SCALING_PRESETS.get(entry.choice.name, (0, "", ""))[1] == "fan_in":
        return entry  # the policy's scale over fan_in already: muP's init
    else:
        label = f"{entry.choice.label} at fan_in"
    params = {"scale": scale, "mode": "fan_in", "distribution": distribution}
    shown = InitChoice("variance_scaling", params, "mup", note=f"{entry.choice.label}'s distribution at muP's scale",
                       shown=label)
    # Keras divides by the fan_in it guesses from the shape: the scale corrected so the values get the true one's.
    guess_in = entry.keras_fans[0] if entry.keras_fans else entry.fan_in
    corrected = scale * fan_for_mode(guess_in, 0.0, "fan_in") / entry.fan_in
    return replace(entry, choice=shown, build=("variance_scaling", {**params, "scale": corrected}),
                   target_std=math.sqrt(scale / entry.fan_in))


def apply(run: RunConfig, plan: Plan, base: Plan, delta: Plan) -> None:
    """Gives each trainable weight its class, m and learning-rate multiplier, and muP's init, in place (`base`: the
    base model's plan; `delta`: the base at twice its width)."""
    check(run, plan)
    by_path: Mapping[str, PlanEntry] = {e.path: e for e in base.entries}
    doubled_by_path: Mapping[str, PlanEntry] = {e.path: e for e in delta.entries}
    for i, entry in enumerate(plan.entries):
        if entry.weight in _UNTRAINED or entry.type == "scale":
            continue
        twin, wider = by_path.get(entry.path), doubled_by_path.get(entry.path)
        if twin is None or wider is None:
            raise ConfigError(f"parametrization=mup: {entry.path} has no counterpart in the base model "
                              f"(parametrization.base={dict(run.parametrization.base)}); the base model must have "
                              "the same layers, only narrower")
        kind, m = weight_class(entry, twin, wider)
        placed = _init(entry, kind, run.parametrization.readout)
        plan.entries[i] = replace(placed, mup={"class": kind, "m": m, "lr": rate(kind, m, run.optimizer.name)})
    if not any(e.mup and e.mup["class"] in ("hidden", "readout") for e in plan.entries):
        raise ConfigError(f"parametrization.base={dict(run.parametrization.base)} widens no weight's fan_in (the "
                          "base model at twice those values has the same hidden layers), so muP has no width to "
                          "follow; name the keys that set the widths, e.g. {model.units: 64}")

