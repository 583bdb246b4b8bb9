"""Delta-orthogonal kernels: the formula, the Jacobian of a deep linear conv stack, the plan, and plain Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import modelforge
from modelforge.initializers.delta import delta_orthogonal, orthogonal
from modelforge.initializers.lsuv import layer_weight
from tests.helpers import assert_refused


@pytest.mark.parametrize("shape", [(3, 3, 16, 16), (5, 5, 8, 32), (3, 16, 24), (3, 3, 3, 4, 8), (1, 1, 16, 16)])
def test_centre_tap_is_orthogonal_and_every_other_tap_zero(shape):
    kernel = delta_orthogonal(shape, 1.0, seed=7)
    centre = tuple(k // 2 for k in shape[:-2])
    h = kernel[centre].astype(np.float64)
    rows, cols = shape[-2:]
    gram = h @ h.T if rows <= cols else h.T @ h
    assert np.abs(gram - np.eye(min(rows, cols))).max() < 1e-6
    others = kernel.copy()
    others[centre] = 0
    assert not others.any()


def test_gain_and_seed():
    a, b = delta_orthogonal((3, 3, 8, 8), np.sqrt(2), seed=1), delta_orthogonal((3, 3, 8, 8), np.sqrt(2), seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, delta_orthogonal((3, 3, 8, 8), np.sqrt(2), seed=2))
    assert np.allclose(a[1, 1] @ a[1, 1].T, 2 * np.eye(8), atol=1e-5)
    depthwise = delta_orthogonal((3, 3, 6, 2), 1.0, seed=0, depthwise=True)
    assert np.allclose(np.linalg.norm(depthwise[1, 1], axis=1), 1.0, atol=1e-6)
    assert np.allclose(orthogonal(5, 3, np.random.default_rng(0)).T @ orthogonal(5, 3, np.random.default_rng(0)),
                       np.eye(3), atol=1e-10)


LINEAR_STACK = ["initializer=delta_orthogonal", "+model.layers=[" + ",".join(
    ["{type:conv2d,filters:16,kernel_size:3,padding:same,activation:linear}"] * 20) + "]"]


def test_twenty_linear_conv_layers_are_an_isometry(compose):
    """Xiao et al. 2018: with same padding, 16 channels throughout and zero biases, every singular value is 1."""
    cfg = compose(LINEAR_STACK)
    model = modelforge.build_model(cfg, input_shape=(4, 4, 16))
    stack = keras.Model(model.input, model.get_layer("layer20_conv2d").output)
    assert all(not np.any(layer_weight(model.get_layer(f"layer{i}_conv2d"), "bias").numpy()) for i in range(1, 21))
    x = tf.random.stateless_normal((1, 4, 4, 16), seed=(0, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reshape(stack(x), (-1,))
    jacobian = tape.jacobian(y, x).numpy().reshape(256, 256).astype(np.float64)
    values = np.linalg.svd(jacobian, compute_uv=False)
    assert values.max() / values.min() == pytest.approx(1.0, abs=1e-3)
    assert values.max() == pytest.approx(1.0, abs=1e-3)


def test_he_and_glorot_stacks_are_far_from_it(compose):
    cfg = compose([LINEAR_STACK[1], "initializer=he_normal"])
    model = modelforge.build_model(cfg, input_shape=(4, 4, 16))
    stack = keras.Model(model.input, model.get_layer("layer20_conv2d").output)
    x = tf.random.stateless_normal((1, 4, 4, 16), seed=(0, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reshape(stack(x), (-1,))
    values = np.linalg.svd(tape.jacobian(y, x).numpy().reshape(256, 256), compute_uv=False)
    assert values.max() / values.min() > 10


def test_plan_rows_and_what_the_builder_writes(compose, tmp_path):
    cfg = compose(["initializer=delta_orthogonal", "+model.layers=[{type:conv2d,filters:8,kernel_size:3},"
                   "{type:conv2d,filters:4,kernel_size:3},{type:depthwise_conv2d,kernel_size:3,padding:same},"
                   "{type:flatten},{type:dense,units:6,activation:tanh}]"])
    plan = modelforge.plan(cfg)
    rows = {e.path: e for e in plan.entries}
    assert rows["layer1_conv2d/kernel"].choice.label == "delta_orthogonal(gain=1.414)"
    assert rows["layer5_dense/kernel"].choice.params["gain"] == 1.0  # tanh: Glorot's gain
    assert rows["layer5_dense/kernel"].build == ("orthogonal", {"gain": 1.0})
    assert "c_in=8 > c_out=4" in rows["layer2_conv2d/kernel"].choice.note  # no orthogonal centre: says what instead
    from modelforge.core.init.plan import format_table

    table = format_table(plan)
    assert "layer2_conv2d/kernel (c_in=8 > c_out=4: orthonormal columns" in table
    assert "not convolutions, so orthogonal with the same gain: layer5_dense/kernel, head/kernel" in table
    model = modelforge.build_model(cfg)
    for entry in plan.computed("delta_orthogonal"):
        values = layer_weight(model.get_layer(entry.layer), entry.weight).numpy()
        expected = delta_orthogonal(entry.shape, entry.computed["gain"], entry.seed, entry.computed["depthwise"])
        assert np.array_equal(values, expected), entry.path
        assert float(np.sqrt(np.mean(values ** 2))) == pytest.approx(entry.target_std, rel=1e-4)  # its RMS
    dense = layer_weight(model.get_layer("layer5_dense"), "kernel").numpy()
    assert np.allclose(dense.T @ dense, np.eye(6), atol=1e-5)  # 36 x 6: orthonormal columns, gain 1
    # model.keras names only Keras' own initializers, and loads without modelforge's code.
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("layer1_conv2d").get_config()["kernel_initializer"]["class_name"] == "Orthogonal"
    saved, built = (m.get_layer("layer1_conv2d").kernel.numpy() for m in (loaded, model))
    assert np.array_equal(saved, built)


def test_family_rules_take_orthogonal_and_delta_orthogonal(compose):
    plan = modelforge.plan(compose(["activation=tanh", "initializer.families.saturating=orthogonal"]))
    assert {e.choice.name for e in plan.entries if e.weight == "kernel"} == {"orthogonal"}
    plan = modelforge.plan(compose(["layer=conv", "initializer.families.rectifier=delta_orthogonal"]))
    kinds = {e.layer: e.choice.name for e in plan.entries if e.weight == "kernel"}
    assert kinds == {"block1_conv2d": "delta_orthogonal", "block2_conv2d": "delta_orthogonal",
                     "head": "glorot_uniform"}


@pytest.mark.parametrize("kernel", ["2", "[3,2]", "4"])
def test_an_even_kernel_has_no_centre_and_is_refused(compose, kernel):
    layers = f"[{{type:conv2d,filters:4,kernel_size:{kernel}}},{{type:flatten}}]"
    assert_refused(lambda: modelforge.plan(compose(["initializer=delta_orthogonal", f"+model.layers={layers}"])),
                   "delta_orthogonal needs an odd kernel size, and layer1_conv2d/kernel")
