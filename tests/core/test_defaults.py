"""One home for each default: modelforge's own defaults live in conf/ or in the registry, the other
checked against it here; tables that mirror Keras' constructor defaults are checked against Keras' signatures."""

import inspect
import re

import pytest
import yaml

from modelforge.core import registry
from tests.helpers import REPO

CONF = REPO / "conf"
DOCS = REPO / "docs"


def option(group: str, name: str) -> dict:
    """An option's own keys (its `name`, `policy` and `defaults` list left out)."""
    found = yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {}
    return {k: v for k, v in found.items() if k not in ("name", "policy", "defaults")}


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "activation").glob("*.yaml")))
def test_activation_options_carry_the_registrys_parameters(name):
    if name == "auto":
        assert option("activation", name) == {}
        return
    assert option("activation", name) == registry.get_activation(name).params


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "initializer").glob("*.yaml") if p.stem != "auto"))
def test_initializer_options_carry_the_registrys_parameters(name):
    assert option("initializer", name) == registry.INITIALIZERS[name]


def test_schedule_defaults_live_in_the_registry_and_the_docs_line_says_them():
    for path in (CONF / "optimizer").glob("*.yaml"):  # no optimizer option restates a schedule's parameters
        assert not set(option("optimizer", path.stem)) & {k for p in registry.SCHEDULES.values() for k in p}
    line = "; ".join(f"{name} ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else name
                     for name, params in registry.SCHEDULES.items())
    (found,) = re.findall(r"<!-- schedules -->(.*?)<!-- /schedules -->", (DOCS / "configuration.md").read_text())
    assert found == line


def keras_default(cls, argument):
    value = inspect.signature(cls.__init__).parameters[argument].default
    return 0.0 if value is None else value  # Keras' weight_decay=None is no decay: 0.0 in the fused update


def test_initializer_parameters_mirror_keras_signatures():
    import keras

    for name, params in registry.INITIALIZERS.items():
        cls = getattr(keras.initializers, registry.INITIALIZER_CLASSES.get(name, ""), None)
        if cls is None:  # modelforge's own (standard_uniform, lsuv, delta_orthogonal): its registry is the home
            assert name in registry.COMPUTED or name in registry.VARIANCE_SCALING_PRESETS, name
            continue
        for key, value in params.items():
            assert keras_default(cls, key) == value, f"{name}.{key}"


def test_the_fused_optimizers_arm_scalars_mirror_keras_signatures():
    import keras

    from modelforge.core.registry import ARM_SCALARS

    for name, scalars in ARM_SCALARS.items():
        cls = getattr(keras.optimizers, registry.OPTIMIZERS[name])
        for key, value in scalars.items():
            assert keras_default(cls, key) == value, f"{name}.{key}"
