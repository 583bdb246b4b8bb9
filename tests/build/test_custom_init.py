"""Initializers from config: variance_scaling everywhere, a user's class through _target_, PReLU's slope."""

import math
import subprocess
import sys

import keras
import numpy as np
import pytest

import modelforge
from modelforge.errors import ConfigError
from tests.helpers import FAST, assert_refused

TARGET = "tests.custom_init.GainNormal"
DEPTHWISE = ("+model.layers=[{type:depthwise_conv2d,kernel_size:3,depth_multiplier:64,"
             "initializer:{_target_:" + TARGET + ",gain:2.0}}]")


def test_custom_class_gets_true_fans_and_seed(compose):
    cfg = compose([DEPTHWISE])
    entry = modelforge.plan(cfg).for_layer("layer1_depthwise_conv2d")[0]
    assert (entry.choice.name, entry.choice.source, entry.target_std) == ("custom", "layer", None)
    layer = modelforge.build_model(cfg).get_layer("layer1_depthwise_conv2d")
    init = layer.depthwise_initializer
    assert isinstance(init, keras.initializers.Initializer) and type(init).__name__ == "GainNormal"
    assert entry.seed is not None and (init.fan_in, init.fan_out, init.seed) == (9, 9 * 64, entry.seed)
    kernel = layer.kernel.numpy()
    # The sample std of n draws is off by about std / sqrt(2n); allow four of those.
    assert kernel.std() == pytest.approx(2.0 / math.sqrt(9), rel=4 / math.sqrt(2 * kernel.size))
    again = modelforge.build_model(cfg).get_layer("layer1_depthwise_conv2d").kernel.numpy()
    np.testing.assert_array_equal(kernel, again)


def test_custom_class_as_the_initializer_override(compose):
    cfg = compose(["~initializer", f"+initializer._target_={TARGET}", "+initializer.gain=1.0", "model.units=256"])
    entries = [e for e in modelforge.plan(cfg).entries if e.weight == "kernel"]
    assert {e.choice.source for e in entries} == {"override"}
    kernel = modelforge.build_model(cfg).get_layer("block2_dense").kernel.numpy()
    assert kernel.std() == pytest.approx(1 / 16, rel=0.03)


def test_custom_class_serializes_and_loads(compose, tmp_path):
    metrics = modelforge.train(compose([DEPTHWISE, *FAST]), run_dir=tmp_path)
    assert metrics["status"] == "completed"
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.get_layer("layer1_depthwise_conv2d").depthwise_initializer).__name__ == "GainNormal"
    # Without the class registered, a plain Keras process cannot rebuild it: the README says to register it.
    code = f"import keras; keras.models.load_model(r'{tmp_path / 'model.keras'}')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode != 0 and "GainNormal" in result.stderr


def test_bad_target_is_a_config_error(compose):
    layers = "+model.layers=[{type:dense,units:4,initializer:{_target_:nowhere.Nothing}}]"
    assert_refused(lambda: modelforge.plan(compose([layers])), "nowhere.Nothing")


def test_prelu_slope_drives_he_scale_and_starts_at_slope(compose):
    cfg = compose(["activation=prelu", "activation.negative_slope=0.5", "layer=conv", "model.units=64"])
    plan = modelforge.plan(cfg)
    kernel = plan.for_layer("block2_conv2d")[0]
    assert kernel.choice.params["scale"] == pytest.approx(2 / 1.25)
    assert kernel.target_std == pytest.approx(math.sqrt(1.6 / (9 * 64)))
    (alpha,) = plan.for_layer("block2_conv2d_prelu")
    assert alpha.shape == (1, 1, 64)
    model = modelforge.build_model(cfg)
    np.testing.assert_array_equal(model.get_layer("block2_conv2d_prelu").alpha.numpy(), np.full((1, 1, 64), 0.5))
    assert len(model.weights) == len(plan.entries)


def test_changing_one_layer_does_not_reseed_the_others(compose):
    layers = "+model.layers=[{type:dense,units:16},{type:dense,units:16},{type:dense,units:%d}]"
    a = modelforge.build_model(compose([layers % 16]))
    b = modelforge.build_model(compose([layers % 8]))
    for name in ("layer1_dense", "layer2_dense"):
        np.testing.assert_array_equal(a.get_layer(name).kernel.numpy(), b.get_layer(name).kernel.numpy())
    assert a.get_layer("layer3_dense").kernel.shape != b.get_layer("layer3_dense").kernel.shape


@pytest.mark.slow
def test_initial_weights_identical_across_processes(tmp_path):
    code = ("import sys, numpy, modelforge; m = modelforge.build_model(modelforge.compose(['layer=conv', "
            "'activation=leaky_relu'])); numpy.savez(sys.argv[1], *[w.numpy() for w in m.weights])")
    for name in ("a.npz", "b.npz"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, timeout=300)
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert len(a.files) == len(b.files) == 6
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize(("extra", "words"), [
    ([], "NotImplementedError: Initializer subclasses must implement"),
    (["+initializer.value=abc"], "Cast string to float is not supported"),
])
def test_an_initializer_that_cannot_draw_is_bad_input_before_any_layer(compose, extra, words):
    """Keras' abstract base, or Constant with a string: one paragraph naming the initializer and the weight."""
    target = "keras.initializers.Initializer" if not extra else "keras.initializers.Constant"
    cfg = compose(["~initializer", f"+initializer._target_={target}", *extra, "model.depth=1", "model.units=4"])
    with pytest.raises(ConfigError, match=f"initializer {target} .* cannot draw block1_dense/kernel's values") as err:
        modelforge.build_model(cfg)
    assert words in str(err.value)
