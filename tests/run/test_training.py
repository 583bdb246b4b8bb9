"""Training in-process: the run folder's files, determinism, regression, TensorBoard, NaN handling."""

import json

import keras
import numpy as np
import pytest

import modelforge
from modelforge.errors import RunFailed
from tests.helpers import FAST, RUN_FILES, history


def test_run_folder_is_complete(compose, tmp_path):
    cfg = compose([*FAST, "trainer.epochs=2"])
    metrics = modelforge.train(cfg, run_dir=tmp_path)
    assert RUN_FILES <= {p.name for p in tmp_path.iterdir()}
    assert not list(tmp_path.glob(".*tmp*"))
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["status"] == "completed" and on_disk["error"] is None and on_disk["epochs_run"] == 2
    assert set(on_disk["final"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert on_disk["objective"] == {"name": "val_accuracy", "value": on_disk["final"]["val_accuracy"], "epoch": 2}
    assert on_disk["versions"]["tensorflow"] != "not installed"
    assert on_disk["timings"]["fit_s"] > 0
    rows = history(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(on_disk["final"]["val_accuracy"])
    plan = json.loads((tmp_path / "init_plan.json").read_text())
    assert {"layer", "weight", "type", "activation", "initializer", "source", "fan_in", "fan_out",
            "target_std"} <= set(plan[0])
    assert len(plan) == len(keras.models.load_model(tmp_path / "model.keras").weights)
    assert "block1_dense" in (tmp_path / "model_summary.txt").read_text()
    assert "seed: 0" in (tmp_path / "config.yaml").read_text()


def test_saved_model_reloads_with_same_predictions(compose, tmp_path):
    cfg = compose(FAST)
    modelforge.train(cfg, run_dir=tmp_path)
    model = keras.models.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    again = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    assert model.get_layer("head").kernel.shape == (8, 10)


def test_same_config_same_numbers(compose, tmp_path):
    cfg = compose([*FAST, "trainer.epochs=2", "seed=7"])
    first = modelforge.train(cfg, run_dir=tmp_path / "a")
    second = modelforge.train(cfg, run_dir=tmp_path / "b")
    assert first["final"] == second["final"]
    assert history(tmp_path / "a") == history(tmp_path / "b")
    other = modelforge.train(compose([*FAST, "trainer.epochs=2", "seed=8"]), run_dir=tmp_path / "c")
    assert other["final"] != first["final"]


def test_regression_on_synthetic_data(compose, tmp_path):
    cfg = compose([*FAST, "data=synthetic", "data.task=regression", "data.num_targets=2", "trainer.epochs=3"])
    metrics = modelforge.train(cfg, run_dir=tmp_path)
    assert metrics["objective"]["name"] == "val_loss"
    assert set(metrics["final"]) == {"loss", "mae", "val_loss", "val_mae", "learning_rate"}
    rows = history(tmp_path)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert json.loads((tmp_path / "init_plan.json").read_text())[-2]["activation"] == "linear"


def test_tensorboard_logger_writes_events(compose, tmp_path):
    modelforge.train(compose([*FAST, "logger=tensorboard"]), run_dir=tmp_path)
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} >= {"train", "validation"}


def test_early_stopping_stops(compose, tmp_path):
    cfg = compose([*FAST, "trainer.epochs=50", "trainer.early_stopping.enabled=true",
                   "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=10"])
    metrics = modelforge.train(cfg, run_dir=tmp_path)
    assert metrics["epochs_run"] == 2
    assert len(history(tmp_path)) == 2
    assert metrics["stopped_early"] == ("early stopping at epoch 2: val_loss has not improved for 1 epoch; "
                                        "best epoch 1 restored")


def test_nan_loss_fails_the_run(compose, tmp_path):
    cfg = compose([*FAST, "optimizer=sgd", "optimizer.learning_rate=1e12", "initializer=variance_scaling",
                   "initializer.scale=1e6", "trainer.epochs=3"])
    with pytest.raises(RunFailed, match="NaN"):
        modelforge.train(cfg, run_dir=tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "NaN" in metrics["error"]
    assert not (tmp_path / "model.keras").exists()


def test_conv_and_recurrent_train(compose, tmp_path):
    for name, layer in (("conv", "layer=conv"), ("gru", "layer=gru"), ("conv1d", "layer=conv1d")):
        metrics = modelforge.train(compose([*FAST, layer]), run_dir=tmp_path / name)
        assert metrics["status"] == "completed"
        assert 0.0 <= metrics["final"]["val_accuracy"] <= 1.0


def test_batch_order_depends_on_the_seed_alone(compose):
    """Arms with one seed see the same batches, whatever model the process built first."""
    from modelforge.data.batches import train_batches

    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    y = np.arange(100)

    def epochs(seed, first=0):
        keras.utils.set_random_seed(seed)
        ds = train_batches(x, y, 16, seed, first_epoch=first, epochs=2)
        labels = np.concatenate([b[1].numpy() for b in ds])
        return [labels[i * 100:(i + 1) * 100] for i in range(2 - first)]

    first = epochs(3)
    modelforge.build_model(compose(["initializer=he_uniform", "model.depth=4"]))
    keras.random.normal((3,))  # the arms' other random draws must not move the order
    second = epochs(3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # reshuffled each epoch
    assert sorted(first[0]) == list(range(100))
    assert not np.array_equal(epochs(4)[0], first[0])
    # A run resumed at epoch 1 sees epoch 1's batches exactly as the uninterrupted run did.
    np.testing.assert_array_equal(epochs(3, first=1)[0], first[1])


def test_job_repeats_after_other_jobs_in_the_same_process(compose, tmp_path):
    cfg = compose([*FAST, "trainer.epochs=2", "initializer=lecun_normal"])
    alone = modelforge.train(cfg, run_dir=tmp_path / "alone")
    modelforge.train(compose([*FAST, "layer=conv", "optimizer=sgd"]), run_dir=tmp_path / "other")
    after = modelforge.train(cfg, run_dir=tmp_path / "after")
    assert after["final"] == alone["final"]
    assert history(tmp_path / "after") == history(tmp_path / "alone")


def test_the_train_step_is_traced_once(compose, tmp_path, monkeypatch):
    """The optimizer's variables are made before the fit: made inside the first trace, they would make TensorFlow
    trace the train step a second time (about 0.4 s of every run)."""
    traced = []
    step = keras.Model.train_step
    monkeypatch.setattr(keras.Model, "train_step", lambda self, data: traced.append(data) or step(self, data))
    modelforge.train(compose([*FAST, "trainer.epochs=2"]), run_dir=tmp_path)
    assert len(traced) == 1


def test_a_nan_stop_is_reported_as_one_not_as_early_stopping(compose, tmp_path):
    """TerminateOnNaN stops the fit as early stopping would: the run fails on the NaN, saying so, and says
    nothing of early stopping (which is off)."""
    cfg = compose([*FAST, "trainer.epochs=5", "optimizer=sgd", "optimizer.learning_rate=1e12"])
    with pytest.raises(modelforge.RunFailed, match="the loss became NaN or infinite at epoch 1"):
        modelforge.train(cfg, run_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and "stopped_early" not in record
    assert "early stopping" not in (record.get("error") or "")


def test_an_infinite_learning_rate_is_refused_as_nan_is(compose):
    for value in ("inf", "nan", "-inf"):
        with pytest.raises(modelforge.ConfigError, match=f"optimizer.learning_rate={value} must be a finite number"):
            modelforge.run_config(compose([f"optimizer.learning_rate={value}"]))


def test_a_seed_beyond_32_bits_is_refused_naming_the_largest(compose):
    assert modelforge.run_config(compose([f"seed={2**32 - 1}"])).seed == 2**32 - 1
    with pytest.raises(modelforge.ConfigError, match="seed=4294967296 must be an integer between 0 and 4,294,967,295"):
        modelforge.run_config(compose(["seed=4294967296"]))


@pytest.mark.parametrize(("value", "words"), [("${oc.env:HOME}", "could not be converted to Integer"),
                                              ("${oc.env:MODELFORGE_NOT_SET_ANYWHERE}", "not found")])
def test_an_interpolation_that_does_not_fit_is_a_config_error(compose, value, words):
    with pytest.raises(modelforge.ConfigError, match=words) as err:
        modelforge.run_config(compose([f"trainer.epochs={value}"]))
    assert str(err.value).startswith("trainer.epochs: ")
