"""The trainer's knobs: metrics and losses by name, class weights, ReduceLROnPlateau
and mixed precision, each checked against numbers computed by hand from the trained model."""

import json
import math

import keras
import numpy as np
import pytest

import modelforge
from modelforge.core.config import metrics as names
from modelforge.data.arrays import load
from modelforge.run import compiled
from modelforge.run.fit import balanced_class_weight
from tests.helpers import FAST, assert_refused, history


def trained(compose, tmp_path, *overrides):
    """Trains in-process; returns the result, its history rows and the validation arrays it used."""
    cfg = compose([*FAST, *overrides])
    result = modelforge.train(cfg, run_dir=tmp_path / "run")
    run = modelforge.run_config(cfg)
    plan = modelforge.plan(cfg)
    data = load(run.data, plan.info, run.seed, run.trainer.batch_size)
    return result, history(tmp_path / "run"), data


def test_every_metric_name_is_a_keras_metric_of_that_name(compose):
    for task, table in names.METRICS.items():
        overrides = ["data=synthetic", "data.task=regression"] if task == "regression" else []
        trainer = modelforge.run_config(compose([*overrides, f"trainer.metrics=[{','.join(table)}]"])).trainer
        assert [m.name for m in compiled.metrics(trainer, task)] == list(table)


def test_classification_metrics_land_everywhere_and_match_the_model(compose, tmp_path):
    result, rows, data = trained(compose, tmp_path, "model.units=32", "trainer.epochs=3",
                                 "trainer.metrics=[accuracy,top_k_accuracy,auc,precision,recall]",
                                 "trainer.objective=val_auc")
    expected = ["loss", "accuracy", "top_k_accuracy", "auc", "precision", "recall"]
    for name in [*expected, *(f"val_{n}" for n in expected), "learning_rate"]:
        assert name in rows[0] and name in result["final"]
    assert result["objective"] == {"name": "val_auc", "value": result["final"]["val_auc"], "epoch": 3}
    # The validation metrics, recomputed from the trained model's predictions.
    probs = result.model.predict(data.x_val, verbose=0)
    truth = np.eye(10)[data.y_val]
    final = result["final"]
    assert final["val_accuracy"] == pytest.approx(np.mean(probs.argmax(1) == data.y_val), abs=1e-6)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    assert final["val_top_k_accuracy"] == pytest.approx(np.mean((top5 == data.y_val[:, None]).any(1)), abs=1e-6)
    predicted = probs > 0.5
    hits = (predicted & (truth == 1)).sum()
    assert final["val_precision"] == pytest.approx(hits / predicted.sum(), rel=1e-5)
    assert final["val_recall"] == pytest.approx(hits / len(data.y_val), rel=1e-5)
    assert 0.5 < final["val_auc"] <= 1


def test_regression_metrics_and_the_huber_loss_match_the_model(compose, tmp_path):
    result, _, data = trained(compose, tmp_path, "data=synthetic", "data.task=regression", "data.num_samples=200",
                              "trainer.metrics=[mae,mse,rmse]", "trainer.loss={name: huber, delta: 0.5}",
                              "trainer.objective=val_rmse")
    final, pred = result["final"], result.model.predict(data.x_val, verbose=0)
    err = pred - data.y_val
    assert final["val_mse"] == pytest.approx(np.mean(err**2), rel=1e-5)
    assert final["val_rmse"] == pytest.approx(math.sqrt(final["val_mse"]), rel=1e-5)
    assert final["val_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    quadratic = np.minimum(np.abs(err), 0.5)
    huber = np.mean(0.5 * quadratic**2 + 0.5 * (np.abs(err) - quadratic))
    assert final["val_loss"] == pytest.approx(huber, rel=1e-5)
    assert result["objective"]["name"] == "val_rmse"


def test_label_smoothing_is_the_loss_trained_on(compose, tmp_path):
    result, _, data = trained(compose, tmp_path, "trainer.loss=label_smoothing")
    probs = result.model.predict(data.x_val, verbose=0).astype(np.float64)
    smoothed = np.eye(10)[data.y_val] * 0.9 + 0.1 / 10
    by_hand = np.mean(-(smoothed * np.log(np.clip(probs, 1e-7, 1))).sum(1))
    plain = np.mean(-np.log(probs[np.arange(len(probs)), data.y_val]))
    assert result["final"]["val_loss"] == pytest.approx(by_hand, rel=1e-4)
    assert abs(by_hand - plain) > 1e-3  # the test would notice the plain loss


def test_balanced_class_weight_is_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 30 + [1] * 5 + [2] * 15)
    ours = balanced_class_weight(labels, 3)
    np.testing.assert_allclose(list(ours.values()), compute_class_weight("balanced", classes=np.arange(3), y=labels))


def test_class_weights_weigh_the_training_loss(compose, tmp_path):
    # A learning rate too small to move the weights: epoch 1's loss is the weighted loss of the initial model.
    _, rows, data = trained(compose, tmp_path, "trainer.class_weight=balanced", "optimizer=sgd",
                            "optimizer.learning_rate=1e-12", "data=synthetic", "data.num_samples=300")
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    probs = model.predict(data.x_train, verbose=0).astype(np.float64)
    per_sample = -np.log(probs[np.arange(len(probs)), data.y_train])
    weight = balanced_class_weight(data.y_train, 4)
    weighted = np.mean(per_sample * np.array([weight[c] for c in data.y_train]))
    assert float(rows[0]["loss"]) == pytest.approx(weighted, rel=1e-4)
    assert abs(weighted - per_sample.mean()) > 1e-3


def test_reduce_on_plateau_cuts_the_rate_and_history_shows_it(compose, tmp_path):
    # min_delta=10: val_loss never improves after epoch 1, so each epoch past patience halves the rate.
    _, rows, _ = trained(compose, tmp_path, "trainer.epochs=4", "optimizer.learning_rate=0.01",
                         "trainer.reduce_on_plateau.enabled=true", "trainer.reduce_on_plateau.patience=1",
                         "trainer.reduce_on_plateau.factor=0.5", "trainer.reduce_on_plateau.min_delta=10")
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.01, 0.005, 0.0025, 0.00125], rel=1e-6)


@pytest.mark.parametrize(("overrides", "words"), [
    (["trainer.metrics=[acuracy]"], ["'acuracy'", "did you mean 'accuracy'"]),
    (["trainer.metrics=[mae]"], ["'mae' is a regression metric"]),
    (["trainer.objective=val_auc"], ["add auc to trainer.metrics"]),
    (["trainer.loss=huber"], ["classification loss", "'huber'"]),
    (["trainer.loss={name: label_smoothing, smoothing: 0.2}"], ["takes no parameter 'smoothing'",
                                                                 "did you mean 'label_smoothing'"]),
    (["data=synthetic", "data.task=regression", "trainer.class_weight=balanced"], ["this is a regression run"]),
    (["trainer.class_weight=balance"], ["did you mean 'balanced'"]),
    (["trainer.reduce_on_plateau.enabled=true", "optimizer.schedule=cosine"], ["needs optimizer.schedule=constant"]),
    (["trainer.reduce_on_plateau.enabled=true", "trainer.reduce_on_plateau.factor=2"], ["factor"]),
    (["trainer.precision=bfloat16"], ["did you mean 'mixed_bfloat16'"]),
    (["trainer.strategy=mirror"], ["did you mean 'mirrored'"]),
])
def test_bad_knobs_are_refused_before_training(compose, overrides, words):
    assert_refused(lambda: modelforge.run_config(compose(overrides)), *words)


def test_mixed_bfloat16_computes_in_bfloat16_with_a_float32_head_and_the_same_draws(compose, tmp_path):
    cfg = compose(["trainer.precision=mixed_bfloat16", *FAST, "trainer.epochs=2"])
    result = modelforge.train(cfg, run_dir=tmp_path / "mixed")
    model = result.model
    dtypes = {layer.name: layer.compute_dtype for layer in model.layers if layer.weights}
    assert dtypes == {"block1_dense": "bfloat16", "block2_dense": "bfloat16", "head": "float32"}
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model.output.dtype == "float32"
    assert all(math.isfinite(v) for v in result["final"].values())
    # The initial draws are float32 whatever the policy: a float32 build of the same plan is bit-identical.
    initial = {}
    for precision in ("mixed_bfloat16", "float32"):
        keras.config.set_dtype_policy(precision)
        initial[precision] = modelforge.build_model(cfg).get_weights()
    keras.config.set_dtype_policy("float32")
    for a, b in zip(*initial.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The next run in this process is float32 again (a sweep's jobs never inherit a policy).
    again = modelforge.train(compose(FAST), run_dir=tmp_path / "plain")
    assert {layer.compute_dtype for layer in again.model.layers if layer.weights} == {"float32"}
    assert json.loads((tmp_path / "mixed" / "metrics.json").read_text())["status"] == "completed"
