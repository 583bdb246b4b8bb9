"""LSUV: every layer's pre-activation variance on the sample, checked by hand; every layer kind; the plan, the
run folder, plain Keras, determinism, a layer that does not converge, and a resume that does not measure again."""

import json

import keras
import numpy as np
import pytest

import modelforge
from modelforge.initializers.lsuv import layer_weight
from modelforge.run.setup import prepare
from tests.helpers import FAST, assert_refused, run_module


def pre_activation_variances(model, x):
    """Each LSUV layer's pre-activation variance on x, computed here with the layers' own weights (numpy)."""
    found = {}
    h = np.asarray(x, dtype=np.float64)
    for layer in model.layers[1:]:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = (w.numpy().astype(np.float64) for w in layer.weights)
            pre = h @ kernel + bias
            found[layer.name] = float(pre.var())
            h = np.maximum(pre, 0) if layer.name != "head" else pre
    return found


@pytest.mark.numeric
def test_every_hidden_layer_has_unit_variance_on_the_sample(compose):
    run = modelforge.run_config(compose(["experiment=lsuv_depth", "initializer=lsuv"]))
    session = prepare(run)
    sample = session.dataset.sample(256, run.seed)
    variances = pre_activation_variances(session.model, sample)
    hidden = {k: v for k, v in variances.items() if k != "head"}
    assert len(hidden) == 30 and all(abs(v - 1.0) <= 0.1 for v in hidden.values()), hidden
    measured = session.plan.measured
    assert set(measured) == {f"block{i}_dense/kernel" for i in range(1, 31)}
    for path, m in measured.items():
        assert m["converged"] and m["variance"] == pytest.approx(variances[path.split("/")[0]], rel=1e-4)
        kernel = layer_weight(session.model.get_layer(path.split("/")[0]), "kernel").numpy()
        assert m["std"] == pytest.approx(float(kernel.std()), rel=1e-5)
        # Orthogonal (gain 1) times the measured scale: the columns keep their norm, scaled.
        assert np.linalg.norm(kernel, axis=0) == pytest.approx(np.full(64, m["scale"]), rel=1e-4)
    # The head keeps the policy's Glorot (include_head=false).
    assert "head/kernel" not in measured


@pytest.mark.numeric
def test_the_signal_survives_thirty_relu_layers_where_glorots_dies(compose):
    """The issue's bar, before training: the last hidden layer's std >= 0.4 with LSUV, <= 1e-3 with Glorot."""
    stds = {}
    for init in ("lsuv", "glorot_uniform"):
        session = prepare(modelforge.run_config(compose(["experiment=lsuv_depth", f"initializer={init}"])))
        x = session.dataset.x_train[:256]
        last = keras.Model(session.model.input, session.model.get_layer("block30_dense").output)
        stds[init] = float(np.std(last(x)))
    assert stds["lsuv"] >= 0.4 and stds["glorot_uniform"] <= 1e-3, stds


@pytest.mark.parametrize("layers, measured", [
    ("[{type:conv1d,filters:8,kernel_size:3},{type:conv1d_transpose,filters:4,kernel_size:3},{type:flatten}]",
     ["layer1_conv1d/kernel", "layer2_conv1d_transpose/kernel"]),
    ("[{type:conv2d,filters:8,kernel_size:3},{type:separable_conv2d,filters:6,kernel_size:3},"
     "{type:depthwise_conv2d,kernel_size:2},{type:conv2d_transpose,filters:4,kernel_size:3},{type:flatten}]",
     ["layer1_conv2d/kernel", "layer2_separable_conv2d/pointwise_kernel", "layer3_depthwise_conv2d/kernel",
      "layer4_conv2d_transpose/kernel"]),
    ("[{type:lstm,units:8,return_sequences:true},{type:gru,units:6}]",
     ["layer1_lstm/kernel", "layer2_gru/kernel"]),
])
def test_every_layer_kind(compose, layers, measured):
    layout = "sequence" if "1d" in layers or "lstm" in layers else "image"
    run = modelforge.run_config(compose(["initializer=lsuv", f"+model.layers={layers}", f"data.layout={layout}"]))
    session = prepare(run)
    assert list(session.plan.measured) == measured
    assert all(m["converged"] for m in session.plan.measured.values()), session.plan.measured
    if "lstm" in layers:  # a recurrent layer is measured on x.W over the sample's time steps
        x = np.asarray(session.dataset.sample(256, run.seed), dtype=np.float64)
        kernel = layer_weight(session.model.get_layer("layer1_lstm"), "kernel").numpy().astype(np.float64)
        assert float((x @ kernel).var()) == pytest.approx(session.plan.measured["layer1_lstm/kernel"]["variance"],
                                                          rel=1e-4)
        rows = {e.path: e for e in session.plan.entries}
        assert rows["layer1_lstm/recurrent_kernel"].choice.name == "orthogonal"
    if "separable" in layers:
        rows = {e.path: e for e in session.plan.entries}
        assert rows["layer2_separable_conv2d/depthwise_kernel"].choice.name == "he_normal"
        assert rows["layer3_depthwise_conv2d/kernel"].choice.label == "lsuv(he_normal)"


def test_embeddings_keep_the_policy_and_the_head_joins_on_request(compose):
    plan = modelforge.plan(compose(["initializer=lsuv", "initializer.include_head=true", "data.layout=tokens",
                                    "+model.layers=[{type:embedding,input_dim:17,output_dim:8},{type:flatten}]"]))
    rows = {e.path: e for e in plan.entries}
    assert rows["layer1_embedding/embeddings"].choice.note == "LSUV leaves embeddings to the policy"
    assert rows["head/kernel"].choice.label == "lsuv(orthogonal(gain=1))"


def test_deterministic_by_seed_and_plain_keras_on_disk(compose, tmp_path):
    def built(seed):
        return modelforge.build_model(compose([*FAST, "initializer=lsuv", f"seed={seed}"]))

    a, b, c = built(0), built(0), built(1)
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    path = tmp_path / "m.keras"
    a.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("block1_dense").get_config()["kernel_initializer"]["class_name"] == "Orthogonal"
    np.testing.assert_array_equal(loaded.get_weights()[0], a.get_weights()[0])


def test_build_model_takes_a_sample_or_loads_the_data(compose):
    cfg = compose([*FAST, "initializer=lsuv", "initializer.samples=32"])
    own = modelforge.build_model(cfg)
    run = modelforge.run_config(cfg)
    session = prepare(run)
    np.testing.assert_array_equal(own.get_weights()[0], session.model.get_weights()[0])
    given = modelforge.build_model(cfg, sample=np.full((8, 64), 0.5, dtype=np.float32) + np.eye(8, 64))
    assert not np.array_equal(given.get_weights()[0], own.get_weights()[0])
    with pytest.raises(modelforge.ConfigError, match="give the builder a sample"):
        modelforge.build_model(cfg, input_shape=(20,))


def test_the_run_folder_records_the_scales_and_warns_of_a_layer_that_did_not_converge(tmp_path):
    result = run_module(tmp_path, *FAST, "initializer=lsuv", "initializer.max_iter=0", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    plan = json.loads((tmp_path / "run" / "init_plan.json").read_text())
    rows = {f"{e['layer']}/{e['weight']}": e for e in plan}
    assert rows["block1_dense/kernel"]["initializer"] == "lsuv"
    assert rows["block1_dense/kernel"]["lsuv"]["iterations"] == 0
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: lsuv did not converge")]
    assert len(warnings) == 2 and "block1_dense/kernel" in warnings[0], result.stdout
    log = (tmp_path / "run" / "modelforge.log").read_text()
    assert "lsuv block2_dense/kernel: scale 1 after 0 rounds" in log and "NOT converged" in log
    assert "at build" in result.stdout.split("lsuv:")[0]  # the plan table, before the scales were measured


def test_unknown_or_bad_keys_exit_2_naming_them(tmp_path):
    bad = run_module(tmp_path, "plan", "initializer=lsuv", "initializer.tolerance=0")
    assert_refused(bad, "initializer.tolerance=0 must be a finite number > 0")
    typo = run_module(tmp_path, "plan", "initializer=lsuv", "initializer.sample=10")
    assert_refused(typo, "samples")


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_resumed_run_takes_its_weights_from_the_checkpoint_and_measures_nothing(tmp_path):
    from tests.helpers import assert_same_result, start, wait_for

    args = ["initializer=lsuv", "model.units=16", "trainer.verbose=0", "trainer.batch_size=8", "trainer.epochs=3"]
    full = run_module(tmp_path, *args, "hydra.run.dir=full")
    assert full.returncode == 0, full.stderr
    proc = start(tmp_path, *args, "hydra.run.dir=run")
    wait_for(lambda: (tmp_path / "run" / "checkpoint.npz").exists())  # written whole, then renamed
    proc.kill()
    proc.wait()
    resumed = run_module(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert "kernels rescaled on the sample" not in resumed.stdout
    assert_same_result(tmp_path / "full", tmp_path / "run")
    # The scales the first start measured stay in init_plan.json, the uninterrupted run's to the last digit.
    assert (tmp_path / "run" / "init_plan.json").read_text() == (tmp_path / "full" / "init_plan.json").read_text()
    log = (tmp_path / "run" / "modelforge.log").read_text()
    assert log.count("lsuv block1_dense/kernel") == 1
