"""The typed run config in process: what `RunConfig.from_mapping` makes of a composed config, and
the one paragraph it raises for each kind of bad key or value."""

import copy

import pytest

from modelforge.core.config.schema import CsvData, RunConfig, SyntheticData
from tests.helpers import assert_refused, composed_plain


def run(*overrides, **changes):
    """The config composed with `overrides`, `changes` ({"trainer.epochs": 3}) then made by hand, typed."""
    cfg = copy.deepcopy(composed_plain(*overrides))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = cfg
        for name in parents:
            node = node[name]
        node[key] = value
    return RunConfig.from_mapping(cfg)


def test_the_composed_config_types_every_group():
    typed = run()
    assert (typed.seed, typed.model.depth, typed.model.units, typed.trainer.epochs) == (0, 1, 8, 1)
    assert typed.layer.type == "dense" and typed.activation.name == "auto" and typed.optimizer.name == "adam"
    assert typed.optimizer.args == {"learning_rate": 0.001} and typed.optimizer.schedule.name == "constant"
    assert typed.task == "classification" and typed.objective == "val_accuracy"
    assert typed.resolved["trainer"]["epochs"] == 1  # what it was made from, kept for the run folder


def test_the_objective_and_its_direction_follow_the_task():
    regression = run("data=synthetic", "data.task=regression", "data.shape=[4]")
    assert isinstance(regression.data, SyntheticData) and regression.data.shape == (4,)
    assert regression.objective == "val_loss"
    assert run(**{"trainer.early_stopping.monitor": "val_accuracy"}).trainer.early_stopping.mode == "max"


def test_a_schedules_keys_are_split_from_the_optimizers():
    typed = run("optimizer=sgd", "optimizer.schedule=step", "optimizer.decay_epochs=2")
    assert typed.optimizer.args == {"learning_rate": 0.01, "momentum": 0.9, "nesterov": False}
    assert typed.optimizer.schedule.name == "step"
    assert dict(typed.optimizer.schedule.params) == {"decay_rate": 0.1, "decay_epochs": 2}


@pytest.mark.parametrize(("changes", "words"), [
    ({"trainer.epochs": 0}, "trainer.epochs"),
    ({"trainer.epochz": 3}, "did you mean 'trainer.epochs'"),
    ({"trainer.objective": "val_acc"}, "val_accuracy"),
    ({"model.units": -1}, "model.units"),
    ({"data.validation_split": 1.5}, "data.validation_split"),
    ({"data.name": "digitz"}, "digits"),
    ({"logger.name": "csvv"}, "csv"),
    ({"optimizer.schedule": "cosin"}, "cosine"),
    ({"seed": -1}, "seed"),
])
def test_a_bad_value_names_the_key_and_the_nearest_valid_one(changes, words):
    assert_refused(lambda: run(**changes), words)


def test_a_csv_config_keeps_its_columns_typed():
    typed = run("data=csv", "data.path=my.csv", "data.target=label", "data.features=[a,b]")
    assert isinstance(typed.data, CsvData) and typed.data.features == ("a", "b") and typed.data.num_samples is None
