"""The Python API: what `modelforge.train`, `plan` and `build_model` give back, and what they refuse."""

import json
import subprocess
import sys

import numpy as np

import modelforge
from tests.helpers import FAST, assert_refused, history


def test_model_summary_keeps_every_column(compose, tmp_path):
    modelforge.train(compose([*FAST, "model.depth=1"]), run_dir=tmp_path)
    summary = (tmp_path / "model_summary.txt").read_text()
    assert "Param #" in summary and "Output Shape" in summary and "Layer (type)" in summary
    assert " 520 │" in summary  # block1_dense: 64 x 8 + 8


def test_a_model_too_big_for_the_machine_is_refused_before_building(compose, tmp_path):
    from modelforge.core.init.memory import estimate

    cfg = compose(["model.units=200000", "model.depth=40"])
    needed = estimate(modelforge.plan(cfg), 32, "adam")
    # Weights, their gradients and Adam's two slots: four float32 values per weight.
    assert needed.training_state == 3 * needed.weights and needed.weights == 4 * 1_560_022_800_010
    code = ("import sys, modelforge\ncfg = modelforge.compose(['model.units=200000', 'model.depth=40'])\n"
            f"try:\n    modelforge.train(cfg, run_dir={str(tmp_path / 'run')!r})\n"
            "except modelforge.ConfigError as err:\n    print(err)\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "more than the" in result.stdout and "shrink model.units or model.depth" in result.stdout
    assert "TF_NOT_LOADED" in result.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


def test_train_returns_the_model_the_history_and_the_folder(compose, tmp_path):
    result = modelforge.train(compose([*FAST, "model.depth=1", "trainer.epochs=2"]), run_dir=tmp_path / "run")
    assert isinstance(result, modelforge.TrainResult) and isinstance(result, dict)
    assert result["objective"]["name"] == "val_accuracy"  # the metrics.json dict, as before
    assert result.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.run_dir == tmp_path / "run"
    assert list(result.history["val_accuracy"]) == [row["val_accuracy"] for row in history(tmp_path / "run")]
    assert len(result.history["loss"]) == 2
    x = np.zeros((3, 64), np.float32)
    np.testing.assert_allclose(result.model.predict(x, verbose=0), result.model(x).numpy(), rtol=1e-6)


def test_build_model_for_an_explicit_input_shape(compose):
    model = modelforge.build_model(compose(["layer=conv", "model.units=4"]), input_shape=(12, 10, 3))
    assert model.input_shape == (None, 12, 10, 3) and model.output_shape == (None, 10)
    assert_refused(lambda: modelforge.plan(compose(), input_shape=(0, 3)), "input_shape")
