"""Bad input: one clear error naming the bad value and what would be valid."""

import pytest

import modelforge
from modelforge.errors import ConfigError
from tests.helpers import assert_refused

CASES = [
    (["+model.layers=[{type:dense,units:8,activation:relu7}]"], ["relu7", "valid:", "relu6"]),
    (["+model.layers=[{type:dense,units:8,initializer:he_sorta}]"], ["he_sorta", "he_normal", "valid:"]),
    (["+model.layers=[{type:dens,units:8}]"], ["'dens'", "did you mean 'dense'", "conv2d"]),
    (["model.depth=0"], ["model.depth=0", "positive integer"]),
    (["model.units=-4"], ["model.units=-4", "positive integer"]),
    (["data.validation_split=1.5"], ["validation_split=1.5", "between 0 and 1"]),
    (["data.validation_split=0"], ["validation_split=0", "between 0 and 1"]),
    (["initializer=variance_scaling", "initializer.mode=fan_sideways"], ["fan_sideways", "fan_avg, fan_in, fan_out"]),
    (["initializer=variance_scaling", "initializer.distribution=cauchy"], ["cauchy", "truncated_normal"]),
    (["layer=conv", "data=synthetic"], ["conv2d", "[16]", "data.shape=[8,8,1]"]),
    (["layer=conv", "data.layout=flat"], ["conv2d", "[64]", "image"]),
    (["layer=conv", "model.depth=4"], ["block4_pool", "pool_size"]),
    (["+model.layers=[{type:conv2d,filters:4}]"], ["kernel_size"]),
    (["+model.layers=[{type:dense,units:4},{type:dense,units:4,name:layer1_dense}]"], ["layer1_dense", "unique"]),
    (["seed=-1"], ["seed=-1"]),
]


@pytest.mark.parametrize(("overrides", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_plan_errors(compose, overrides, words):
    assert_refused(lambda: modelforge.plan(compose(overrides)), *words)


TRAINING_CASES = [
    (["trainer.epochs=0"], "trainer.epochs=0"),
    (["trainer.epochs=-3"], "trainer.epochs=-3"),
    (["trainer.batch_size=0"], "trainer.batch_size=0"),
    (["optimizer.learning_rate=-1"], "optimizer.learning_rate=-1"),
    (["optimizer.name=adamm"], "did you mean 'adam'"),
    (["trainer.verbose=7"], "trainer.verbose"),
]


@pytest.mark.parametrize(("overrides", "word"), TRAINING_CASES, ids=[c[1] for c in TRAINING_CASES])
def test_training_errors(compose, overrides, word):
    assert_refused(lambda: modelforge.run_config(compose(overrides)), word)


def test_failed_run_leaves_failed_metrics(compose, tmp_path):
    with pytest.raises(ConfigError):
        modelforge.train(compose(["model.depth=0"]), run_dir=tmp_path)
    import json

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert "model.depth=0" in metrics["error"]
    assert not (tmp_path / "model.keras").exists()
    assert not list(tmp_path.glob(".*tmp*"))
