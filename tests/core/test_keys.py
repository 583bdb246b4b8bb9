"""The key table: every key is classified once, and the resume digest, the summary's columns and the fused grouping
all read it."""

import dataclasses
import typing

import pytest
from omegaconf import OmegaConf

import modelforge
from modelforge.analysis import summary
from modelforge.core.config import digest
from modelforge.core.config.keys import KEYS, OUTPUT, PER_ARM, SHARED, dotted, listed, meaning
from modelforge.core.config.schema import RESIDUAL_KEYS, SCHEMAS
from modelforge.core.registry import ARM_SCALARS
from modelforge.fused.groups import group_key
from tests.helpers import REPO

# Every bundled group option (Hydra's own `hydra/` groups aside), composed on its own.
OPTIONS = sorted(f"{p.parent.name}={p.stem}" for p in (REPO / "conf").glob("*/*.yaml"))


def schema_keys(cls, prefix):
    """Each leaf key of a typed schema, with the keys of the dataclasses above it (the entries that may classify
    it besides its own)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hints[field.name]):
            for key, parents in schema_keys(hints[field.name], f"{name}."):
                yield key, (name, *parents)
        else:
            yield name, ()


def composed_keys(option):
    cfg = OmegaConf.to_container(modelforge.compose([option]), resolve=False)
    return set(dotted(cfg, lambda m: True))


def test_every_key_of_the_schemas_is_classified_by_its_own_entry():
    """A key the typed schemas hold is listed itself (or by the schema section it sits in, like
    `trainer.early_stopping`), never only by its whole group: a key added to a schema must be classified."""
    for name, cls in SCHEMAS.items():
        group = name if name in ("trainer", "model") else "data"
        for key, parents in schema_keys(cls, f"{group}."):
            assert listed(key) in (key, *parents), f"{key} has no entry of its own in modelforge/core/config/keys.py"


def test_every_key_a_bundled_config_holds_is_listed_and_every_entry_is_a_key():
    seen = set()
    for option in ["seed=0", *OPTIONS]:
        keys = composed_keys(option)
        assert all(listed(key) is not None for key in keys), (option, [k for k in keys if listed(k) is None])
        seen |= keys
    seen |= {key for name, cls in SCHEMAS.items()
             for key, _ in schema_keys(cls, f"{name if name in ('trainer', 'model') else 'data'}.")}
    seen |= {f"optimizer.{key}" for scalars in ARM_SCALARS.values() for key in scalars}  # Keras' own arguments
    seen |= {f"residual.{key}" for keys in RESIDUAL_KEYS.values() for key in keys}  # left out at their defaults
    stale = [entry for entry in KEYS
             if entry != "hydra" and not any(k == entry or k.startswith(f"{entry}.") for k in seen)]
    assert stale == []


def test_the_classes_are_the_documented_ones():
    assert (meaning("seed"), meaning("initializer.rules"), meaning("optimizer.momentum")) == (PER_ARM,) * 3
    assert (meaning("trainer.verbose"), meaning("trainer.diagnose"), meaning("logger.tracking_uri")) == (OUTPUT,) * 3
    assert (meaning("data.cache_dir"), meaning("hydra/launcher")) == (OUTPUT, OUTPUT)
    assert (meaning("optimizer.name"), meaning("model.depth"), meaning("experiment")) == (SHARED,) * 3
    assert meaning("trainer.objective") == PER_ARM  # each arm of a fused group is judged by its own objective


@pytest.mark.parametrize("option", ["seed=0", "optimizer=sgd", "data=mnist", "logger=mlflow"])
def test_the_digest_the_summary_and_the_fused_groups_read_the_table(option):
    """Each key of a composed config, changed alone: the resume digest moves exactly when the key can change
    results, the fused group key exactly when arms may not differ in it, and the summary groups by it exactly
    when it can change results."""
    cfg = OmegaConf.to_container(modelforge.compose([option]), resolve=True)
    base_digest, base_group = digest.record(cfg)["digest"], group_key(cfg)
    for key in dotted(cfg, lambda m: True):
        changed = OmegaConf.create(cfg)
        OmegaConf.update(changed, key, "__changed__", force_add=True)
        plain = OmegaConf.to_container(changed)
        what = meaning(key)
        assert (digest.record(plain)["digest"] != base_digest) == what.results, key
        assert (group_key(plain) != base_group) == (not what.per_arm), key
        assert summary.changes_results(key) == what.results, key
