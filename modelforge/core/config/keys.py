"""What each config key means, in one table: whether it can change a run's numbers, and whether the arms of
one fused group may differ in it.

`KEYS` maps a dotted key (or a group: `logger` covers every `logger.*` key) to its `Meaning`; a key takes the
meaning of its longest listed prefix, and a key the table does not list is taken to change results and to be
shared by a group's arms (the safe reading of a key nobody classified). Three readers derive from it:

- the resume digest (`core.config.digest`): a run's record keeps the keys that can change its numbers, so an edit of
  any other key (how much it prints, where it logs) resumes;
- the sweep summary (`analysis.summary`): jobs are grouped by the swept keys that can change results;
- the fused grouping (`fused.groups`): jobs whose configs are equal but for per-arm keys train as one model.

A key whose arms may fuse only when the model they build has the same structure says so with `structure=True`:
`residual.name`, whose rules that add layers (`STRUCTURAL_RULES`) join the fused grouping key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelforge.core.registry import ARM_SCALARS


@dataclass(frozen=True)
class Meaning:
    """What a key can do.

    Attributes:
        results: whether a different value can change a run's numbers (its weights, history or objective).
        per_arm: whether the arms of one fused group may hold different values (each arm has its own).
        structure: whether arms may differ only where the model they build has the same structure.
        absent: for a key added after runs were recorded without it, the values that mean what its absence
            meant: at those values the key is left out of the record, so those runs' records still match.
    """

    results: bool
    per_arm: bool
    structure: bool = False
    absent: tuple[Any, ...] = ()


# Where a run logs or what it prints: never its numbers, so arms may differ too.
OUTPUT = Meaning(results=False, per_arm=True)
# An arm's identity: it changes the numbers, and each arm of a fused group has its own.
PER_ARM = Meaning(results=True, per_arm=True)
# What every arm of a group shares: the model, the data, how it trains.
SHARED = Meaning(results=True, per_arm=False)

KEYS: dict[str, Meaning] = {
    "seed": PER_ARM,
    "initializer": PER_ARM,
    # A rule that rescales weights by their place in a residual block (none, as before the rules existed).
    # A rule that adds layers (rezero, layerscale, deepnorm) changes the structure: arms fuse only with the same rule.
    "residual.name": Meaning(results=True, per_arm=True, structure=True, absent=("none",)),
    # Where a rule's gates or LayerScale start (rezero's 0 and layerscale's CaiT start, as before the keys).
    "residual.gate_init": Meaning(results=True, per_arm=True, absent=(0.0,)),
    "residual.init_value": Meaning(results=True, per_arm=True, absent=(None,)),
    # How init scales and learning rates follow width (standard, as before muP existed); the base model and the
    # readout's start under muP. Arms share it: it changes each weight's learning rate.
    "parametrization.name": Meaning(results=True, per_arm=False, absent=("standard",)),
    "parametrization.base": SHARED,
    "parametrization.readout": SHARED,
    # The model's shape and its layers' settings (free-form groups: every key under them).
    "model.depth": SHARED,
    "model.units": SHARED,
    "model.layers": SHARED,
    # A graph of named blocks, and the block that feeds the head (null: a model of depth/units or layers).
    "model.blocks": Meaning(results=True, per_arm=False, absent=(None,)),
    "model.output": Meaning(results=True, per_arm=False, absent=(None,)),
    # Where residual blocks put their layer normalization (pre, post; null: where their own `norm` key says).
    "model.norm": Meaning(results=True, per_arm=False, absent=(None,)),
    "layer": SHARED,
    "activation": SHARED,
    # The data: what is read, how and how it is split. Only where a download is cached cannot change it.
    "data._target_": SHARED, "data.color_mode": SHARED, "data.delimiter": SHARED, "data.encoding": SHARED,
    "data.features": SHARED, "data.image_size": SHARED, "data.interpolation": SHARED, "data.kwargs": SHARED,
    "data.layout": SHARED, "data.max_samples": SHARED, "data.name": SHARED, "data.noise": SHARED,
    "data.num_classes": SHARED, "data.num_samples": SHARED, "data.num_targets": SHARED, "data.path": SHARED,
    "data.sha256": SHARED, "data.shape": SHARED, "data.standardize": SHARED, "data.target": SHARED,
    "data.task": SHARED, "data.url": SHARED, "data.validation_split": SHARED, "data.x_key": SHARED,
    "data.x_val_key": SHARED, "data.y_key": SHARED, "data.y_val_key": SHARED,
    "data.cache_dir": OUTPUT,
    # The optimizer: its name, schedule and arguments are shared; the scalars the fused optimizer holds per arm
    # are each arm's own.
    "optimizer": SHARED,
    **{f"optimizer.{key}": PER_ARM for key in sorted({k for scalars in ARM_SCALARS.values() for k in scalars})},
    "trainer.epochs": SHARED,
    "trainer.batch_size": SHARED,
    "trainer.shuffle": SHARED,
    "trainer.deterministic": SHARED,
    "trainer.metrics": SHARED,
    "trainer.loss": SHARED,
    "trainer.class_weight": SHARED,
    "trainer.precision": SHARED,
    "trainer.strategy": SHARED,
    "trainer.early_stopping": SHARED,
    "trainer.reduce_on_plateau": SHARED,
    # The metric the run is judged by (and early stopping restores to): each arm keeps its own.
    "trainer.objective": PER_ARM,
    # The init health report reads the model before the fit and changes none of its numbers.
    "trainer.diagnose": OUTPUT,
    "trainer.diagnose_jacobian": OUTPUT,
    # muP's coordinate check measures a copy of the model before training: the run's numbers stay as they are.
    "trainer.coord_check": Meaning(results=False, per_arm=True, absent=(0,)),
    "trainer.verbose": OUTPUT,
    "logger": OUTPUT,
    "hydra": OUTPUT,
}


def listed(key: str) -> str | None:
    """The entry of `KEYS` that classifies `key` (its longest listed prefix), or None.

    An override's spelling is read too: `+`/`~` prefixes are dropped and a group path's `/` is a `.`.

    Example:
        >>> listed("trainer.early_stopping.patience"), listed("hydra/launcher"), listed("+logger.name")
        ('trainer.early_stopping', 'hydra', 'logger')
        >>> listed("experiment") is None
        True
    """
    parts = key.lstrip("+~").replace("/", ".").split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in KEYS:
            return prefix
    return None


def meaning(key: str) -> Meaning:
    """What `key` can do (`SHARED` for a key the table does not list).

    Example:
        >>> meaning("seed").per_arm, meaning("trainer.verbose").results, meaning("data.cache_dir").results
        (True, False, False)
        >>> meaning("optimizer.learning_rate") == PER_ARM, meaning("optimizer.name") == SHARED
        (True, True)
    """
    entry = listed(key)
    return SHARED if entry is None else KEYS[entry]


def changes_results(key: str) -> bool:
    """Whether a different value of `key` can change a run's numbers.

    Example:
        >>> changes_results("initializer"), changes_results("trainer.verbose"), changes_results("experiment")
        (True, False, True)
    """
    return meaning(key).results


def dotted(resolved: Mapping[str, Any], keep: Callable[[Meaning], bool], prefix: str = "") -> dict[str, Any]:
    """The resolved config as dotted keys, only those whose meaning `keep` takes; values as JSON gives them
    (a non-empty mapping is walked, anything else is a value).

    Example:
        >>> dotted({"seed": 1, "trainer": {"verbose": 0, "epochs": 3}}, lambda m: m.results)
        {'seed': 1, 'trainer.epochs': 3}
        >>> dotted({"seed": 1, "trainer": {"verbose": 0, "epochs": 3}}, lambda m: not m.per_arm)
        {'trainer.epochs': 3}
    """
    found: dict[str, Any] = {}
    for key, value in resolved.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            found.update(dotted(value, keep, f"{name}."))
        elif keep(found_meaning := meaning(name)) and value not in found_meaning.absent:
            found[name] = json.loads(json.dumps(value, default=str))
    return found
