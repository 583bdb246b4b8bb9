"""The init plan: one entry per weight saying which initializer it gets, from where, with which fans.

Pure: computed from the run config alone, so `python -m modelforge plan` prints it without TensorFlow and
the builder follows it exactly. Where modelforge's true fans differ from the ones Keras would guess from
the kernel's shape, the entry keeps both, and the Keras initializer the builder makes gets its scale
corrected so that Keras' guess yields the true fans' variance (the saved model stays plain Keras).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from modelforge.core import lsuv
from modelforge.core.config.datasets import DataInfo
from modelforge.core.config.policy import CUSTOM, InitChoice, fan_for_mode, kernel_choice, role_choice, target_std
from modelforge.core.config.schema import STRUCTURAL_RULES, RunConfig
from modelforge.core.init import mup, residual
from modelforge.core.init.computed import Resolved, resolve
from modelforge.core.model.fans import keras_fans
from modelforge.core.model.layer_types import Weight
from modelforge.core.model.places import Place, places, weight_place, with_branch_ends, with_shortcut_scales
from modelforge.core.model.specs import LayerSpec, layer_specs
from modelforge.core.names import activation_layer_name, counted
from modelforge.core.registry import INITIALIZER_CLASSES, SEEDED, VARIANCE_SCALING_PRESETS, get_activation


def derive_seed(run_seed: int, path: str) -> int:
    """A weight's seed from the run seed and the weight's path (`block1_dense/kernel`).

    A hash, not a counter: adding or changing one layer leaves every other layer's seed alone, and the
    same config gives the same seeds in any process.

    Example:
        >>> derive_seed(0, "block1_dense/kernel") == derive_seed(0, "block1_dense/kernel")
        True
    """
    digest = hashlib.blake2b(f"{run_seed}:{path}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class PlanEntry:
    """The decision for one weight; `as_dict()` is its `init_plan.json` form.

    Attributes:
        choice: what was decided and why (the name users see).
        build: the initializer name and parameters handed to Keras; differs from `choice` when the scale
            is corrected for true fans.
        fan_in, fan_out: the true fans of the layer's computation (None for biases and statistics).
        keras_fans: what Keras would have guessed from the shape, when that differs; else None.
        place: where its layer sits in a residual model (`core.model.places`), with `block`, the residual block,
            `branches` (L) and `depth` (m); None in a model without residual blocks.
        mup: under parametrization=mup, the weight's class (`input`, `hidden`, `readout`, `bias`), its width
            multiplier `m` and its learning-rate multiplier `lr` (`core.init.mup`); None otherwise.
    """

    layer: str
    weight: str
    type: str
    activation: str | None
    choice: InitChoice
    build: tuple[str, dict[str, Any]]
    fan_in: float | None
    fan_out: float | None
    keras_fans: tuple[int, int] | None
    target_std: float | None
    shape: tuple[int, ...]
    seed: int | None
    init_arg: str
    computed: dict[str, Any] | None = None
    place: str | None = None
    block: str | None = None
    branches: int | None = None
    depth: int | None = None
    mup: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        """`block1_dense/kernel`: the weight's name in seeds and in `Plan.measured`."""
        return f"{self.layer}/{self.weight}"

    def as_dict(self) -> dict[str, Any]:
        found = {
            "layer": self.layer,
            "weight": self.weight,
            "type": self.type,
            "activation": self.activation,
            "initializer": self.choice.name,
            "params": self.choice.params,
            "source": self.choice.source,
            "note": self.choice.note,
            "fan_in": self.fan_in,
            "fan_out": self.fan_out,
            "keras_fans": list(self.keras_fans) if self.keras_fans else None,
            "target_std": self.target_std,
            "shape": list(self.shape),
            "seed": self.seed,
        }
        if self.build != (self.choice.name, self.choice.params):
            found["keras_initializer"] = {"name": self.build[0], **self.build[1]}
        if self.computed is not None:
            found["computed"] = self.computed
        if self.place is not None:  # a residual model's: absent elsewhere, so other plans read as before
            found.update(place=self.place, block=self.block, branches=self.branches, depth=self.depth)
        if self.mup is not None:  # under parametrization=mup only
            found["mup"] = dict(self.mup)
        return found


@dataclass
class Plan:
    """Specs, the data they were shaped for, and one entry per weight.

    `measured` is filled when the model is built: weight path -> what LSUV measured (scale, iterations, final
    variance, converged, and the std the values ended with).
    """

    specs: list[LayerSpec]
    info: DataInfo
    entries: list[PlanEntry] = field(default_factory=list)
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)
    measured_s: float = 0.0

    def for_layer(self, name: str) -> list[PlanEntry]:
        return [e for e in self.entries if e.layer == name]

    def rate_multipliers(self) -> dict[str, float]:
        """Each weight's learning-rate multiplier by path, where it is not 1 (muP's per-weight rates)."""
        return {e.path: float(e.mup["lr"]) for e in self.entries if e.mup is not None and e.mup["lr"] != 1.0}

    def computed(self, kind: str) -> list[PlanEntry]:
        """The entries whose values the builder computes as `kind` (`lsuv`, `delta_orthogonal`)."""
        return [e for e in self.entries if e.computed is not None and e.computed["kind"] == kind]

    @property
    def sample_size(self) -> int:
        """How many training inputs the build needs (LSUV's `samples`; 0 when nothing is measured on data)."""
        return max((int((e.computed or {})["samples"]) for e in self.computed("lsuv")), default=0)

    def target_std(self, entry: PlanEntry) -> float | None:
        """The std the entry's values get: measured at build where LSUV set it, else the plan's."""
        return self.measured[entry.path]["std"] if entry.path in self.measured else entry.target_std

    def as_json(self) -> list[dict[str, Any]]:
        found = [e.as_dict() for e in self.entries]
        for record, entry in zip(found, self.entries):
            if entry.path in self.measured:
                record["lsuv"] = self.measured[entry.path]
                record["target_std"] = self.target_std(entry)
        return found


def _vs_params(choice: InitChoice) -> tuple[float, str, str] | None:
    if choice.name in VARIANCE_SCALING_PRESETS:
        return VARIANCE_SCALING_PRESETS[choice.name]
    if choice.name == "variance_scaling":
        return choice.params["scale"], choice.params["mode"], choice.params["distribution"]
    return None


def keras_build(
    choice: InitChoice, true_fans: tuple[float, float], guess: tuple[int, int]
) -> tuple[str, dict[str, Any]]:
    """The Keras initializer that gives `choice`'s variance with the true fans.

    Keras divides the scale by the fan it guesses from the shape; multiplying the scale by guess / true
    makes the drawn variance scale / true fan, while the initializer stays a plain `VarianceScaling`.
    """
    vs = _vs_params(choice)
    if vs is None or (tuple(true_fans) == tuple(guess) and choice.name in INITIALIZER_CLASSES):
        return choice.name, choice.params
    scale, mode, distribution = vs
    corrected = scale * fan_for_mode(*guess, mode) / fan_for_mode(*true_fans, mode)
    return "variance_scaling", {"scale": corrected, "mode": mode, "distribution": distribution}


def _entry(layer: str, type_: str, activation: str | None, weight: Weight, choice: InitChoice,
           seed: int, resolved: Resolved | None = None) -> PlanEntry:
    resolved = resolved or Resolved(choice, choice, None)
    base = resolved.base
    # Keras 3.15's EinsumDense hands an einsum kernel's axes to its initializer, so it reads their fans.
    guess = keras_fans(weight.shape, *weight.axes) if weight.axes else keras_fans(weight.shape)
    true = weight.fans
    std_fans = true or guess
    build = keras_build(base, true, guess) if true else (base.name, base.params)
    # An einsum kernel's values are drawn as its (input units) x (output units) matrix (`build.projection_values`).
    drawn = (int(std_fans[0]), int(std_fans[1])) if weight.axes else weight.shape
    std = target_std(base, drawn, *std_fans) if resolved.computed is None else resolved.target_std
    return PlanEntry(
        layer=layer, weight=weight.name, type=type_, activation=activation, choice=resolved.shown, build=build,
        fan_in=true[0] if true else None, fan_out=true[1] if true else None,
        keras_fans=guess if true and tuple(true) != guess else None,
        target_std=std,
        shape=weight.shape,
        # A user's class gets a derived seed too (when it takes one), so its draws repeat like the presets'.
        seed=derive_seed(seed, f"{layer}/{weight.name}") if base.name in SEEDED or base.name == CUSTOM else None,
        init_arg=weight.init_arg,
        computed=resolved.computed,
    )


def _forget_ones(entry: PlanEntry) -> PlanEntry:
    """An LSTM bias as Keras makes it with `unit_forget_bias` (its default): the initializer's values, but the
    forget gate's quarter (the second of input, forget, cell, output) at one. Its std is known where the
    initializer is a constant c: a quarter of ones among c's, |1 - c| sqrt(3) / 4.

    Example:
        >>> from modelforge.core.config.schema import RunConfig
        >>> lstm = RunConfig.from_mapping({**composed, "layer": {"type": "lstm"}})
        >>> bias = make_plan(lstm).entries[2]
        >>> bias.path, bias.choice.label, round(bias.target_std, 4)
        ('block1_lstm/bias', 'zeros, forget gate ones', 0.433)
    """
    choice = entry.choice
    constant = {"zeros": 0.0, "ones": 1.0}.get(choice.name, choice.params.get("value") if choice.name == "constant"
                                                 else None)
    std = abs(1.0 - float(constant)) * math.sqrt(3) / 4 if constant is not None else None
    shown = replace(choice, note="Keras' unit_forget_bias sets the forget gate's quarter to ones",
                    shown=f"{choice.label}, forget gate ones")
    return replace(entry, choice=shown, target_std=std)


def _prelu_entry(spec: LayerSpec, seed: int) -> PlanEntry:
    """PReLU's learned slope, one per channel, starting at the configured negative_slope."""
    channels = spec.output_shape[-1]
    shape = (*(1,) * (len(spec.output_shape) - 1), channels)
    choice = InitChoice("constant", {"value": float(spec.activation_params["negative_slope"])}, "default:prelu")
    weight = Weight("alpha", shape, "alpha", "alpha_initializer")
    return _entry(activation_layer_name(spec.name, "prelu"), "prelu", "prelu", weight, choice, seed)


def make_plan(run: RunConfig, input_shape: tuple[int, ...] | None = None, info: DataInfo | None = None) -> Plan:
    """Works out the whole plan for a run config (for `input_shape` samples, when given, not the data's).

    `info` describes the user's data, which only reading it tells (`modelforge.data.sources.describe`).

    Raises:
        ConfigError: anything in the model or data config that cannot be used.

    Example:
        >>> plan = make_plan(RunConfig.from_mapping(composed))
        >>> [(e.layer, e.weight, e.choice.name, e.choice.source) for e in plan.entries][0]
        ('block1_dense', 'kernel', 'he_normal', 'policy:relu')
    """
    seed, init_cfg = run.seed, run.initializer
    specs, info = layer_specs(run, input_shape, info)
    structural = STRUCTURAL_RULES.get(run.residual.name)
    if structural == "scale":  # a fixed factor on each shortcut (DeepNorm)
        specs = with_shortcut_scales(specs)
    elif structural is not None:  # a gate or LayerScale at each branch's end
        specs = with_branch_ends(specs, structural)
    plan = Plan(specs, info)
    where = places(specs)
    for spec in specs:
        for weight in spec.weights:
            resolved = None
            if weight.role == "kernel":
                choice = kernel_choice(spec.activation or "linear", spec.activation_params, spec.initializer,
                                       init_cfg, spec.name, spec.activation_policy)
                resolved = resolve(choice, weight, spec.name, spec.type, spec.activation, spec.activation_params)
            else:
                choice = role_choice(weight.role, spec.args.get(weight.init_arg), spec.name)
            entry = _entry(spec.name, spec.type, spec.activation, weight, choice, seed, resolved)
            if spec.type == "lstm" and weight.role == "bias" and spec.args.get("unit_forget_bias", True):
                entry = _forget_ones(entry)
            plan.entries.append(_placed(entry, where.get(spec.name)))
        if spec.activation and not get_activation(spec.activation).has_string:
            plan.entries.append(_placed(_prelu_entry(spec, seed), where.get(spec.name)))
    residual.check(run.residual.name, plan, str(getattr(init_cfg, "name", "auto")))
    if run.parametrization.name == "mup":  # muP's scales first; a residual rule rescales on top of them
        base, delta = (make_plan(RunConfig.from_mapping(mup.base_config(run, delta)), input_shape, info)
                       for delta in (False, True))
        mup.apply(run, plan, base, delta)
    residual.apply(run.residual, plan)
    return plan


def _placed(entry: PlanEntry, place: Place | None) -> PlanEntry:
    if place is None:
        return entry
    return replace(entry, place=weight_place(place.place, entry.type, entry.weight), block=place.block,
                   branches=place.branches, depth=place.depth)


def plan_digest(plan: Plan) -> str:
    """A short name for what the plan decides (seeds left out, so a sweep's seeds share one).

    Example:
        >>> from modelforge.core.config.schema import RunConfig
        >>> len(plan_digest(make_plan(RunConfig.from_mapping(composed))))
        8
    """
    entries = [{k: v for k, v in e.as_dict().items() if k != "seed"} for e in plan.entries]
    return hashlib.blake2b(json.dumps(entries, sort_keys=True, default=str).encode(), digest_size=4).hexdigest()


def plan_line(plan: Plan) -> str:
    """The plan in one line, for a job whose plan table another job of the sweep printed already."""
    values = sum(math.prod(e.shape) for e in plan.entries)
    return (f"plan {plan_digest(plan)}: {len(plan.entries)} weights, {values:,} values, as printed above "
            "(the whole plan is in init_plan.json)")


def _fan(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _std(entry: PlanEntry, plan: Plan) -> str:
    std = plan.target_std(entry)
    if std is None:
        return "at build" if entry.computed else "?"
    return f"{std:.4f}" if std else "0"


def format_table(plan: Plan) -> str:
    """The plan as an aligned text table, one row per weight; `*` marks fans that differ from Keras' guess."""
    header: tuple[str, ...] = ("layer", "weight", "shape", "activation", "initializer", "source", "fan_in",
                               "fan_out", "target_std")
    placed = any(e.place for e in plan.entries)  # a residual model's: each weight's place, after its layer
    if placed:
        header = (header[0], "block", "place", *header[1:])
    scaled = any(e.mup for e in plan.entries)  # muP's: each weight's class, width multiplier and rate multiplier
    if scaled:
        header = (*header, "mup", "m", "lr x")
    rows = [header]
    for e in plan.entries:
        mark = "*" if e.keras_fans else ""
        where = (e.block or "-", e.place or "-") if placed else ()
        mup_cells = (e.mup["class"], f"{e.mup['m']:.4g}", f"{e.mup['lr']:.4g}") if e.mup else ("-", "-", "-")
        rows.append((
            e.layer, *where, e.weight, "x".join(map(str, e.shape)), e.activation or "-", e.choice.label,
            e.choice.source, _fan(e.fan_in) + mark, _fan(e.fan_out) + mark, _std(e, plan),
            *(mup_cells if scaled else ()),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(math.prod(e.shape) for e in plan.entries)
    lines.append(f"{len(plan.entries)} weights, {total:,} values; input {list(plan.info.input_shape)} "
                 f"from {plan.info.name}, {plan.info.task} with {plan.info.num_outputs} outputs")
    lines.extend(_fan_notes([e for e in plan.entries if e.keras_fans]))
    ruled = [e for e in plan.entries if e.choice.source.startswith("residual:")]
    if ruled:
        lines.append(f"{ruled[0].choice.source}: {counted(len(ruled), 'weight')} set by their place, over L="
                     f"{ruled[0].branches} residual branches (docs/initialization.md#residual-rules)")
        if ruled[0].choice.source == "residual:deepnorm":
            alpha, beta = residual.deepnorm_factors(ruled[0].branches or 0)
            lines.append(f"  each shortcut x alpha = (2N)^(1/4) = {alpha:.4g}; value, attention-output and MLP "
                         f"kernels' std x beta = (8N)^(-1/4) = {beta:.4g}; N = L/2 = {(ruled[0].branches or 0) / 2:g}")
    lines.extend(_computed_notes(plan))
    lines.extend(_attention_notes(plan))
    if scaled:
        lines.append(mup.FOOTNOTE)
    return "\n".join(lines)


def _attention_notes(plan: Plan) -> list[str]:
    """The table's footnote for attention layers: each projection's own seed (Keras clones one initializer for the
    four, so modelforge draws and writes each after the build)."""
    seeded = [e for e in plan.entries if e.type == "multi_head_attention" and e.weight.endswith("kernel")
              and e.seed is not None]
    if not seeded:
        return []
    notes = ["attention: each projection's kernel drawn with its own seed and written after the build (Keras' "
             "MultiHeadAttention clones one initializer for its four kernels):"]
    for layer in dict.fromkeys(e.layer for e in seeded):
        seeds = ", ".join(f"{e.weight.split('/')[0]} {e.seed}" for e in seeded if e.layer == layer)
        notes.append(f"  {layer}: {seeds}")
    return notes


def _computed_notes(plan: Plan) -> list[str]:
    """The table's footnote for kernels whose values the builder computes (LSUV, delta-orthogonal)."""
    notes = []
    rescaled = plan.computed("lsuv")
    if rescaled:
        done = [plan.measured[e.path] for e in rescaled if e.path in plan.measured] if plan.measured else None
        notes.append(lsuv.footnote(rescaled[0].computed or {}, done))
    delta = plan.computed("delta_orthogonal")
    flat = [e.path for e in plan.entries if e.choice.name == "delta_orthogonal" and e.computed is None]
    if delta or flat:
        odd = [f"{e.path} ({e.choice.note})" for e in delta if not e.choice.note.startswith("orthogonal at")]
        notes.append("delta_orthogonal: an orthogonal matrix at each convolution kernel's centre tap, zeros elsewhere"
                     + ("; instead: " + ", ".join(odd) if odd else ""))
        if flat:
            notes.append("  not convolutions, so orthogonal with the same gain: " + ", ".join(flat))
    return notes


def _fan_notes(differ: list[PlanEntry]) -> list[str]:
    """The table's footnote: where Keras would guess other fans, and what modelforge did about it."""
    if not differ:
        return []
    names: dict[str, list[str]] = {"corrected": [], "given": [], "unused": []}
    for e in differ:
        kind = ("given" if e.choice.name == CUSTOM else
                "unused" if e.build[0] == "orthogonal" else
                "corrected" if e.build != (e.choice.name, e.choice.params) else "unused")
        names[kind].append(f"{e.layer}/{e.weight}")
    notes = ["* true fans of the layer's computation; Keras would guess "
             + ", ".join(f"{e.layer}/{e.weight} {e.keras_fans}" for e in differ) + " from the shape"]
    if names["corrected"]:
        notes.append("  scale corrected, so the values get the true fans' variance: " + ", ".join(names["corrected"]))
    if names["given"]:
        notes.append("  true fans handed to the custom initializer: " + ", ".join(names["given"]))
    if names["unused"]:
        notes.append("  their initializer does not use fans (e.g. orthogonal): " + ", ".join(names["unused"]))
    return notes
