"""modelforge's entries in Hydra's ConfigStore and the checks of override keys before Hydra starts.

The typed schemas are made from the run config's own dataclasses (`modelforge.core.config`), so a key is typed
in one place and its default in one other (the YAML). They sit at the ConfigStore's root as
`modelforge_schema_<name>`, out of `--help`'s group list; each YAML option extends its schema
(`defaults: [/modelforge_schema_model@_here_, _self_]`), so `model.units=abc` fails while Hydra composes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Sequence
from functools import cache
from typing import Any, Optional

from modelforge.core.config import SCHEMAS, Model, Trainer
from modelforge.core.metrics import objective_for, sweeper_direction
from modelforge.errors import ConfigError, closest

PREFIX = "modelforge_schema_"
# Which schemas a top-level config key may hold, for the key check.
_KEY_SCHEMAS: dict[str, tuple[type, ...]] = {
    "trainer": (Trainer,),
    "model": (Model,),
    "data": tuple(cls for name, cls in SCHEMAS.items() if name not in ("trainer", "model")),
}
# Keys under these are open tables: a new key is added without Hydra's `+`. The policy's rules are open by
# design; each initializer option takes its own keys, which modelforge checks (naming the valid ones); layer,
# activation and optimizer keys go to Keras, which modelforge checks them against (with a did-you-mean) before
# any model is built.
OPEN_TABLES = ("initializer.", "layer.", "activation.", "optimizer.", "data.kwargs.")
_SIMPLE = (int, float, bool, str)


def _schema_type(hint: Any) -> Any:
    """The type OmegaConf checks for a field: scalars, Optional scalars, lists of scalars, nested schemas."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SIMPLE:
        return hint
    if dataclasses.is_dataclass(hint):
        return schema_class(hint)  # type: ignore[arg-type]
    if origin is tuple and args and args[0] in _SIMPLE:
        return list[args[0]]  # type: ignore[valid-type]
    inner = [a for a in args if a is not type(None)]
    if len(inner) == 1 and type(None) in args and inner[0] in _SIMPLE:
        return Optional[inner[0]]  # noqa: UP045 (OmegaConf 2.3 reads typing.Optional, not X | None)
    return Any


@cache
def schema_class(cls: type) -> type:
    """A mutable twin of a frozen run-config dataclass, with its types and no defaults, for OmegaConf.

    It is made a global of this module, importable by name: launchers pickle Hydra's ConfigStore to their
    workers, and a class pickled by value (cloudpickle) would bring copies of dataclasses' MISSING sentinel,
    which OmegaConf then takes for a default value.
    """
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _schema_type(hints[f.name])) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    name = f"{cls.__name__}Schema"
    schema = dataclasses.make_dataclass(name, fields)
    schema.__module__, schema.__qualname__ = __name__, name
    globals()[name] = schema
    return schema


# Made at import, so that a worker unpickling the ConfigStore finds every schema class here by name.
for _cls in SCHEMAS.values():
    schema_class(_cls)


def register() -> None:
    """Stores the schemas and the `${mf.pid:}` resolver (idempotent, cheap: no TensorFlow)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for name, cls in SCHEMAS.items():
        store.store(name=PREFIX + name, node=schema_class(cls))
    _local_submitit_folder(store)
    # `${mf.pid:}` in run folder names keeps runs started in the same microsecond by two processes apart.
    # Cached, so every job of a sweep (and Hydra's copy of the config in launcher workers) sees the launcher's.
    if not OmegaConf.has_resolver("mf.pid"):
        OmegaConf.register_new_resolver("mf.pid", lambda: os.getpid(), use_cache=True)
    # `${mf.direction:${trainer.objective},${data}}`: the sweeper's direction follows from the objective.
    if not OmegaConf.has_resolver("mf.direction"):
        OmegaConf.register_new_resolver("mf.direction", direction)


def direction(objective: str, data: Any) -> str:
    """Which way a sweeper should optimize `trainer.objective` for this data (`minimize` or `maximize`)."""
    task = data.get("task", "classification") if hasattr(data, "get") else "classification"
    return sweeper_direction(objective_for(str(objective), str(task)))


def _local_submitit_folder(store: Any) -> None:
    """hydra/launcher=submitit_local with a job folder that exists: the local executor does not replace %j.

    Stored after Hydra's plugin scan (which runs the submitit plugin's own registration), so it stays.
    """
    try:
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
    except ImportError:
        return
    store.store(group="hydra/launcher", name="submitit_local", provider="modelforge",
                node=LocalQueueConf(submitit_folder="${hydra.sweep.dir}/.submitit/local"))


def _keys(cls: type, prefix: str) -> list[str]:
    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{prefix}.{f.name}"
        found.append(key)
        if dataclasses.is_dataclass(hints[f.name]):
            found.extend(_keys(hints[f.name], key))
    return found


def known_keys() -> list[str]:
    """Every dotted key the schemas define, e.g. `trainer.early_stopping.patience`.

    Example:
        >>> "trainer.early_stopping.patience" in known_keys(), "data.validation_split" in known_keys()
        (True, True)
    """
    keys: list[str] = []
    for top, schemas in _KEY_SCHEMAS.items():
        for cls in schemas:
            keys.extend(k for k in _keys(cls, top) if k not in keys)
    return keys


_OVERRIDE = re.compile(r"^(?P<prefix>[+~]*)(?P<key>[A-Za-z_]\w*(?:\.[A-Za-z_][\w-]*)+)=")


def check_override_keys(overrides: Sequence[str]) -> None:
    """Fails fast on a misspelled schema key (`trainer.epoch=3`), naming the closest real key.

    Only keys under a typed group (trainer, model, data) without `+`/`~` are checked; a key with no close
    match is left to Hydra, which may know it from a user's config pack.

    Example:
        >>> check_override_keys(["trainer.epochs=3", "layer=conv", "data.kwargs.n=10"])
        >>> check_override_keys(["trainer.epoch=3"])
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: unknown config key 'trainer.epoch' (did you mean 'trainer.epochs'?)...
    """
    keys = known_keys()
    for override in overrides:
        match = _OVERRIDE.match(override)
        if (not match or match["prefix"] or match["key"].split(".")[0] not in _KEY_SCHEMAS or match["key"] in keys
                or match["key"].startswith(OPEN_TABLES)):  # an open table's new key (data.kwargs.n) is no typo
            continue
        near = closest(match["key"], keys, cutoff=0.8)
        if near:
            siblings = [k for k in keys if k.rsplit(".", 1)[0] == near.rsplit(".", 1)[0]]
            raise ConfigError(
                f"unknown config key {match['key']!r} (did you mean {near!r}?) in the override {override!r}; "
                f"keys there: {', '.join(siblings)}"
            )


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides as Hydra should read them: open tables and keys the schemas define take a value either way.

    `initializer.rules.gelu=he_uniform` adds a rule without `+` (the rules table is open by design),
    `optimizer.lr=0.1` reaches modelforge's own check of Keras' arguments (which suggests `learning_rate`), and
    `+model.layers=[...]` sets a key that is always there (Hydra's `+` would refuse it). All become `++`.

    Example:
        >>> normalize_overrides(["initializer.rules.gelu=he_uniform", "+model.layers=null", "seed=1"])
        ['++initializer.rules.gelu=he_uniform', '++model.layers=null', 'seed=1']
    """
    keys = set(known_keys())
    found = []
    for override in overrides:
        match = _OVERRIDE.match(override)
        if match and match["prefix"] in ("", "+") and (
            match["key"].startswith(OPEN_TABLES) or (match["prefix"] == "+" and match["key"] in keys)
        ):
            override = "++" + override.lstrip("+")
        found.append(override)
    return found


def to_plain(cfg: Any) -> Any:
    """A composed config (or any OmegaConf node) as plain containers, interpolations resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def quoted(value: str) -> str:
    """`value` as a quoted override value that Hydra's grammar reads back unchanged, whatever it holds (spaces,
    `=`, `,`, brackets, parentheses, quotes, non-ASCII, `${`): for paths given as overrides.

    Example:
        >>> quoted("/tmp/a b,(c)=[d]")
        "'/tmp/a b,(c)=[d]'"
        >>> quoted("it's")
        "'it\\\\'s'"
    """
    import re

    # Hydra unescapes backslashes only before a quote (and the closing one); OmegaConf reads `${` as a reference.
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return "'" + body.replace("${", "\\${") + "'"
