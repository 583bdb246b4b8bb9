"""Typed schemas: structured configs that check types and keys when Hydra composes the config.

They live at the ConfigStore's root as `modelforge_schema_<name>`, apart from the YAML options and out of
`--help`'s group list, and each YAML option extends its schema (`defaults: [/modelforge_schema_model@_here_,
_self_]`), so `model.units=abc` fails at composition with the key in the message. Hydra's "not in struct"
error for a misspelled key has no suggestion; `check_override_keys` runs first on the command line and adds a
"did you mean".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from modelforge.errors import ConfigError

PREFIX = "modelforge_schema_"


@dataclass
class EarlyStoppingSchema:
    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass
class TrainerSchema:
    epochs: int = 20
    batch_size: int = 32
    shuffle: bool = True
    verbose: Any = "auto"  # auto, 0, 1 or 2, as Keras takes it
    deterministic: bool = True
    diagnose: bool = False
    objective: str = "auto"
    early_stopping: EarlyStoppingSchema = field(default_factory=EarlyStoppingSchema)


@dataclass
class ModelSchema:
    depth: int = 2
    units: int = 64
    layers: Any = None  # null, or a list of layer specs (mappings)


@dataclass
class DigitsSchema:
    name: str = "digits"
    validation_split: float = 0.2
    layout: str = "auto"


@dataclass
class MnistSchema:
    name: str = "mnist"
    validation_split: float = 0.2
    layout: str = "auto"
    url: str = ""  # set by conf/data/mnist.yaml
    sha256: str | None = None
    cache_dir: str | None = None
    max_samples: int | None = None


@dataclass
class SyntheticSchema:
    name: str = "synthetic"
    task: str = "classification"
    num_samples: int = 1024
    shape: list[int] = field(default_factory=lambda: [16])
    num_classes: int = 4
    num_targets: int = 1
    noise: float = 0.1
    validation_split: float = 0.2


SCHEMAS: dict[str, type] = {
    "trainer": TrainerSchema,
    "model": ModelSchema,
    "digits": DigitsSchema,
    "mnist": MnistSchema,
    "synthetic": SyntheticSchema,
}
# Which schemas a top-level config key may hold, for the key check.
_KEY_SCHEMAS: dict[str, tuple[type, ...]] = {
    "trainer": (TrainerSchema,),
    "model": (ModelSchema,),
    "data": (DigitsSchema, MnistSchema, SyntheticSchema),
}


def register() -> None:
    """Stores the schemas in Hydra's ConfigStore (idempotent, cheap: no TensorFlow)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=PREFIX + name, node=schema)


def _keys(schema: type, prefix: str) -> list[str]:
    found = []
    for f in fields(schema):
        key = f"{prefix}.{f.name}"
        found.append(key)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(default):
            found.extend(_keys(type(default), key))
    return found


def known_keys() -> list[str]:
    """Every dotted key the schemas define, e.g. `trainer.early_stopping.patience`."""
    keys: list[str] = []
    for top, schemas in _KEY_SCHEMAS.items():
        for schema in schemas:
            keys.extend(k for k in _keys(schema, top) if k not in keys)
    return keys


_OVERRIDE = re.compile(r"^(?P<key>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)=")


def check_override_keys(overrides: Sequence[str]) -> None:
    """Fails fast on a misspelled schema key (`trainer.epoch=3`), naming the closest real key.

    Only keys under a schema'd group (trainer, model, data) and without `+`/`~`/`++` are checked; a key
    with no close match is left to Hydra, which may know it from a user's config pack.

    Example:
        >>> check_override_keys(["trainer.epochs=3", "layer=conv"])
        >>> check_override_keys(["trainer.epoch=3"])
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: unknown config key 'trainer.epoch' (did you mean 'trainer.epochs'?)...
    """
    keys = known_keys()
    for override in overrides:
        match = _OVERRIDE.match(override)
        if not match or match["key"].split(".")[0] not in _KEY_SCHEMAS or match["key"] in keys:
            continue
        close = difflib.get_close_matches(match["key"], keys, n=1, cutoff=0.8)
        if close:
            siblings = [k for k in keys if k.rsplit(".", 1)[0] == close[0].rsplit(".", 1)[0]]
            raise ConfigError(
                f"unknown config key {match['key']!r} (did you mean {close[0]!r}?) in the override {override!r}; "
                f"keys there: {', '.join(siblings)}"
            )
