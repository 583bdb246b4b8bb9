"""The init plan: one entry per weight saying which initializer it gets, from where, with which fans.

Pure: computed from the config alone, so `python -m modelforge.plan` prints it without TensorFlow and
the builder follows it exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelforge.data import DataInfo
from modelforge.errors import ConfigError
from modelforge.fans import keras_fans
from modelforge.policy import InitChoice, check_policy, kernel_choice, parse_initializer, role_choice, target_std
from modelforge.registry import SEEDED
from modelforge.specs import LayerSpec, layer_specs, to_plain


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
    """The decision for one weight; `as_dict()` is its `init_plan.json` form."""

    layer: str
    weight: str
    type: str
    activation: str | None
    choice: InitChoice
    fan_in: int | None
    fan_out: int | None
    target_std: float
    shape: tuple[int, ...]
    seed: int | None
    init_arg: str

    def as_dict(self) -> dict[str, Any]:
        return {
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
            "target_std": self.target_std,
            "shape": list(self.shape),
            "seed": self.seed,
        }


@dataclass
class Plan:
    """Specs, the data they were shaped for, and one entry per weight."""

    specs: list[LayerSpec]
    info: DataInfo
    entries: list[PlanEntry] = field(default_factory=list)

    def for_layer(self, name: str) -> list[PlanEntry]:
        return [e for e in self.entries if e.layer == name]

    def as_json(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.entries]


def run_seed(cfg: Mapping[str, Any]) -> int:
    """The config's `seed`, checked."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    return seed


def _entry(spec: LayerSpec, weight: Any, choice: InitChoice, seed: int) -> PlanEntry:
    fans = keras_fans(weight.shape) if choice.name not in ("zeros", "ones") else (None, None)
    fan_in, fan_out = fans
    std = target_std(choice, weight.shape, fan_in or 1, fan_out or 1)
    path_seed = derive_seed(seed, f"{spec.name}/{weight.name}") if choice.name in SEEDED else None
    return PlanEntry(spec.name, weight.name, spec.type, spec.activation, choice, fan_in, fan_out, std,
                     weight.shape, path_seed, weight.init_arg)


def make_plan(cfg: Mapping[str, Any]) -> Plan:
    """Works out the whole plan for a composed config.

    Raises:
        ConfigError: anything in the model, data or initializer config that cannot be used.
    """
    seed = run_seed(cfg)
    init_cfg = to_plain(cfg["initializer"])
    if init_cfg.get("name", "auto") == "auto":
        check_policy(init_cfg)
    else:
        parse_initializer(init_cfg, "initializer")
    specs, info = layer_specs(cfg)
    plan = Plan(specs, info)
    for spec in specs:
        for weight in spec.weights:
            if weight.role == "kernel":
                choice = kernel_choice(spec.activation or "linear", spec.activation_params, spec.initializer,
                                       init_cfg, spec.name)
            else:
                choice = role_choice(weight.role, spec.args.get(weight.init_arg), spec.name)
            plan.entries.append(_entry(spec, weight, choice, seed))
    return plan


def format_table(plan: Plan) -> str:
    """The plan as an aligned text table, one row per weight."""
    header = ("layer", "weight", "shape", "activation", "initializer", "source", "fan_in", "fan_out", "target_std")
    rows = [header]
    for e in plan.entries:
        rows.append((
            e.layer, e.weight, "x".join(map(str, e.shape)), e.activation or "-", e.choice.label, e.choice.source,
            "-" if e.fan_in is None else str(e.fan_in), "-" if e.fan_out is None else str(e.fan_out),
            f"{e.target_std:.4f}" if e.target_std else "0",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(math.prod(e.shape) for e in plan.entries)
    lines.append(f"{len(plan.entries)} weights, {total:,} values; input {list(plan.info.input_shape)} "
                 f"from {plan.info.name}, {plan.info.task} with {plan.info.num_outputs} outputs")
    return "\n".join(lines)
