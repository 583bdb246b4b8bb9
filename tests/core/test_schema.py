"""Typed schemas: wrong types and misspelled keys fail at composition, with the key named."""

import pytest

import modelforge
from modelforge.errors import ConfigError
from modelforge.sweep.store import check_override_keys, known_keys
from tests.helpers import run_module


@pytest.mark.parametrize(("override", "words"), [
    ("model.units=abc", ["model.units", "abc", "Integer"]),
    ("trainer.epochs=many", ["trainer.epochs", "many"]),
    ("trainer.shuffle=perhaps", ["trainer.shuffle", "perhaps"]),
    ("data.validation_split=lots", ["data.validation_split", "lots"]),
    ("trainer.epoch=3", ["'trainer.epoch'", "did you mean 'trainer.epochs'"]),
    ("model.unit=8", ["did you mean 'model.units'"]),
    ("trainer.early_stopping.patiense=2", ["did you mean 'trainer.early_stopping.patience'"]),
    ("activation=relu7", ["relu7"]),
])
def test_composition_errors_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        modelforge.compose([override])
    for word in words:
        assert word in str(err.value)


def test_schemas_keep_values_typed(compose):
    cfg = compose(["model.units=12", "trainer.epochs=3", "data.validation_split=0.25"])
    assert (cfg.model.units, cfg.trainer.epochs, cfg.data.validation_split) == (12, 3, 0.25)
    assert type(cfg.model.units) is int
    synthetic = compose(["data=synthetic", "data.shape=[4,4]"])
    assert list(synthetic.data.shape) == [4, 4]
    with pytest.raises(ConfigError, match="data.shape"):
        compose(["data=synthetic", "data.shape=[a,b]"])


def test_key_check_leaves_other_keys_to_hydra():
    assert "trainer.early_stopping.patience" in known_keys()
    check_override_keys(["+trainer.epoch=3", "optimizer.momentum=0.5", "layer.kernel_size=5", "initializer=auto",
                         "trainer.zzz_unrelated=1"])


@pytest.mark.slow
def test_cli_typo_fails_before_any_work(tmp_path):
    result = run_module(tmp_path, "trainer.epoch=3")
    assert result.returncode == 2
    assert "did you mean 'trainer.epochs'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()
    result = run_module(tmp_path, "model.units=abc")
    assert result.returncode == 1
    assert "model.units" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()
