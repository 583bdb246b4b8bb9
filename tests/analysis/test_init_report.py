"""The richer init health report: gradients checked by hand, saturation, flags with suggestions, the Jacobian,
and Glorot & Bengio 2010's Figures 6-7 in miniature."""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

import modelforge
from modelforge.analysis.diagnose import run_diagnosis
from modelforge.analysis.probe import run_probe
from modelforge.core.registry import FAMILY_PRESETS
from modelforge.run.folder import RunFolder
from modelforge.run.setup import prepare
from tests.helpers import FAST, residual_mlp


def report_for(compose, tmp_path, overrides, seed=0):
    session = prepare(modelforge.run_config(compose([*overrides, f"seed={seed}"])))
    folder = RunFolder(tmp_path / f"r{seed}")
    folder.path.mkdir(parents=True, exist_ok=True)
    return run_diagnosis(session.model, session.plan, session.dataset, folder, run=session.run), session


def test_the_back_propagated_gradient_is_the_chain_rule(compose):
    """d(loss)/ds at the head is (softmax - onehot) / batch; one layer down it is that times W^T times tanh'."""
    session = prepare(modelforge.run_config(compose([*FAST, "model.depth=2", "activation=tanh"])))
    x, y = session.dataset.probe(64)
    steps, loss = run_probe(session.model, session.plan, x, y)
    by_name = {s.layer.name: s for s in steps}
    head, block2 = by_name["head"], by_name["block2_dense"]
    probs = keras.ops.convert_to_numpy(head.out).astype(np.float64)
    onehot = np.eye(10)[np.asarray(y)]
    np.testing.assert_allclose(np.asarray(head.pre_grad), (probs - onehot) / len(x), atol=1e-7)
    assert loss == pytest.approx(float(-np.mean(np.log(probs[np.arange(len(x)), np.asarray(y)]))), rel=1e-5)
    w_head = head.layer.kernel.numpy().astype(np.float64)
    s2 = np.asarray(block2.pre, dtype=np.float64)
    by_hand = (np.asarray(head.pre_grad, dtype=np.float64) @ w_head.T) * (1 - np.tanh(s2) ** 2)
    np.testing.assert_allclose(np.asarray(block2.pre_grad), by_hand, atol=1e-7)
    w2_grad = np.asarray(by_name["block1_dense"].out, dtype=np.float64).T @ np.asarray(block2.pre_grad)
    np.testing.assert_allclose(np.asarray(block2.kernel_grads["kernel"]), w2_grad, atol=1e-6)


def test_report_keys_ratios_and_initial_loss(compose, tmp_path):
    report, session = report_for(compose, tmp_path, [*FAST, "model.depth=3"])
    on_disk = json.loads((tmp_path / "r0" / "init_report.json").read_text())
    assert on_disk["verdict"] == report["verdict"] and on_disk["block_second_moments"] == report["block_second_moments"]
    hidden = report["hidden"]
    assert [h["layer"] for h in hidden] == ["block1_dense", "block2_dense", "block3_dense"]
    stds = [h["std"] for h in hidden]
    assert report["ratios"]["activation_std"] == pytest.approx(max(stds) / min(stds))
    assert report["ratios"]["first_over_last"] == pytest.approx(stds[0] / stds[-1])
    grads = [h["grad_std"] for h in hidden]
    assert report["ratios"]["gradient_std"] == pytest.approx(max(grads) / min(grads))
    assert report["reference_loss"] == pytest.approx(math.log(10)) and report["reference"] == "ln(10)"
    assert 0.5 * math.log(10) < report["initial_loss"] < 2 * math.log(10)
    assert all(r["kernel_grad_std"]["kernel"] > 0 for r in report["layers"] if r["kernel_grad_norms"])
    assert report["flags"] == [] and report["jacobian"] is None


def test_saturated_units_raise_a_flag_with_a_suggestion(compose, tmp_path):
    big = "{name:random_normal,stddev:3.0}"
    layers = f"[{{type:dense,units:16,activation:tanh,initializer:{big}}},{{type:dense,units:16,activation:tanh}}]"
    report, _ = report_for(compose, tmp_path, [*FAST, f"+model.layers={layers}"])
    first = report["hidden"][0]
    assert first["saturated_fraction"] > 0.5 and first["dead_fraction"] is None
    (flag,) = [f for f in report["flags"] if f["flag"] == "saturated"]
    # The layer's own initializer wins over any `initializer=` choice: that is what the suggestion names.
    assert "layer1_dense" in flag["detail"] and flag["try"] == ("a smaller scale in layer1_dense's own initializer "
                                                                "(random_normal(mean=0, stddev=3))")
    # Chosen by the initializer group instead, it is the group's to change.
    report, _ = report_for(compose, tmp_path / "group", [*FAST, "activation=tanh", "model.depth=2",
                                                         "initializer=variance_scaling", "initializer.scale=30.0"])
    (flag,) = [f for f in report["flags"] if f["flag"] == "saturated"]
    assert flag["try"] == "initializer=glorot_uniform"


@pytest.mark.parametrize("activation", ["gelu", "silu", "mish"])
def test_a_deep_smooth_rectifier_net_is_told_what_works_here(compose, tmp_path, activation):
    """He's factor of 2 matches ReLU's gain, not the smooth rectifiers': 30 such layers fade under the policy. The
    suggestion is never the initializer in use (auto resolved), and following it ends the vanishing."""
    base = [f"activation={activation}", "model.depth=30"]
    report, session = report_for(compose, tmp_path, base)
    used = {e.choice.name for e in session.plan.entries if e.weight == "kernel"}
    assert used == {"he_normal", "glorot_uniform"}  # the policy's, and the softmax head's
    vanishing = {f["flag"]: f for f in report["flags"]}["vanishing"]
    assert report["ratios"]["last_over_first"] < 0.01
    assert not any(f"initializer={name}" in vanishing["try"] for name in [*used, "auto"]), vanishing
    first = vanishing["try"].split(" (")[0].split(", or ")[0]
    assert first == "initializer=lsuv"
    followed, _ = report_for(compose, tmp_path / "followed", [*base, first])
    assert not {f["flag"] for f in followed["flags"]} & {"vanishing", "gradient spread"}, followed["flags"]
    assert followed["verdict"].endswith(": healthy")


def test_a_steady_signal_beside_a_flag_is_not_called_healthy(compose, tmp_path):
    """LSUV keeps a convnet's signal steady, but its head starts confident and wrong (loss about 1.8x ln(10)): the
    report flags that, suggests the policy, and the policy's net starts within 1.5x ln(10)."""
    report, _ = report_for(compose, tmp_path, ["layer=conv", "initializer=lsuv"])
    flags = {f["flag"]: f for f in report["flags"]}
    assert report["initial_loss"] > 1.5 * math.log(10) and flags["initial loss"]["try"] == "initializer=auto"
    assert "healthy" not in report["verdict"] and report["verdict"].endswith("steady, but see the flags")
    followed, _ = report_for(compose, tmp_path / "followed", ["layer=conv", "initializer=auto"])
    assert "initial loss" not in {f["flag"] for f in followed["flags"]}
    assert followed["initial_loss"] < 1.5 * math.log(10)


def test_the_title_counts_the_layers_the_verdict_counts(compose, tmp_path):
    from modelforge.analysis.diagnose import title

    report, session = report_for(compose, tmp_path, ["layer=conv"])  # conv, pool, conv, pool, flatten, head
    assert title(session).startswith(f"{len(report['hidden'])} hidden layers, relu, ")
    assert f"over {len(report['hidden'])} layers" in report["verdict"] and len(report["hidden"]) == 2


def test_the_jacobian_of_a_linear_delta_orthogonal_conv_stack_is_an_isometry(compose, tmp_path):
    layers = ",".join(["{type:conv2d,filters:16,kernel_size:3,padding:same,activation:linear}"] * 6)
    report, _ = report_for(compose, tmp_path, ["initializer=delta_orthogonal", "trainer.diagnose_jacobian=true",
                                               f"+model.layers=[{layers},{{type:flatten}}]"])
    jac = report["jacobian"]
    assert jac["samples"] == 4 and jac["up_to"] == "layer6_conv2d"
    assert all(c == pytest.approx(1.0, abs=1e-3) for c in jac["condition"])
    he, _ = report_for(compose, tmp_path / "he", ["initializer=he_normal", "trainer.diagnose_jacobian=true",
                                                  f"+model.layers=[{layers},{{type:flatten}}]"])
    assert he["jacobian"]["median"] > 3


# Hand-written Keras on digits as modelforge loads them (5 seeds): the first hidden layer's post-activation std
# over the last's, for the 5-layer tanh net of width 256.
GLOROT_2010 = {"standard_uniform": 9.35, "glorot_uniform": 1.27}
# docs/initialization.md's bounds on the back-propagated gradient's std, largest over smallest across the layers
# (measured on seeds 0-4: 9.2-10.2 and 1.2-1.3).
GRADIENT_SPREAD = {"standard_uniform": (5.0, 20.0), "glorot_uniform": (1.0, 2.0)}


@pytest.mark.numeric
@pytest.mark.parametrize("initializer", list(GLOROT_2010))
def test_glorot_2010_figures_6_and_7_in_miniature(compose, tmp_path, initializer):
    ratios = []
    for seed in range(5):
        report, _ = report_for(compose, tmp_path, ["experiment=glorot2010", f"initializer={initializer}"], seed)
        ratios.append(report["ratios"]["first_over_last"])
        assert len(report["hidden"]) == 5 and all(h["grad_std"] > 0 for h in report["hidden"])
        low, high = GRADIENT_SPREAD[initializer]
        assert low <= report["ratios"]["gradient_std"] <= high, (seed, report["ratios"])
    expected = GLOROT_2010[initializer]
    assert expected / 2 <= float(np.mean(ratios)) <= expected * 2, ratios
    assert all(expected / 2 <= r <= expected * 2 for r in ratios), ratios
    assert (tmp_path / "r4" / "init_report.png").read_bytes()[:4] == b"\x89PNG"


def test_standard_uniform_is_keras_variance_scaling_a_third_fan_in_uniform(compose):
    cfg = compose([*FAST, "initializer=standard_uniform"])
    plan, model = modelforge.plan(cfg), modelforge.build_model(cfg)
    for entry in (e for e in plan.entries if e.weight == "kernel"):
        expected = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=entry.seed)(entry.shape)
        kernel = model.get_layer(entry.layer).kernel.numpy()
        np.testing.assert_array_equal(kernel, keras.ops.convert_to_numpy(expected))
        assert np.abs(kernel).max() <= 1 / math.sqrt(entry.shape[0])  # U[-1/sqrt(n), 1/sqrt(n)]
        assert entry.target_std == pytest.approx(1 / math.sqrt(3 * entry.shape[0]))


def test_the_family_presets_are_the_auto_policys_families():
    conf = yaml.safe_load((Path(modelforge.__file__).parent / "conf" / "initializer" / "auto.yaml").read_text())
    assert conf["families"] == {family.value: preset for family, preset in FAMILY_PRESETS.items()}


def test_a_residual_models_report_gives_each_blocks_stream_and_branch(compose):
    import keras
    import numpy as np

    from modelforge.analysis.diagnose import diagnose
    from modelforge.analysis.flags import flags

    cfg = compose([residual_mlp(10, 32), "model.units=8"])
    model, plan = modelforge.build_model(cfg), modelforge.plan(cfg)
    x = np.asarray(load_digits_probe(), dtype=np.float32)
    y = np.zeros(len(x), dtype=np.int64)
    report = diagnose(model, plan, x, y)
    assert [b["block"] for b in report["residual"]] == [f"r{i}" for i in range(10)]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in ("s", "r0", "q0", "r9")])(x)
    stem, stream, branch, last = (float(np.std(np.asarray(t, dtype=np.float64))) for t in probe)
    first = report["residual"][0]
    assert first["input_std"] == pytest.approx(stem, rel=1e-5)  # the stream entering the first block
    assert report["residual"][1]["input_std"] == pytest.approx(stream, rel=1e-5)
    assert first["stream_std"] == pytest.approx(stream, rel=1e-5)
    assert first["branch_std"] == pytest.approx(branch, rel=1e-5)
    assert first["ratio"] == pytest.approx(branch / stream, rel=1e-5) and first["grad_std"] > 0
    assert report["residual"][-1]["stream_std"] == pytest.approx(last, rel=1e-5)
    growth = [f for f in flags(report, "rectifier", True) if f["flag"] == "residual growth"]
    assert growth and growth[0]["try"] == ("residual=zero_last, or residual=fixup, or residual=rezero, or "
                                           "residual=scaled")
    assert "residual=zero_last" not in [f for f in flags(report, "rectifier", True, rule="zero_last")
                                       if f["flag"] == "residual growth"][0]["try"]
    calm = compose([residual_mlp(10, 32), "model.units=8", "residual=zero_last"])
    calm_report = diagnose(modelforge.build_model(calm), modelforge.plan(calm), x, y)
    blocks = calm_report["residual"]
    assert blocks[-1]["stream_std"] == pytest.approx(blocks[0]["stream_std"], rel=1e-2)  # every block the identity
    assert not [f for f in flags(calm_report, "rectifier", True, rule="zero_last") if f["flag"] == "residual growth"]


def load_digits_probe():
    from sklearn.datasets import load_digits

    return load_digits().data[:128] / 16.0


@pytest.mark.parametrize("blocks", [10, 50])
def test_the_residual_rules_hold_the_stream_at_init_as_the_docs_say(compose, blocks):
    """docs/initialization.md's figures, as bounds: the stream's std after the last block over the stem's, seeds 0
    and 1 (width 64, branches dense(relu) -> dense(linear))."""
    x = np.asarray(load_digits_probe(), dtype=np.float32)
    bounds = {"none": (10.0 if blocks == 10 else 1e3, math.inf), "zero_last": (0.99, 1.01), "fixup": (0.99, 1.01),
              "rezero": (0.99, 1.01), "scaled": (1 / 3, 3.0), "layerscale": (1 / 3, 3.0)}
    for rule, (low, high) in bounds.items():
        for seed in (0, 1):
            model = modelforge.build_model(compose([residual_mlp(blocks, 64), f"residual={rule}", f"seed={seed}"]))
            stem, last = keras.Model(model.inputs, [model.get_layer("s").output,
                                                    model.get_layer(f"r{blocks - 1}").output])(x)
            growth = float(np.std(np.asarray(last, np.float64)) / np.std(np.asarray(stem, np.float64)))
            assert low <= growth <= high, (rule, seed, growth)
