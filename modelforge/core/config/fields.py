"""The typing engine of the run config: what a schema field's type takes, read once for every reader.

A field's type hint is read here and nowhere else: `typed` builds a frozen run-config dataclass from what Hydra
composed (checking every key and value), `twin` makes the dataclass OmegaConf checks while Hydra composes, and the
command line's value check (`modelforge.front_door`) finds a key's fields with `homes` and words its refusal with
`takes` and `nearest`. Pure Python: OmegaConf and Hydra stay above, in the front door.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, Optional, TypeVar, Union

from modelforge.core.checks import number
from modelforge.core.config.targets import TRUST_ENV
from modelforge.errors import ConfigError, closest

T = TypeVar("T")
# OmegaConf's mark of a value the user must give (`path: ???`).
MISSING = "???"
# The option a user's own config of a group extends to get every key it does not set itself.
EXTENDS = {"model": "mlp", "trainer": "default"}
# The scalar types a field holds, alone, optional or as a list's items.
SIMPLE = (int, float, bool, str)
# How a refusal names what a field takes: one value, and a list's items.
_TAKES = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
_ITEMS = {int: "whole numbers", float: "numbers", bool: "true or false values", str: "strings"}


def optional(hint: Any) -> tuple[Any, bool]:
    """The type inside `X | None` (or `Optional[X]`) and True; any other hint as it is and False.

    Example:
        >>> optional(int | None), optional(str)
        ((<class 'int'>, True), (<class 'str'>, False))
    """
    args = typing.get_args(hint)
    inner = [a for a in args if a is not type(None)]
    return (inner[0], True) if type(None) in args and len(inner) == 1 else (hint, False)


def takes(hint: Any) -> str:
    """What a field of this type takes, in words.

    Example:
        >>> takes(int), takes(tuple[float, ...]), takes(float | None)
        ('a whole number', 'a list of numbers', 'a number or null')
    """
    base, is_optional = optional(hint)
    if base in _TAKES:
        words = _TAKES[base]
    else:
        items = typing.get_args(base)
        words = f"a list of {_ITEMS[items[0]]}" if items and items[0] in _ITEMS else f"a value of type {base}"
    return words + (" or null" if is_optional else "")


def nearest(value: Any, hint: Any) -> Any:
    """The value of the field's type closest to a value it cannot hold (None: no such thing).

    Example:
        >>> nearest("2.6", int), nearest(0.2, int), nearest("ture", bool), nearest("abc", int)
        (3, 1, 'true', None)
    """
    base, _ = optional(hint)
    if base is int and not isinstance(value, bool):
        try:
            near = round(float(value))
        except (TypeError, ValueError, OverflowError):
            return None
        return near if near > 0 or float(value) <= 0 else 1
    if base is bool:
        return closest(str(value).lower(), ["true", "false"])
    return None


def keys_of(cls: type, prefix: str) -> Iterator[str]:
    """Every dotted key a schema defines under `prefix`, a nested schema's own key before its keys.

    Example:
        >>> from modelforge.core.config.schema import Trainer
        >>> "trainer.early_stopping.patience" in list(keys_of(Trainer, "trainer"))
        True
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from keys_of(hints[f.name], f"{prefix}.{f.name}")


def home(cls: type, path: list[str]) -> tuple[type, str, Any] | None:
    """The schema (`cls` or one nested in it) that holds the value at `path`, the field's name and its type;
    None when `path` names no field or a nested schema rather than a value.

    Example:
        >>> from modelforge.core.config.schema import Trainer
        >>> home(Trainer, ["early_stopping", "patience"])
        (<class 'modelforge.core.config.schema.EarlyStopping'>, 'patience', <class 'int'>)
    """
    node: Any = cls
    for name in path[:-1]:
        node = typing.get_type_hints(node).get(name)
        if not dataclasses.is_dataclass(node):
            return None
    hints = typing.get_type_hints(node)
    if not path or path[-1] not in hints or dataclasses.is_dataclass(hints[path[-1]]):
        return None
    return node, path[-1], hints[path[-1]]


def _omegaconf_type(hint: Any) -> Any:
    """The type OmegaConf checks for a field: scalars, Optional scalars, lists of scalars, nested schemas."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in SIMPLE:
        return hint
    if dataclasses.is_dataclass(hint):
        return twin(hint)  # type: ignore[arg-type]
    if origin is tuple and args and args[0] in SIMPLE:
        return list[args[0]]  # type: ignore[valid-type]
    inner, is_optional = optional(hint)
    if is_optional and inner in SIMPLE:
        return Optional[inner]  # noqa: UP045 (OmegaConf 2.3 reads typing.Optional, not X | None)
    return Any


@cache
def twin(cls: type) -> type:
    """A mutable twin of a frozen run-config dataclass, with its types and no defaults, for OmegaConf.

    The twin is made a global of `cls`'s own module, importable by name: launchers pickle Hydra's ConfigStore to
    their workers, and a class pickled by value (cloudpickle) would bring copies of dataclasses' MISSING
    sentinel, which OmegaConf then takes for a default value. The schema module makes its twins when imported.
    """
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _omegaconf_type(hints[f.name])) for f in dataclasses.fields(cls)]
    name = f"{cls.__name__}Schema"
    made = dataclasses.make_dataclass(name, fields)
    made.__module__, made.__qualname__ = cls.__module__, name
    setattr(sys.modules[cls.__module__], name, made)
    return made


def typed(cls: type[T], given: Mapping[str, Any], where: str) -> T:
    """Builds the dataclass `cls` from a mapping: every key known and present, every value of its type.

    Example:
        >>> from modelforge.core.config.schema import EarlyStopping
        >>> typed(EarlyStopping, {"enabled": True, "monitor": "val_loss", "patience": 2, "min_delta": 0,
        ...                       "restore_best_weights": True}, "trainer.early_stopping").min_delta
        0.0
    """
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where}={given!r} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(given, [f.name for f in fields], f"{where}.", required=True)
    values = {f.name: value(hints[f.name], given[f.name], f"{where}.{f.name}") for f in fields}
    return cls(**values)


def check_keys(given: Mapping[str, Any], names: list[str], where: str, required: bool) -> None:
    """Refuses a key of `given` not in `names` (naming the nearest), one that would widen trust, and (when
    `required`) a name `given` lacks."""
    for key in given:
        if "trust" in str(key).lower():  # the config is what is not trusted: it cannot widen the allowlist
            raise ConfigError(f"'{where}{key}': a config cannot say which packages to trust, since a config is "
                              f"what is not trusted; name them in the environment instead: {TRUST_ENV}=name,... "
                              "python -m modelforge ...")
        if key not in names:
            near = closest(key, names)
            meant = f" (did you mean '{where}{near}'?)" if near else ""
            raise ConfigError(f"unknown config key '{where}{key}'{meant}; keys there: {', '.join(names)}")
    if required:
        missing = [n for n in names if n not in given]
        if missing:
            # A group option of the user's own that sets only what it changes (model.layers) lacks the rest.
            extend = (f"; a {where[:-1]} config of your own takes the others from one of modelforge's when its "
                      f"first lines are `defaults: [{EXTENDS[where[:-1]]}, _self_]`" if where[:-1] in EXTENDS else "")
            raise ConfigError(f"the config has no {where}{missing[0]}; it is needed (keys there: {', '.join(names)})"
                              + extend)


def value(hint: Any, given: Any, key: str) -> Any:
    """`given` checked against the type `hint` (and converted: int to float, list to tuple).

    Example:
        >>> value(tuple[float, ...], [1, 2], "trainer.x"), value(int | None, None, "model.units")
        ((1.0, 2.0), None)
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(given, str) and given == MISSING:
        raise ConfigError(f"{key} has no value, and it needs one: set {key}=... on the command line or in your "
                          "config")
    if hint is Any or origin in (Mapping, dict):
        return given
    if origin in (Union, types.UnionType):
        if given is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return value(inner, given, key)
    if dataclasses.is_dataclass(hint):
        return typed(hint, given, key)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(given, (list, tuple)):
            raise ConfigError(f"{key}={given!r} must be a list")
        return tuple(value(args[0], v, f"{key}[{i}]") for i, v in enumerate(given))
    if hint is float:
        return float(number(given, key))
    if hint is int:
        return int(number(given, key, integer=True))
    if hint is bool and not isinstance(given, bool):
        raise ConfigError(f"{key}={given!r} must be true or false")
    if hint is str and not isinstance(given, str):
        raise ConfigError(f"{key}={given!r} must be a string")
    return given
