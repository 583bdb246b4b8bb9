"""The init health report: per-layer statistics, the verdict, and He et al. 2015 reproduced."""

import json

import numpy as np
import pytest

import modelforge
from modelforge.analysis.diagnose import run_diagnosis, verdict
from modelforge.run.folder import RunFolder
from modelforge.run.setup import prepare
from tests.helpers import FAST


def diagnosed(compose, tmp_path, overrides):
    folder = RunFolder(tmp_path)
    session = prepare(modelforge.run_config(compose([*FAST, *overrides])))
    return run_diagnosis(session.model, session.plan, session.dataset, folder), session.model, session.dataset


@pytest.mark.parametrize("overrides", [
    ["model.depth=3"],
    ["layer=conv", "activation=leaky_relu"],
    ["layer=lstm", "activation=relu"],
    ["activation=prelu", "layer=conv1d"],
])
def test_report_for_dense_conv_and_recurrent_stacks(compose, tmp_path, overrides):
    report, model, dataset = diagnosed(compose, tmp_path, overrides)
    on_disk = json.loads((tmp_path / "init_report.json").read_text())
    assert on_disk["verdict"] == report["verdict"]
    assert (tmp_path / "init_report.png").read_bytes()[:4] == b"\x89PNG"
    names = [layer.name for layer in model.layers[1:]]
    assert [r["layer"] for r in report["layers"]] == names
    x = dataset.x_train[: report["probe_batch"]]
    first = model.layers[1](x)
    assert report["layers"][0]["second_moment"] == pytest.approx(float(np.mean(np.square(first))), rel=1e-5)
    kernels = [r for r in report["layers"] if r["kernel_grad_norms"]]
    assert kernels and all(v > 0 for r in kernels for v in r["kernel_grad_norms"].values())
    assert kernels[-1]["layer"] == "head"
    rectified = [r for r in report["layers"] if r["dead_fraction"] is not None]
    if "lstm" not in " ".join(overrides):
        assert rectified and all(0 <= r["dead_fraction"] <= 1 for r in rectified)


def test_dead_fraction_counts_units_never_positive(compose, tmp_path):
    cfg = ["+model.layers=[{type:dense,units:4,activation:relu,initializer:{name:constant,value:-1.0}}]"]
    report, _, _ = diagnosed(compose, tmp_path, cfg)
    # Inputs are >= 0 and every weight is -1: no unit is ever positive.
    assert report["layers"][0]["dead_fraction"] == 1.0
    assert report["verdict"].startswith("signal dies")


def test_verdict_wording():
    assert verdict([1.0, 1e-9], 30) == ("signal shrinks 10^9x over 30 layers: vanishing", pytest.approx(-9))
    assert verdict([1.0, 1e4], 5)[0] == "signal grows 10^4x over 5 layers: exploding"
    assert verdict([1.0, 0.5], 30)[0] == "signal stays within 10^0.3x over 30 layers: healthy"


def test_trainer_diagnose_runs_before_training_and_changes_no_number(compose, tmp_path):
    """The report reads the model before the fit: the run's history is the one without it, bit for bit, which is
    why the key table counts `trainer.diagnose` among the keys that cannot change results."""
    metrics = modelforge.train(compose([*FAST, "trainer.diagnose=true", "trainer.diagnose_jacobian=true"]),
                               run_dir=tmp_path / "with")
    assert (tmp_path / "with" / "init_report.json").exists() and (tmp_path / "with" / "init_report.png").exists()
    assert metrics["diagnosis"] == json.loads((tmp_path / "with" / "init_report.json").read_text())["verdict"]
    modelforge.train(compose(FAST), run_dir=tmp_path / "without")
    assert (tmp_path / "with" / "history.csv").read_text() == (tmp_path / "without" / "history.csv").read_text()


def test_he2015_glorots_signal_vanishes_where_hes_holds(compose, tmp_path):
    """He et al. 2015 before training; the training half is tests/analysis/test_experiments.py's."""
    reports = {}
    for init in ("glorot_uniform", "auto"):
        cfg = compose(["experiment=he2015", f"initializer={init}"])
        assert (cfg.model.depth, cfg.model.units, cfg.optimizer.name) == (30, 256, "sgd")
        session = prepare(modelforge.run_config(cfg))
        reports[init] = run_diagnosis(session.model, session.plan, session.dataset, RunFolder(tmp_path / init),
                                      run=session.run)
    glorot, he = reports["glorot_uniform"], reports["auto"]
    # Glorot on ReLU halves E[x^2] per layer: 0.5^29 ~ 2e-9 over 30 layers.
    assert glorot["signal_log10_ratio"] < -7
    assert "vanishing" in glorot["verdict"]
    assert abs(he["signal_log10_ratio"]) < 1
    assert he["verdict"].endswith(": healthy") and he["flags"] == []
