"""The typing engine: one reading of a field's type for the typed run config, OmegaConf's twins and the command
line's value check."""

import dataclasses
import pickle
import subprocess
import sys
import typing

import pytest

from modelforge.core.config import fields
from modelforge.core.config.schema import SCHEMAS, Model, Trainer
from modelforge.errors import ConfigError
from modelforge.front_door import check_override_values, known_keys
from tests.helpers import assert_refused


def every_field():
    for cls in SCHEMAS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield cls, f.name, hints[f.name]


@pytest.mark.parametrize(("cls", "name", "hint"), list(every_field()),
                         ids=lambda x: x.__name__ if isinstance(x, type) else str(x))
def test_each_twin_field_is_the_fields_own_type_as_omegaconf_reads_it(cls, name, hint):
    made = {f.name: f.type for f in dataclasses.fields(fields.twin(cls))}
    base, optional = fields.optional(hint)
    if base in fields.SIMPLE:
        assert made[name] == (typing.Optional[base] if optional else base)  # noqa: UP045 (what OmegaConf reads)
    elif dataclasses.is_dataclass(hint):
        assert made[name] is fields.twin(hint)
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[0] in fields.SIMPLE:
        assert made[name] == list[typing.get_args(hint)[0]]
    else:
        assert made[name] is typing.Any


def test_twins_live_by_name_in_the_schema_module_and_pickle_by_reference():
    twin = fields.twin(Model)
    assert twin.__module__ == "modelforge.core.config.schema" and twin.__name__ == "ModelSchema"
    dumped = pickle.dumps(twin)
    assert b"ModelSchema" in dumped and len(dumped) < 200  # a reference, not the class's body
    # A fresh process finds it by importing the schema module, as a launcher's worker does.
    code = f"import pickle; print(pickle.loads({dumped!r}).__qualname__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ModelSchema"


def test_the_typed_config_and_the_command_line_refuse_the_same_values_in_the_same_words():
    for key in ["model.units", "trainer.epochs", "trainer.shuffle", "data.validation_split", "data.shape"]:
        top, *path = key.split(".")
        holder = Trainer if top == "trainer" else Model if top == "model" else SCHEMAS["synthetic"]
        found = fields.home(holder, path)
        assert found is not None, key
        _, _, hint = found
        with pytest.raises(ConfigError) as typed_err:
            fields.value(hint, "abc", key)
        override = f"{key}=abc" if key != "data.shape" else "data.shape=[abc]"
        with pytest.raises(ConfigError) as line_err:
            check_override_values([override])
        assert fields.takes(hint) in str(line_err.value)
        assert key in str(typed_err.value)


def test_home_finds_values_not_nested_schemas_nor_strangers():
    assert fields.home(Trainer, ["early_stopping"]) is None
    assert fields.home(Trainer, ["early_stoping", "patience"]) is None
    assert fields.home(Trainer, ["epochz"]) is None
    assert fields.home(Trainer, ["early_stopping", "patience"])[1:] == ("patience", int)


def test_known_keys_are_the_walk_of_every_schema():
    keys = known_keys()
    assert set(fields.keys_of(Trainer, "trainer")) <= set(keys)
    assert set(fields.keys_of(Model, "model")) <= set(keys)
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(("hint", "given", "expected"), [
    (float, 1, 1.0), (tuple[int, ...], [1, 2], (1, 2)), (int | None, None, None), (typing.Any, {"a": 1}, {"a": 1}),
])
def test_value_converts_what_the_type_holds(hint, given, expected):
    got = fields.value(hint, given, "k")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("hint", "given", "words"), [
    (int, "???", "k has no value"), (bool, "yes", "k='yes' must be true or false"),
    (str, 3, "k=3 must be a string"), (tuple[int, ...], 3, "k=3 must be a list"),
])
def test_value_refuses_what_the_type_cannot_hold(hint, given, words):
    assert_refused(lambda: fields.value(hint, given, "k"), words)
