"""Typed schemas: wrong types and misspelled keys are refused before Hydra composes (and, in a YAML file, while it
composes), with the key named."""

import pytest

import modelforge
from modelforge.errors import ConfigError
from modelforge.front_door import check_group_options, check_override_keys, check_override_values, known_keys
from tests.helpers import assert_refused, run_module, said


@pytest.mark.parametrize(("override", "words"), [
    ("model.units=abc", ["model.units=abc", "model.units takes a whole number"]),
    ("trainer.epochs=many", ["trainer.epochs", "many"]),
    ("trainer.shuffle=perhaps", ["trainer.shuffle", "perhaps"]),
    ("data.validation_split=lots", ["data.validation_split", "lots"]),
    ("trainer.epoch=3", ["'trainer.epoch'", "did you mean 'trainer.epochs'"]),
    ("model.unit=8", ["did you mean 'model.units'"]),
    ("trainer.early_stopping.patiense=2", ["did you mean 'trainer.early_stopping.patience'"]),
    ("activation=relu7", ["relu7"]),
])
def test_composition_errors_name_the_key(override, words):
    assert_refused(lambda: modelforge.compose([override]), *words)


def test_schemas_keep_values_typed(compose):
    cfg = compose(["model.units=12", "trainer.epochs=3", "data.validation_split=0.25"])
    assert (cfg.model.units, cfg.trainer.epochs, cfg.data.validation_split) == (12, 3, 0.25)
    assert type(cfg.model.units) is int
    synthetic = compose(["data=synthetic", "data.shape=[4,4]"])
    assert list(synthetic.data.shape) == [4, 4]
    assert_refused(lambda: compose(["data=synthetic", "data.shape=[a,b]"]), "data.shape")


def test_key_check_leaves_other_keys_to_hydra():
    assert "trainer.early_stopping.patience" in known_keys()
    check_override_keys(["+trainer.epoch=3", "optimizer.momentum=0.5", "layer.kernel_size=5", "initializer=auto",
                         "trainer.zzz_unrelated=1"])


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.epochs=1.5", "trainer.epochs=1.5: trainer.epochs takes a whole number (did you mean trainer.epochs=2?)"),
    ("model.units=0.4", "model.units=0.4: model.units takes a whole number (did you mean model.units=1?)"),
    ("trainer.epochs=ten", "trainer.epochs=ten: trainer.epochs takes a whole number"),
    ("trainer.deterministic=ture", "takes true or false (did you mean trainer.deterministic=true?)"),
    ("trainer.early_stopping.patience=x", "trainer.early_stopping.patience=x: trainer.early_stopping.patience takes"),
    ("data.shape=[28,x]", "data.shape=[28,x]: data.shape takes a list of whole numbers"),
    ("trainer.epochs=null", "trainer.epochs=null: trainer.epochs takes a whole number"),
    ("+trainer.batch_size=big", "+trainer.batch_size=big: trainer.batch_size takes a whole number"),
    ("trainer.epochs=1,2,x", "trainer.epochs=x, one value of the sweep 'trainer.epochs=1,2,x': trainer.epochs takes"),
])
def test_a_value_of_the_wrong_type_is_refused_with_the_nearest_that_fits(override, message):
    assert_refused(lambda: check_override_values([override]), message)


def test_the_value_check_leaves_what_it_cannot_judge_to_hydra(compose):
    # Interpolations, ranges, intervals, deletions, open tables, other groups, Optional nulls, quoted numbers.
    fine = ["trainer.epochs=${oc.env:EPOCHS,3}", "trainer.epochs=range(1,4)", "trainer.batch_size=interval(8,64)",
            "~trainer.epochs", "optimizer.learning_rate=fast", "data.kwargs.n=ten", "hydra.verbose=true",
            "data.features=null", "model.depth='4'", "trainer.deterministic=yes", "trainer.epochs=3",
            "data.validation_split=0.25", "data.shape=[28,28]", "trainer.epochs=1,2", "model.units=([8,16])"]
    check_override_values(fine)
    assert compose(["model.depth='4'", "trainer.deterministic=yes"]).model.depth == 4  # as OmegaConf takes them


@pytest.mark.parametrize(("override", "message"), [
    ("initializer=he_norml", "unknown initializer option 'he_norml' (did you mean 'he_normal'?); valid: auto, "),
    ("layer=cnn", "unknown layer option 'cnn'; valid: conv, conv1d, dense, gru, lstm. 'cnn' is an option of model: "
                  "model=cnn"),
    ("initializer=he_normal,glorot_unifrom", "unknown initializer option 'glorot_unifrom' (did you mean "
                                             "'glorot_uniform'?)"),
    ("hydra/launcher=paralel", "unknown hydra/launcher option 'paralel' (did you mean 'parallel'?); valid: basic, "
                               "fused, "),
    ("experiment=he2016", "unknown experiment option 'he2016' (did you mean 'he2015'?)"),
])
def test_an_option_no_group_has_is_refused_with_the_nearest(override, message):
    with pytest.raises(ConfigError) as err:
        modelforge.compose([override])
    assert str(err.value).startswith(message)


def test_the_option_check_leaves_what_it_cannot_judge_to_hydra():
    # Globs, deletions, nulls, keys, a search path of the command line's own, and every bundled option.
    check_group_options(["initializer=glob(*)", "~experiment", "experiment=null", "hydra/launcher=fused",
                         "model.units=8", "hydra.searchpath=[file:///elsewhere]", "experiment=mine"])
    check_group_options(["model=cnn", "layer=conv1d", "optimizer=adamw", "hparams_search=optuna", "logger=mlflow"])


@pytest.mark.slow
def test_cli_typo_fails_before_any_work(tmp_path):
    result = run_module(tmp_path, "trainer.epoch=3")
    assert result.returncode == 2
    assert "did you mean 'trainer.epochs'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()
    result = run_module(tmp_path, "-m", "model.units=abc,8")  # a sweep's bad value: refused before any job runs
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("model.units=abc, one value of the sweep 'model.units=abc,8': model.units takes a whole number"
            in said(result))
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    result = run_module(tmp_path, "-m", "initializer=he_normal,he_norml")  # a group option, the same way
    assert_refused(result, "did you mean 'he_normal'")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
