"""The config's front door, for the command line and the API alike: modelforge's entries in Hydra's ConfigStore,
and the checks of override keys, values, group options and job environments before Hydra starts.

The typed schemas are the twins of the run config's own dataclasses (`modelforge.core.config.fields.twin`), so a key
is typed in one place and its default in one other (the YAML). They sit at the ConfigStore's root as
`modelforge_schema_<name>`, out of `--help`'s group list; each YAML option extends its schema
(`defaults: [/modelforge_schema_model@_here_, _self_]`), so a YAML file's `units: abc` fails while Hydra
composes. On the command line, the same value is refused before that (`check_override_values`), with exit 2 and the
nearest value the key takes, as every other bad input is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from modelforge.core.config.fields import home, keys_of, nearest, takes, twin
from modelforge.core.config.metrics import objective_for, sweeper_direction
from modelforge.core.config.schema import GROUPS, SCHEMAS, Model, Trainer
from modelforge.errors import ConfigError, closest, invalid

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


def register() -> None:
    """Stores the schemas and the `${mf.pid:}` resolver (idempotent, cheap: no TensorFlow)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for name, cls in SCHEMAS.items():
        store.store(name=PREFIX + name, node=twin(cls))
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


def known_keys() -> list[str]:
    """Every dotted key the schemas define, e.g. `trainer.early_stopping.patience`.

    Example:
        >>> "trainer.early_stopping.patience" in known_keys(), "data.validation_split" in known_keys()
        (True, True)
    """
    keys: list[str] = []
    for top, schemas in _KEY_SCHEMAS.items():
        for cls in schemas:
            keys.extend(k for k in keys_of(cls, top) if k not in keys)
    return keys


_OVERRIDE = re.compile(r"^(?P<prefix>[+~]*)(?P<key>[A-Za-z_]\w*(?:\.[A-Za-z_][\w-]*)+)=")


def _typed(override: str) -> re.Match[str] | None:
    """The override's prefix and key when the key is under a typed group (trainer, model, data) and not in an
    open table, whose new keys (data.kwargs.n) are no typos and whose values Keras or modelforge check."""
    match = _OVERRIDE.match(override)
    if not match or match["key"].split(".")[0] not in _KEY_SCHEMAS or match["key"].startswith(OPEN_TABLES):
        return None
    return match


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
        match = _typed(override)
        if not match or match["prefix"] or match["key"] in keys:
            continue
        near = closest(match["key"], keys, cutoff=0.8)
        if near:
            siblings = [k for k in keys if k.rsplit(".", 1)[0] == near.rsplit(".", 1)[0]]
            raise ConfigError(
                f"unknown config key {match['key']!r} (did you mean {near!r}?) in the override {override!r}; "
                f"keys there: {', '.join(siblings)}"
            )


def _misfit(key: str, value: Any) -> tuple[str, Any] | None:
    """Why no schema field that holds `key` takes `value` (what it takes) and the nearest value it takes; None
    when one takes it, or no schema knows the key (Hydra then says what it makes of it). OmegaConf decides what
    it accepts while composing (`3` for a string field, as the YAML would); the words come from the typing engine.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    top, *path = key.split(".")
    misfits = []
    for cls in _KEY_SCHEMAS.get(top, ()):
        found = home(cls, path)
        if found is None:
            continue
        holder, name, hint = found
        try:
            OmegaConf.update(OmegaConf.structured(twin(holder)), name, value, merge=True)
            return None
        except OmegaConfBaseException:
            misfits.append((takes(hint), nearest(value, hint)))
    return misfits[0] if misfits else None


def check_override_values(overrides: Sequence[str]) -> None:
    """Refuses, before Hydra composes, a value the schema's type cannot hold (`model.units=abc`,
    `trainer.epochs=1.5`, one value of a sweep), naming it, what the key takes and the nearest value it takes.
    Interpolations, ranges and the sweepers' intervals are left to Hydra and OmegaConf, as are keys no schema
    types (an open table's, a user's own).

    Example:
        >>> check_override_values(["trainer.epochs=3", "trainer.epochs=range(1,4)", "model.units=${oc.env:U}"])
        >>> check_override_values(["trainer.epochs=1,2.5"])
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: trainer.epochs=2.5, one value of the sweep ...: trainer.epochs takes a whole...
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        match = _typed(override)
        if not match or "~" in match["prefix"]:
            continue
        try:
            parsed = parser.parse_override(override)
        except HydraException:
            continue  # Hydra's grammar error, which Hydra reports with the position
        values: list[Any] = []
        if parsed.is_choice_sweep() or parsed.is_range_sweep():
            values = list(parsed.sweep_iterator())
        elif not parsed.is_sweep_override():
            values = [parsed.value()]
        for value in values:
            misfit = _misfit(match["key"], value)
            if misfit is not None:
                takes, near = misfit
                key = match["key"]
                where = (f"{key}={'null' if value is None else value}, one value of the sweep {override!r}"
                         if parsed.is_sweep_override() else override)
                suggestion = f" (did you mean {key}={near}?)" if near is not None else ""
                raise ConfigError(f"{where}: {key} takes {takes}{suggestion}")


def _group_options(config_dirs: Sequence[str] = ()) -> Any:
    """A lookup of the config groups on modelforge's search path (its own, the user's packs, Hydra's, what plugins
    stored, and `config_dirs` given as --config-dir): a function of a group's name, returning its options, or
    None for no such group."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType
    from hydra.core.plugins import Plugins

    from modelforge.core.names import CONFIG_MODULE

    Plugins.instance()  # the plugins store their options (hydra/launcher=fused) when Hydra first scans them
    register()
    search_path = create_config_search_path(f"pkg://{CONFIG_MODULE}")
    for folder in config_dirs:  # where Hydra puts --config-dir: first
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(folder)}")
    repo = ConfigRepository(config_search_path=search_path)
    return lambda group: repo.get_group_options(group, ObjectType.CONFIG) if repo.group_exists(group) else None


# Overrides after which the search path is not the one modelforge knows: their groups are left to Hydra.
_OWN_SEARCH_PATH = ("hydra.searchpath", "+hydra.searchpath", "++hydra.searchpath")


def config_dirs(argv: Sequence[str]) -> list[str]:
    """The folders a command line adds to the search path with `--config-dir DIR` (or `-cd DIR`, `--config-dir=DIR`).

    Example:
        >>> config_dirs(["--config-dir", "conf", "model=small", "-cd=more"])
        ['conf', 'more']
    """
    found: list[str] = []
    for i, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        if flag in ("--config-dir", "-cd"):
            found.extend([value] if equals else argv[i + 1:i + 2])
    return found


def check_group_options(overrides: Sequence[str], config_dirs: Sequence[str] = ()) -> None:
    """Refuses, before Hydra composes, an option no config group has (`initializer=he_norml`), naming the
    nearest one, every valid one, and another group that has it (`layer=cnn`: model=cnn). Each value of a
    choice sweep is checked; globs, deletions and a search path changed on the command line are left to Hydra.

    Example:
        >>> check_group_options(["initializer=he_normal", "seed=1", "hydra/launcher=fused", "~experiment"])
        >>> check_group_options(["initializer=he_norml"])
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: unknown initializer option 'he_norml' (did you mean 'he_normal'?); valid:...
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    if any(o.startswith(_OWN_SEARCH_PATH) for o in overrides):
        return
    parser, options = OverridesParser.create(), None
    for override in overrides:
        if override.startswith("-") or "=" not in override:
            continue
        try:
            parsed = parser.parse_override(override)
        except HydraException:
            continue
        group = parsed.key_or_group
        if parsed.is_delete() or "." in group or parsed.value_type == ValueType.GLOB_CHOICE_SWEEP or (
                parsed.is_sweep_override() and not parsed.is_choice_sweep()):
            continue
        options = options or _group_options(config_dirs)
        valid = options(group)
        values = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [parsed.value()]
        for value in values if valid is not None else []:
            if value is None or str(value) in valid:
                continue
            others = [g for g in (*GROUPS, *OTHER_GROUPS) if g != group and str(value) in (options(g) or [])]
            hint = f"'{value}' is an option of {others[0]}: {others[0]}={value}" if others else ""
            raise invalid(f"{group} option", str(value), valid, hint)


# Beside the run config's groups, the groups a misplaced value may belong to (`layer=cnn` is a model).
OTHER_GROUPS = ("experiment", "hparams_search")


def refuse_widening(variables: Sequence[str], where: str) -> None:
    """Refuses a config that sets (or copies into a job) an environment variable that widens what code runs
    (`modelforge.core.config.targets.widens`): trust comes from the environment the command started with.

    Example:
        >>> refuse_widening(["OMP_NUM_THREADS"], "hydra.job.env_set")
        >>> refuse_widening(["MODELFORGE_TRUSTED_MODULES"], "hydra.job.env_set")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: hydra.job.env_set sets MODELFORGE_TRUSTED_MODULES, which widens what code...
    """
    from modelforge.core.config.targets import TRUST_ENV, widens

    for name in variables:
        if widens(str(name)):
            raise ConfigError(
                f"{where} sets {name}, which widens what code runs; a config may not set it. Trust comes from the "
                f"environment the command starts with, e.g. {TRUST_ENV}=mypkg python -m modelforge ...")


def check_environment(overrides: Sequence[str]) -> None:
    """Refuses overrides that put a widening variable into a job's environment (`hydra.job.env_set.X=...`,
    `hydra.job.env_set={X: ...}`, `hydra.job.env_copy=[X]`), before Hydra starts."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        if "hydra.job.env_" not in override:
            continue
        try:
            parsed = parser.parse_override(override)
        except HydraException:
            continue
        key = parsed.key_or_group
        values = list(parsed.sweep_iterator()) if parsed.is_sweep_override() else [parsed.value()]
        for value in values:
            if key.startswith("hydra.job.env_set."):
                refuse_widening([key.removeprefix("hydra.job.env_set.")], f"the override {override!r}")
            elif key in ("hydra.job.env_set", "hydra.job.env_copy"):
                names = list(value) if isinstance(value, (dict, list)) else [value]
                refuse_widening([str(n) for n in names], f"the override {override!r}")


def check_overrides(argv: Sequence[str]) -> None:
    """What the command line and `compose` check before Hydra composes: the environment a job would get, the keys,
    the values, the options (on the search path `--config-dir` extends)."""
    dirs = config_dirs(argv)
    overrides = [a for a in argv if not a.startswith("-") and a not in dirs]
    check_environment(overrides)
    check_override_keys(overrides)
    check_override_values(overrides)
    check_group_options(overrides, dirs)


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
