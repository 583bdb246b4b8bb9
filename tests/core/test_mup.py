"""parametrization=mup in the plan: each weight's class, width multiplier and learning-rate multiplier against the
base model matched by path (Yang et al. 2022, Table 3), muP's init scales, what it refuses, and the run's optimizer
taking the rates per variable."""

import json
import math

import keras
import pytest

import modelforge
from modelforge.core.init.plan import format_table
from tests.helpers import FAST, assert_refused, plan_of

MUP = "parametrization=mup"


def by_layer(plan):
    return {(e.layer, e.weight): e for e in plan.entries}


@pytest.mark.parametrize("width", [64, 256, 1024])
def test_each_weight_gets_its_class_and_multipliers_against_the_base_width(compose, width):
    entries = by_layer(plan_of(compose, MUP, f"model.units={width}", "model.depth=3"))
    m = width / 64
    expected = {("block1_dense", "kernel"): ("input", m, 1.0), ("block2_dense", "kernel"): ("hidden", m, 1 / m),
                ("block3_dense", "kernel"): ("hidden", m, 1 / m), ("head", "kernel"): ("readout", m, 1 / m),
                ("block2_dense", "bias"): ("bias", m, 1.0), ("head", "bias"): ("bias", 1.0, 1.0)}
    for key, (kind, mult, lr) in expected.items():
        assert entries[key].mup == {"class": kind, "m": pytest.approx(mult), "lr": pytest.approx(lr)}, key


def test_sgd_takes_the_papers_sgd_column(compose):
    entries = by_layer(plan_of(compose, MUP, "model.units=256", "optimizer=sgd"))
    assert entries[("block1_dense", "kernel")].mup["lr"] == pytest.approx(4.0)  # input: x fan_out's m
    assert entries[("block1_dense", "bias")].mup["lr"] == pytest.approx(4.0)
    assert entries[("block2_dense", "kernel")].mup["lr"] == pytest.approx(1.0)  # hidden: the rate itself
    assert entries[("head", "kernel")].mup["lr"] == pytest.approx(0.25)  # readout: / m


def test_init_is_fan_in_for_input_and_hidden_and_the_readout_starts_at_zero_or_at_one_over_fan_in(compose):
    entries = by_layer(plan_of(compose, MUP, "model.units=256", "activation=tanh"))
    hidden = entries[("block2_dense", "kernel")]  # tanh's glorot_uniform, at fan_in: std sqrt(1 / 256)
    assert hidden.target_std == pytest.approx(1 / 16) and hidden.build == (
        "variance_scaling", {"scale": 1.0, "mode": "fan_in", "distribution": "uniform"})
    head = entries[("head", "kernel")]
    assert head.build == ("zeros", {}) and head.target_std == 0 and head.choice.source == "mup"
    scaled = by_layer(plan_of(compose, MUP, "model.units=256", "parametrization.readout=scaled"))[("head", "kernel")]
    assert scaled.target_std == pytest.approx(1 / 256)  # variance 1/fan_in^2
    relu = by_layer(plan_of(compose, MUP, "model.units=256"))[("block2_dense", "kernel")]
    assert relu.choice.name == "he_normal" and relu.target_std == pytest.approx(math.sqrt(2 / 256))


def test_at_the_base_width_every_rate_is_the_standard_one(compose):
    plan = plan_of(compose, MUP, "model.units=64")
    assert plan.rate_multipliers() == {} and {e.mup["m"] for e in plan.entries if e.mup} == {1.0}


def test_the_plan_shows_class_m_and_rate_in_the_table_and_the_json(compose, tmp_path):
    plan = plan_of(compose, MUP, "model.units=1024")
    table = format_table(plan)
    header = table.splitlines()[0].split()
    assert header[-3:] == ["mup", "m", "lr"] or header[-4:] == ["mup", "m", "lr", "x"]
    row = next(line for line in table.splitlines() if line.startswith("block2_dense") and " kernel " in line)
    assert row.split()[-3:] == ["hidden", "16", "0.0625"]
    assert "parametrization=mup" in table and "muP its scale" in table
    record = next(e for e in plan.as_json() if e["layer"] == "head" and e["weight"] == "kernel")
    assert record["mup"] == {"class": "readout", "m": 16.0, "lr": 0.0625}
    assert all("mup" not in e for e in plan_of(compose, "model.units=1024").as_json())  # standard: as before


@pytest.mark.parametrize(("overrides", "words"), [
    (["initializer=lsuv"], ["parametrization=mup", "lsuv", "sets its own scale"]),
    (["initializer=orthogonal"], ["parametrization=mup", "orthogonal", "variance-scaling"]),
    (["initializer=delta_orthogonal"], ["parametrization=mup", "delta_orthogonal"]),
    (["optimizer.name=nadam"], ["parametrization=mup", "optimizer=nadam", "adam, adamw, rmsprop, sgd"]),
    (["model=transformer"], ["parametrization=mup", "attention", "parametrization=standard"]),
    (["+parametrization.base={model.unit:64}"], ["parametrization.base", "model.unit", "model.units"]),
    (["parametrization.readout=small"], ["parametrization.readout", "small", "zero"]),
    # model.units does not size an explicit layer list: the base changes no width.
    (["+model.layers=[{type:dense,units:32}]"], ["parametrization.base", "widens no weight", "model.units"]),
])
def test_what_contradicts_mup_is_refused_naming_both(compose, overrides, words):
    assert_refused(lambda: plan_of(compose, MUP, "model.units=128", *overrides), *words)


def test_a_base_without_a_layer_is_refused_naming_it(compose):
    assert_refused(lambda: plan_of(compose, MUP, "model.depth=3", "+parametrization.base={model.depth:2}"),
                   "block3_dense/kernel", "no counterpart in the base model")


def test_residual_rules_apply_on_top_of_mup(compose):
    plain = by_layer(plan_of(compose, MUP, "model=resmlp", "model.units=256", "model.blocks.res.repeat=4"))
    zeroed = by_layer(plan_of(compose, MUP, "model=resmlp", "model.units=256", "model.blocks.res.repeat=4",
                              "residual=zero_last"))
    last = ("res4.dense2", "kernel")
    assert plain[last].mup["class"] == "hidden" and plain[last].target_std > 0
    assert zeroed[last].target_std == 0 and zeroed[last].mup == plain[last].mup


def test_a_mup_run_trains_with_a_rate_per_variable_and_its_model_loads(compose, tmp_path):
    modelforge.train(compose([*FAST, MUP, "model.units=256"]), run_dir=tmp_path)
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert type(model.optimizer).__module__ == "modelforge.optimizers"
    plan = json.loads((tmp_path / "init_plan.json").read_text())
    assert model.optimizer.multipliers == {f"{e['layer']}/{e['weight']}": e["mup"]["lr"] for e in plan
                                           if e.get("mup") and e["mup"]["lr"] != 1.0}
    assert model.optimizer.multipliers["block2_dense/kernel"] == pytest.approx(0.25)
    # In plain Keras (modelforge never imported) the model loads without its optimizer and predicts the same.
    import subprocess
    import sys

    import numpy as np

    x = np.random.default_rng(0).random((4, 64)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, keras; m = keras.saving.load_model(sys.argv[1], compile=False); "
            "np.save(sys.argv[2], m.predict(np.load(sys.argv[3]), verbose=0)); "
            "assert 'modelforge' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.keras"), str(tmp_path / "p.npy"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
