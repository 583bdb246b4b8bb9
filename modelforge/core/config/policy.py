"""Which initializer each weight gets, and why.

Pure functions of the layer spec and the `initializer` config. Precedence, highest first:
1. an initializer set on the layer itself (source `layer`);
2. `initializer=<name>` chosen on the command line or in config (source `override`);
3. the policy by activation, `conf/initializer/auto.yaml` (source `policy:<activation>`): a rule for the
   activation itself, else the activation config's own rule, else the rule for its family in the registry.
Recurrent kernels, biases and normalization statistics keep their own defaults (source `default:<role>`)
unless the layer spec sets them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelforge.core import lsuv
from modelforge.core.checks import number
from modelforge.core.config.targets import import_target
from modelforge.core.registry import (
    DISTRIBUTIONS,
    FAMILY_PRESETS,
    INITIALIZERS,
    MODES,
    VARIANCE_SCALING_PRESETS,
    Family,
    get_activation,
)
from modelforge.errors import ConfigError, invalid

# Truncating a normal at two standard deviations shrinks its std by this factor; Keras divides it out.
TRUNCATED_NORMAL_STD = 0.87962566103423978

ROLE_DEFAULTS: dict[str, str | dict[str, Any]] = {
    "recurrent": "orthogonal",
    "bias": "zeros",
    "gamma": "ones",
    "beta": "zeros",
    "moving_mean": "zeros",
    "moving_variance": "ones",
    # A residual branch's gate starts at 0, so its block is the identity (ReZero); LayerScale at CaiT's 0.1.
    "gate": "zeros",
    "layer_scale": {"name": "constant", "value": 0.1},
    # A shortcut's fixed factor (DeepNorm's alpha, set by the rule): 1 leaves the stream as it is.
    "shortcut_scale": "ones",
}


@dataclass(frozen=True)
class InitChoice:
    """An initializer decision.

    Attributes:
        name: a name in `registry.INITIALIZERS`.
        params: its parameters (for `variance_scaling`: scale, mode, distribution).
        source: `layer`, `override`, `policy:<activation>` or `default:<role>`.
        note: why the parameters differ from the preset, if they do.
        shown: what the plan's table shows instead of `label`, where the layer changes the values the
            initializer draws (an LSTM's forget gate).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    note: str = ""
    shown: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        """A short human-readable form: `he_normal`, `variance_scaling(scale=1.92, ...)`."""
        if self.shown:
            return self.shown
        if self.name == CUSTOM:
            return str(self.params["_target_"]).rpartition(".")[2]
        if self.name == "lsuv":  # its keys are in init_plan.json; the table names the base it rescales
            return f"lsuv({self.params.get('base', 'orthogonal')})"
        if not self.params:
            return self.name
        if self.name == "variance_scaling":
            inner = ", ".join(_short(v) for v in self.params.values())
        else:
            inner = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.name}({inner})"


def fan_for_mode(fan_in: float, fan_out: float, mode: str) -> float:
    """The divisor a `VarianceScaling` initializer uses in `mode`, floored at 1 as Keras does."""
    if mode == "fan_in":
        n = fan_in
    elif mode == "fan_out":
        n = fan_out
    else:
        n = (fan_in + fan_out) / 2.0
    return max(1.0, n)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parse_initializer(value: Any, where: str) -> tuple[str, dict[str, Any]]:
    """Reads an initializer given as a name or a mapping with `name` and parameters, and checks it.

    Args:
        value: `"he_normal"` or `{"name": "variance_scaling", "scale": 2.0, "mode": "fan_in"}`.
        where: the config key it came from, for error messages.

    Returns:
        The name and its full parameters (defaults filled in).

    Example:
        >>> parse_initializer({"name": "variance_scaling", "mode": "fan_avg"}, "initializer")
        ('variance_scaling', {'scale': 1.0, 'mode': 'fan_avg', 'distribution': 'truncated_normal'})
    """
    if isinstance(value, Mapping) and "_target_" in value:
        return CUSTOM, _check_custom(value, where)
    if isinstance(value, str):
        name, given = value, {}
    elif isinstance(value, Mapping) and "name" in value:
        name = value["name"]
        given = {k: v for k, v in value.items() if k != "name"}
    else:
        raise ConfigError(
            f"{where}={value!r} must be an initializer name, a mapping with a 'name' key, or a mapping with a "
            "'_target_' naming your own keras.initializers.Initializer subclass"
        )
    if name not in INITIALIZERS:
        valid = [*INITIALIZERS, "auto"] if where == "initializer" else INITIALIZERS
        raise invalid(f"initializer in {where}", name, valid)
    allowed = INITIALIZERS[name]
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "none"
        raise ConfigError(f"{where}: initializer {name!r} takes no parameter {', '.join(unknown)}; valid: {takes}")
    params = {**allowed, **given}
    if name == "variance_scaling":
        _check_variance_scaling(params, where)
    if name == "lsuv":
        lsuv.check(params, where)
    return name, params


CUSTOM = "custom"


def is_initializer_class(cls: type) -> bool:
    """Whether `cls` derives from Keras' `Initializer`, read from its MRO (the core imports no Keras).

    Example:
        >>> is_initializer_class(dict)
        False
    """
    return any(base.__name__ == "Initializer" and base.__module__.split(".")[0] == "keras" for base in cls.__mro__)


def load_class(target: str, where: str) -> type:
    """Imports the initializer class a `_target_` names (`package.module.Class`) and checks it; calls nothing.

    A config file is code: this imports the module the `_target_` names. Refused, with nothing called: a
    module `core.config.targets` does not allow (before importing it), anything that is not a class, and a class that
    does not derive from `keras.initializers.Initializer`.

    Raises:
        ConfigError: the target cannot be imported, or is refused.

    Example:
        >>> load_class("subprocess.Popen", "model.layers[0].initializer")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: model.layers[0].initializer: _target_='subprocess.Popen' is refused...
    """
    cls = import_target(target, where, "keras.initializers.Initializer subclass", initializer=True)
    if not isinstance(cls, type):
        raise ConfigError(f"{where}: _target_={target!r} is not a class")
    if not is_initializer_class(cls):
        raise ConfigError(f"{where}: _target_={target!r} is not a keras.initializers.Initializer subclass; "
                          "modelforge calls only initializer classes")
    return cls


def _check_custom(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Checks that `_target_` names an importable class; returns its constructor arguments with `_target_`."""
    load_class(value["_target_"], where)
    return {k: v for k, v in value.items() if k != "name"}


def _check_variance_scaling(params: dict[str, Any], where: str) -> None:
    if params["mode"] not in MODES:
        raise invalid(f"{where}.mode", params["mode"], MODES)
    if params["distribution"] == "normal":  # Keras' own alias
        params["distribution"] = "truncated_normal"
    if params["distribution"] not in DISTRIBUTIONS:
        raise invalid(f"{where}.distribution", params["distribution"], DISTRIBUTIONS)
    params["scale"] = float(number(params["scale"], f"{where}.scale", minimum=0, open_min=True))


_VARIANT = {"normal": "_normal", "uniform": "_uniform"}


def _variant(name: str, distribution: str) -> str:
    """Swaps a preset for its normal or uniform twin: he_normal -> he_uniform."""
    twin = name.rsplit("_", 1)[0] + _VARIANT.get(distribution, "")
    # standard_uniform has no normal twin: Glorot & Bengio 2010 defined it uniform.
    return twin if distribution != "auto" and name in VARIANCE_SCALING_PRESETS and twin in VARIANCE_SCALING_PRESETS \
        else name


@dataclass(frozen=True)
class InitPolicy:
    """The policy by activation (`initializer=auto`), checked.

    Attributes:
        distribution: `auto` (each rule's own variant), `normal` or `uniform` (that variant of the family).
        rules: activation name -> initializer, for activations that need their own rule.
        families: activation family (see `registry.Family`) -> initializer.
        default: for an activation whose family has no rule.
    """

    distribution: str
    rules: Mapping[str, Any]
    families: Mapping[str, Any]
    default: Any

    def rule_for(self, activation: str, own_rule: Any = None) -> Any:
        """The rule for `activation`: its own entry in `rules`, its config's rule, its family's, the default.

        Example:
            >>> policy = InitPolicy("auto", {}, {"rectifier": "he_normal"}, "glorot_uniform")
            >>> policy.rule_for("gelu"), policy.rule_for("tanh")
            ('he_normal', 'glorot_uniform')
        """
        if activation in self.rules:
            return self.rules[activation]
        if own_rule is not None:
            return own_rule
        family = get_activation(activation).family.value
        return self.families.get(family, self.default)


def parse_initializer_config(value: Any) -> InitPolicy | InitChoice:
    """The `initializer` group, checked: the policy (`name: auto`) or one initializer for every kernel.

    Example:
        >>> parse_initializer_config({"name": "he_uniform"})
        InitChoice(name='he_uniform', params={}, source='override', note='')
    """
    if isinstance(value, Mapping) and "_target_" not in value and value.get("name", "auto") == "auto":
        return _parse_policy(value)
    name, params = parse_initializer(dict(value) if isinstance(value, Mapping) else value, "initializer")
    return InitChoice(name, params, "override")


POLICY_KEYS = ("name", "distribution", "rules", "families", "default")


def _parse_policy(auto: Mapping[str, Any]) -> InitPolicy:
    """Checks the `auto` policy: every key there (its defaults are in conf/initializer/auto.yaml), rules valid."""
    for key in auto:
        if key not in POLICY_KEYS:
            raise invalid("key in initializer (the auto policy)", key, POLICY_KEYS)
    missing = [k for k in POLICY_KEYS if k not in auto]
    if missing:
        raise ConfigError(f"the auto initializer policy has no {missing[0]}; it needs {', '.join(POLICY_KEYS)} "
                          "(conf/initializer/auto.yaml has them all)")
    knob = auto["distribution"]
    if knob not in ("auto", *_VARIANT):
        raise invalid("initializer.distribution for the auto policy", knob, ["auto", *_VARIANT])
    rules, families = dict(auto["rules"] or {}), dict(auto["families"] or {})
    for family in families:
        if family not in {f.value for f in Family}:
            raise invalid("activation family in initializer.families", family, [f.value for f in Family])
    for key, rule in [*((f"rules.{a}", r) for a, r in rules.items()),
                      *((f"families.{f}", r) for f, r in families.items()), ("default", auto["default"])]:
        parse_initializer(rule, f"initializer.{key}")
    return InitPolicy(knob, rules, families, auto["default"])


def policy_choice(activation: str, params: Mapping[str, Any], policy: InitPolicy,
                  own_rule: Any = None) -> InitChoice:
    """The policy's initializer for a kernel followed by `activation` (with its parameters).

    Leaky ReLU and PReLU keep He's derivation with their negative slope a: scale = 2 / (1 + a^2).

    Example:
        >>> policy = InitPolicy("auto", {"relu": "he_normal"}, {}, "glorot_uniform")
        >>> policy_choice("relu", {}, policy).name
        'he_normal'
    """
    name, init_params = parse_initializer(policy.rule_for(activation, own_rule), f"initializer.rules.{activation}")
    name = _variant(name, policy.distribution)
    source = f"policy:{activation}"
    slope = params.get("negative_slope")
    if slope is not None and name in ("he_normal", "he_uniform"):
        _, mode, distribution = VARIANCE_SCALING_PRESETS[name]
        scale = 2.0 / (1.0 + float(slope) ** 2)
        return InitChoice(
            "variance_scaling",
            {"scale": scale, "mode": mode, "distribution": distribution},
            source,
            note=f"{name} with scale 2/(1+a^2), a={slope}",
        )
    return InitChoice(name, init_params, source)


STOCK_POLICY = InitPolicy("auto", {}, {family.value: preset for family, preset in FAMILY_PRESETS.items()},
                          FAMILY_PRESETS[Family.LINEAR])


def stock_choice(activation: str, params: Mapping[str, Any], note: str) -> InitChoice:
    """What the stock policy (the activation family's preset) gives a kernel that `initializer=<name>` leaves to it.

    Example:
        >>> stock_choice("relu", {}, "LSUV leaves embeddings to the policy").name
        'he_normal'
    """
    return replace(policy_choice(activation, params, STOCK_POLICY), note=note)


def activation_gain(activation: str, params: Mapping[str, Any]) -> float:
    """The gain an orthogonal kernel needs before `activation`: sqrt of its variance-scaling rule's scale.

    sqrt(2) for the rectifiers (He), sqrt(2 / (1 + a^2)) for leaky ones with slope a, 1 for the rest (Glorot,
    LeCun); the rule is the stock policy's, whatever `initializer` says.

    Example:
        >>> round(activation_gain("relu", {}), 4), activation_gain("tanh", {})
        (1.4142, 1.0)
    """
    choice = policy_choice(activation, params, STOCK_POLICY)
    scale = choice.params["scale"] if choice.name == "variance_scaling" else VARIANCE_SCALING_PRESETS[choice.name][0]
    return math.sqrt(float(scale))


def kernel_choice(
    activation: str,
    activation_params: Mapping[str, Any],
    layer_initializer: Any,
    initializer: InitPolicy | InitChoice,
    layer_name: str,
    activation_rule: Any = None,
) -> InitChoice:
    """Applies the precedence (layer > override > policy) to one kernel."""
    if layer_initializer is not None:
        name, params = parse_initializer(layer_initializer, f"model.layers[{layer_name}].initializer")
        return InitChoice(name, params, "layer")
    if isinstance(initializer, InitChoice):
        return initializer
    return policy_choice(activation, activation_params, initializer, activation_rule)


def role_choice(role: str, layer_value: Any, layer_name: str) -> InitChoice:
    """The initializer of a non-kernel weight: the layer's own setting, else the role's default."""
    if layer_value is not None:
        name, params = parse_initializer(layer_value, f"model.layers[{layer_name}]")
        return InitChoice(name, params, "layer")
    name, params = parse_initializer(ROLE_DEFAULTS[role], f"default:{role}")
    return InitChoice(name, params, f"default:{role}")


def target_std(choice: InitChoice, shape: tuple[int, ...], fan_in: float, fan_out: float) -> float | None:
    """The standard deviation the drawn values should have.

    Variance scaling: sqrt(scale / n) with n from the mode, whatever the distribution (Keras corrects
    truncated normals, and a uniform on [-limit, limit] with limit = sqrt(3 scale / n) has that std).
    Orthogonal: gain / sqrt(max(rows, cols)) for the kernel flattened to (prod(shape[:-1]), shape[-1]),
    since its rows (or columns) are unit vectors. None for a user's own class: modelforge cannot know.
    """
    name, p = choice.name, choice.params
    if name in VARIANCE_SCALING_PRESETS or name == "variance_scaling":
        scale, mode, _ = VARIANCE_SCALING_PRESETS[name] if name in VARIANCE_SCALING_PRESETS else (
            p["scale"], p["mode"], "")
        return math.sqrt(float(scale) / fan_for_mode(fan_in, fan_out, str(mode)))
    if name == "orthogonal":
        rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
        return float(p["gain"]) / math.sqrt(max(rows, shape[-1]))
    if name == "random_normal":
        return float(p["stddev"])
    if name == "truncated_normal":
        return float(p["stddev"]) * TRUNCATED_NORMAL_STD
    if name == "random_uniform":
        return float(p["maxval"] - p["minval"]) / math.sqrt(12.0)
    if name == CUSTOM:
        return None
    return 0.0
