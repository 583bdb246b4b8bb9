"""The front door: every key and value that can be known before TensorFlow is imported is checked there, and
refused with exit 2, naming the bad value and the nearest valid one."""

import json
import subprocess
import sys

import pytest

import modelforge
from tests.helpers import assert_refused, run_dirs, run_module


@pytest.mark.parametrize(("overrides", "words"), [
    (["trainer.objective=val_acc"], ["trainer.objective='val_acc'", "did you mean 'val_accuracy'"]),
    (["trainer.early_stopping.enabled=true", "trainer.early_stopping.monitor=val_acc"],
     ["trainer.early_stopping.monitor='val_acc'", "did you mean 'val_accuracy'"]),
    (["data=synthetic", "data.task=regression", "trainer.objective=val_accuracy"],
     ["regression run", "val_mae"]),
    (["+model.layers=[{type:dense,unit:32}]"], ["needs units", "'unit'"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", "positive integer"]),
    (["logger.experiment_name=7", "logger=mlflow"], ["logger.experiment_name=7", "string"]),
])
def test_front_door_checks_before_tensorflow(compose, overrides, words):
    assert_refused(lambda: modelforge.plan(compose(overrides)), *words)


def test_objective_direction_follows_its_name(compose):
    run = modelforge.run_config(compose(["trainer.objective=val_loss", "trainer.early_stopping.monitor=val_accuracy"]))
    assert run.objective == "val_loss" and run.trainer.early_stopping.mode == "max"
    assert modelforge.run_config(compose()).objective == "val_accuracy"


def test_open_tables_take_keys_without_plus(compose):
    cfg = compose(["initializer.rules.gelu=lecun_uniform", "+model.layers=[{type:dense,units:4,activation:gelu}]"])
    (kernel, *_) = modelforge.plan(cfg).entries
    assert (kernel.choice.name, kernel.choice.source) == ("lecun_uniform", "policy:gelu")


@pytest.mark.parametrize(("overrides", "words"), [
    (["+model.layers=[{type:dense,units:8,kernel_regulariser:l2}]"], ["kernel_regulariser", "kernel_regularizer"]),
    (["layer.kernel_sise=3", "layer=conv"], ["kernel_sise", "kernel_size"]),
])
def test_layer_arguments_are_checked_against_keras_before_building(compose, overrides, words):
    from modelforge.build import build

    assert_refused(lambda: build(modelforge.plan(compose(overrides))), *words)


def test_optimizer_arguments_are_checked_against_keras(compose):
    from modelforge.run.fit import make_optimizer

    assert_refused(lambda: make_optimizer(modelforge.run_config(compose(["optimizer.lr=0.01"])).optimizer),
                   "did you mean 'learning_rate'")
    assert_refused(lambda: make_optimizer(modelforge.run_config(
        compose(["optimizer=sgd", "optimizer.momentun=0.5"])).optimizer), "did you mean 'momentum'")



@pytest.mark.slow
def test_bad_objective_exits_2_without_importing_tensorflow(tmp_path):
    code = ("import atexit, sys; atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules "
            "else 'TF_NOT_LOADED')); sys.argv = ['modelforge', 'trainer.objective=val_acc']; "
            "from modelforge.cli.main import main; main()")
    # Fast means refused before TensorFlow is imported: that is checked, not the seconds (make bench times it).
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert_refused(result, "did you mean 'val_accuracy'")
    assert "TF_NOT_LOADED" in result.stdout and "Traceback" not in result.stderr
    (folder,) = run_dirs(tmp_path)
    assert json.loads((folder / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize(("args", "words"), [
    (["+model.layers=[{type:dense,unit:32}]"], ["needs units", "'unit'"]),
    (["optimizer.lr=0.01"], ["takes no argument 'lr'", "did you mean 'learning_rate'"]),
])
def test_bad_keys_exit_2_before_any_model_is_built(tmp_path, args, words):
    result = run_module(tmp_path, *args)
    assert_refused(result, *words)
    assert "Traceback" not in result.stderr and "Epoch 1" not in result.stdout
    (folder,) = run_dirs(tmp_path)
    assert not (folder / "model_summary.txt").exists() and not (folder / "model.keras").exists()



@pytest.mark.parametrize(("overrides", "words"), [
    (["data.validation_split=0.9999"], ["leaves 1 of 1797 samples to train on and 1796 to validate on"]),
    (["trainer.batch_size=2000"], ["trainer.batch_size=2000", "1438 of 1797"]),
    (["data=synthetic", "data.num_samples=40"], ["leaves 32 of 40", "8 to validate on", "at least 10"]),
])
def test_splits_that_leave_too_little_are_refused(compose, overrides, words):
    assert_refused(lambda: modelforge.run_config(compose(overrides)), *words)

