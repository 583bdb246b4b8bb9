"""Built models: identical to hand-written Keras with the same seeds, and kernels with the planned std."""

import keras
import numpy as np
import pytest

import modelforge
from modelforge.core.init.plan import derive_seed
from tests.helpers import assert_refused


def weights_of(model):
    return {w.path: w.numpy() for w in model.weights}


def paths(model):
    return [w.path.removeprefix(f"{model.name}/") for w in model.weights]


def assert_same_model(built, by_hand):
    assert paths(built) == paths(by_hand)
    for a, b in zip(built.weights, by_hand.weights):
        assert a.shape == b.shape, a.path
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def seeded(cls, path, run_seed=0, **kwargs):
    """A Keras initializer seeded as modelforge seeds the weight at `path`."""
    return cls(seed=derive_seed(run_seed, path), **kwargs)


I = keras.initializers  # noqa: E741
L = keras.layers


def test_default_mlp_equals_hand_written_keras(compose):
    built = modelforge.build_model(compose(["seed=3"]))
    by_hand = keras.Sequential([
        keras.Input((64,)),
        L.Dense(64, "relu", name="block1_dense", kernel_initializer=seeded(I.HeNormal, "block1_dense/kernel", 3)),
        L.Dense(64, "relu", name="block2_dense", kernel_initializer=seeded(I.HeNormal, "block2_dense/kernel", 3)),
        L.Dense(10, "softmax", name="head", kernel_initializer=seeded(I.GlorotUniform, "head/kernel", 3)),
    ])
    assert_same_model(built, by_hand)


def test_conv_with_override_equals_hand_written_keras(compose):
    built = modelforge.build_model(compose(["layer=conv", "initializer=he_normal", "model.units=8"]))
    by_hand = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv2d",
                 kernel_initializer=seeded(I.HeNormal, "block1_conv2d/kernel")),
        L.MaxPooling2D(2, name="block1_pool"),
        L.Conv2D(8, 3, padding="same", activation="relu", name="block2_conv2d",
                 kernel_initializer=seeded(I.HeNormal, "block2_conv2d/kernel")),
        L.MaxPooling2D(2, name="block2_pool"),
        L.Flatten(name="flatten"),
        L.Dense(10, "softmax", name="head", kernel_initializer=seeded(I.HeNormal, "head/kernel")),
    ])
    assert_same_model(built, by_hand)
    assert built.output_shape == by_hand.output_shape == (None, 10)


def per_gate_glorot(path, in_features, units, gates=4):
    """Glorot uniform over one gate's (in_features, units), as a Keras initializer on the whole kernel.

    Keras would divide by the whole kernel's mean fan (in_features + gates * units) / 2; the gate's own is
    (in_features + units) / 2, so the scale is their ratio.
    """
    scale = (in_features + gates * units) / (in_features + units)
    return seeded(I.VarianceScaling, path, scale=scale, mode="fan_avg", distribution="uniform")


def test_lstm_equals_hand_written_keras_with_per_gate_fans(compose):
    built = modelforge.build_model(compose(["layer=lstm", "model.depth=2", "model.units=6"]))
    by_hand = keras.Sequential([
        keras.Input((8, 8)),
        L.LSTM(6, activation="tanh", return_sequences=True, name="block1_lstm",
               kernel_initializer=per_gate_glorot("block1_lstm/kernel", 8, 6),
               recurrent_initializer=seeded(I.Orthogonal, "block1_lstm/recurrent_kernel")),
        L.LSTM(6, activation="tanh", name="block2_lstm",
               kernel_initializer=per_gate_glorot("block2_lstm/kernel", 6, 6),
               recurrent_initializer=seeded(I.Orthogonal, "block2_lstm/recurrent_kernel")),
        L.Dense(10, "softmax", name="head", kernel_initializer=seeded(I.GlorotUniform, "head/kernel")),
    ])
    assert_same_model(built, by_hand)


def test_explicit_layers_with_layer_initializer_and_leaky_relu(compose):
    layers = ("+model.layers=[{type:conv2d,filters:4,kernel_size:3,activation:{name:leaky_relu,negative_slope:0.1}},"
              "{type:max_pooling2d,pool_size:2},{type:flatten},{type:dropout,rate:0.1},"
              "{type:dense,units:5,activation:tanh,initializer:lecun_normal}]")
    cfg = compose([layers])
    built = modelforge.build_model(cfg)
    leaky_he = seeded(I.VarianceScaling, "layer1_conv2d/kernel", scale=2 / (1 + 0.1**2), mode="fan_in",
                      distribution="truncated_normal")
    by_hand = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(4, 3, activation="linear", name="layer1_conv2d", kernel_initializer=leaky_he),
        L.LeakyReLU(negative_slope=0.1, name="layer1_conv2d_leaky_relu"),
        L.MaxPooling2D(2, name="layer2_max_pooling2d"),
        L.Flatten(name="layer3_flatten"),
        L.Dropout(0.1, name="layer4_dropout"),
        L.Dense(5, "tanh", name="layer5_dense", kernel_initializer=seeded(I.LecunNormal, "layer5_dense/kernel")),
        L.Dense(10, "softmax", name="head", kernel_initializer=seeded(I.GlorotUniform, "head/kernel")),
    ])
    assert_same_model(built, by_hand)
    plan = modelforge.plan(cfg)
    sources = {(e.layer, e.weight): e.choice.source for e in plan.entries}
    assert sources[("layer5_dense", "kernel")] == "layer"
    assert sources[("layer1_conv2d", "kernel")] == "policy:leaky_relu"


def test_no_two_layers_share_values_and_builds_repeat(compose):
    cfg = compose(["model.depth=3", "model.units=32", "initializer=he_uniform"])
    first, second = modelforge.build_model(cfg), modelforge.build_model(cfg)
    w = weights_of(first)
    kernels = [w["block2_dense/kernel"], w["block3_dense/kernel"]]
    assert kernels[0].shape == kernels[1].shape
    assert not np.array_equal(*kernels)
    for path, value in weights_of(second).items():
        np.testing.assert_array_equal(value, w[path])
    other_seed = weights_of(modelforge.build_model(compose(["model.depth=3", "model.units=32", "seed=1"])))
    assert not np.array_equal(other_seed["block2_dense/kernel"], w["block2_dense/kernel"])


@pytest.mark.parametrize("init", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal",
                                  "lecun_uniform", "orthogonal", "variance_scaling"])
def test_sample_std_matches_target_std(compose, init):
    # 256x256 kernels: 65k draws put the sample std within about 1% of the truth.
    cfg = compose([f"initializer={init}", "model.units=256", "model.depth=2"])
    plan = modelforge.plan(cfg)
    model = modelforge.build_model(cfg)
    entry = next(e for e in plan.entries if (e.layer, e.weight) == ("block2_dense", "kernel"))
    values = model.get_layer("block2_dense").kernel.numpy()
    assert values.std() == pytest.approx(entry.target_std, rel=0.02)
    assert abs(values.mean()) < 0.02 * entry.target_std
    if "uniform" in init:
        limit = entry.target_std * np.sqrt(3)
        assert values.max() <= limit and values.min() >= -limit
        assert values.max() > 0.99 * limit
    if init.endswith("_normal") or init == "variance_scaling":
        # Keras truncates at two (pre-correction) standard deviations.
        assert np.abs(values).max() <= 2 * entry.target_std / 0.87962566103423978 + 1e-6


def test_conv_kernel_std_uses_receptive_field(compose):
    cfg = compose(["layer=conv", "model.units=128", "initializer=he_normal"])
    plan = modelforge.plan(cfg)
    entry = next(e for e in plan.entries if (e.layer, e.weight) == ("block2_conv2d", "kernel"))
    assert (entry.fan_in, entry.fan_out) == (3 * 3 * 128, 3 * 3 * 128)
    assert entry.target_std == pytest.approx(np.sqrt(2 / (9 * 128)))
    values = modelforge.build_model(cfg).get_layer("block2_conv2d").kernel.numpy()
    assert values.std() == pytest.approx(entry.target_std, rel=0.02)


@pytest.mark.parametrize(("bias", "shown", "base"), [(None, "zeros", 0.0), ("ones", "ones", 1.0),
                                                    ("{name:constant,value:0.5}", "constant", 0.5)])
def test_the_plan_shows_the_lstm_bias_as_keras_makes_it(compose, bias, shown, base):
    extra = [] if bias is None else [f"+model.layers=[{{type:lstm,units:5,bias_initializer:{bias}}}]"]
    cfg = compose(["layer=lstm", "model.depth=1", "model.units=5", *extra])
    plan = modelforge.plan(cfg)
    (entry,) = [e for e in plan.entries if e.type == "lstm" and e.weight == "bias"]
    assert "forget gate" in entry.choice.note and entry.choice.label.startswith(shown)
    assert entry.choice.label.endswith(", forget gate ones")
    assert f"{entry.choice.label}  " in modelforge.core.init.plan.format_table(plan)
    values = modelforge.build_model(cfg).get_layer(entry.layer).cell.bias.numpy()
    np.testing.assert_array_equal(values, np.r_[np.full(5, base), np.ones(5), np.full(10, base)])
    assert values.std() == pytest.approx(entry.target_std, abs=1e-7)


def test_deeper_than_pythons_recursion_limit_builds_and_past_10000_layers_is_refused(compose):
    """Keras maps a functional graph by recursing per layer, past Python's default limit at a few hundred layers;
    a model of more than 10,000 layers is refused before anything is planned."""
    assert_refused(lambda: modelforge.plan(compose(["model.depth=10001"])),
                   "model.depth=10001 is more than the 10,000 layers a model may have")
    from modelforge.core.config.schema import Model

    assert_refused(lambda: Model(depth=1, units=2, layers=[{"type": "dense"}] * 10001, blocks=None, output=None),
                   "model.layers holds 10,001 layer specs")
    model = modelforge.build_model(compose(["model.depth=1100", "model.units=2"]))
    assert len(model.layers) == 1102
