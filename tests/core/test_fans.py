"""True fans for every layer kind: the plan against hand-derived numbers, the built kernels against the plan."""

import math

import keras
import numpy as np
import pytest

import modelforge
from modelforge.core.init.plan import derive_seed

# (data shape, layer spec, {weight: (true fan_in, true fan_out, Keras' guess or None when it agrees)})
CASES = {
    "dense": ([40], {"type": "dense", "units": 300}, {"kernel": (40, 300, None)}),
    "conv1d": ([16, 12], {"type": "conv1d", "filters": 32, "kernel_size": 5}, {"kernel": (60, 160, None)}),
    "conv2d_groups": ([8, 8, 32], {"type": "conv2d", "filters": 64, "kernel_size": 3, "groups": 4},
                      {"kernel": (72, 144, (72, 576))}),
    "conv3d": ([4, 4, 4, 8], {"type": "conv3d", "filters": 16, "kernel_size": 3, "padding": "same"},
               {"kernel": (216, 432, None)}),
    "conv1d_transpose": ([16, 24], {"type": "conv1d_transpose", "filters": 32, "kernel_size": 4, "strides": 2},
                         {"kernel": (48, 128, (128, 96))}),
    "conv2d_transpose": ([6, 6, 16], {"type": "conv2d_transpose", "filters": 32, "kernel_size": 3, "strides": 2,
                                      "padding": "same"}, {"kernel": (36, 288, (288, 144))}),
    "conv3d_transpose": ([3, 3, 3, 8], {"type": "conv3d_transpose", "filters": 8, "kernel_size": 2},
                         {"kernel": (64, 64, None)}),
    "depthwise_conv1d": ([32, 16], {"type": "depthwise_conv1d", "kernel_size": 5, "depth_multiplier": 2},
                         {"kernel": (5, 10, (80, 10))}),
    "depthwise_conv2d": ([8, 8, 32], {"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 3},
                         {"kernel": (9, 27, (288, 27))}),
    "separable_conv1d": ([32, 16], {"type": "separable_conv1d", "filters": 64, "kernel_size": 5},
                         {"depthwise_kernel": (5, 5, (80, 5)), "pointwise_kernel": (16, 64, None)}),
    "separable_conv2d": ([8, 8, 16], {"type": "separable_conv2d", "filters": 32, "kernel_size": 3,
                                      "depth_multiplier": 2},
                         {"depthwise_kernel": (9, 18, (144, 18)), "pointwise_kernel": (32, 32, None)}),
    "simple_rnn": ([8, 40], {"type": "simple_rnn", "units": 64},
                   {"kernel": (40, 64, None), "recurrent_kernel": (64, 64, None)}),
    "lstm": ([8, 40], {"type": "lstm", "units": 64},
             {"kernel": (40, 64, (40, 256)), "recurrent_kernel": (64, 64, (64, 256))}),
    "gru": ([8, 40], {"type": "gru", "units": 64},
            {"kernel": (40, 64, (40, 192)), "recurrent_kernel": (64, 64, (64, 192))}),
    "embedding": (None, {"type": "embedding", "input_dim": 17, "output_dim": 64},
                  {"embeddings": (1, 64, (17, 64))}),
}


def compose_case(compose, shape, spec, extra=()):
    overrides = ["+model.layers=[{" + ",".join(f"{k}:{v}" for k, v in spec.items()) + "}]"]
    if shape is None:
        overrides.append("data.layout=tokens")
    else:
        overrides += ["data=synthetic", f"data.shape=[{','.join(map(str, shape))}]", "data.num_samples=64"]
    return compose([*overrides, *extra])


def layer_name(spec):
    return f"layer1_{spec['type']}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_fans_match_hand_derived(compose, case):
    shape, spec, expected = CASES[case]
    plan = modelforge.plan(compose_case(compose, shape, spec))
    entries = {e.weight: e for e in plan.for_layer(layer_name(spec))}
    for weight, (fan_in, fan_out, guess) in expected.items():
        entry = entries[weight]
        assert (entry.fan_in, entry.fan_out) == (fan_in, fan_out), weight
        assert entry.keras_fans == guess, weight
        if entry.choice.name != "orthogonal":
            scale, mode = {"he_normal": (2.0, "fan_in"), "glorot_uniform": (1.0, "fan_avg")}[entry.choice.name]
            n = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
            assert entry.target_std == pytest.approx(math.sqrt(scale / n))


@pytest.mark.parametrize("case", sorted(CASES))
def test_built_kernels_follow_the_plan(compose, case):
    shape, spec, expected = CASES[case]
    cfg = compose_case(compose, shape, spec)
    plan = modelforge.plan(cfg)
    model = modelforge.build_model(cfg)
    layer = model.get_layer(layer_name(spec))
    values = {w.name: w.numpy() for w in layer.weights}
    for entry in plan.for_layer(layer_name(spec)):
        if entry.weight not in expected:
            continue
        drawn = values[entry.weight]
        assert drawn.shape == entry.shape
        # The sample std of n draws is off by about std / sqrt(2n); allow four of those.
        tolerance = 4 / math.sqrt(2 * drawn.size)
        assert drawn.std() == pytest.approx(entry.target_std, rel=tolerance), entry.weight
        if entry.choice.name == "he_normal":
            assert np.abs(drawn).max() <= 2 * entry.target_std / 0.87962566103423978 + 1e-6
        if entry.choice.name == "glorot_uniform":
            assert np.abs(drawn).max() <= math.sqrt(3) * entry.target_std + 1e-6


# The policy's Glorot uniform: embeddings have no activation (linear), recurrent cells keep tanh under
# activation=auto. Every other case runs relu, so He normal.
GLOROT_TYPES = ("embedding", "simple_rnn", "lstm", "gru")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_identical_with_hand_written_keras(compose, case):
    """Where Keras' guess is right, plain Keras with the same seed; where not, the hand-corrected scale."""
    shape, spec, expected = CASES[case]
    cfg = compose_case(compose, shape, spec)
    layer = modelforge.build_model(cfg).get_layer(layer_name(spec))
    values = {w.name: w.numpy() for w in layer.weights}
    for weight, (fan_in, fan_out, guess) in expected.items():
        seed = derive_seed(0, f"{layer_name(spec)}/{weight}")
        kernel_shape = values[weight].shape
        if weight == "recurrent_kernel":
            by_hand = keras.initializers.Orthogonal(seed=seed)(kernel_shape)
        elif spec["type"] in GLOROT_TYPES:
            scale = (sum(guess) if guess else fan_in + fan_out) / (fan_in + fan_out)
            by_hand = keras.initializers.VarianceScaling(scale, "fan_avg", "uniform", seed=seed)(kernel_shape)
        elif guess is None:
            by_hand = keras.initializers.HeNormal(seed=seed)(kernel_shape)
        else:
            by_hand = keras.initializers.VarianceScaling(2.0 * guess[0] / fan_in, "fan_in", "truncated_normal",
                                                         seed=seed)(kernel_shape)
        np.testing.assert_array_equal(values[weight], np.asarray(by_hand), err_msg=weight)


def test_plan_table_says_what_was_done_where_keras_would_guess_other_fans(compose):
    from modelforge.core.init.plan import format_table

    cfg = compose(["+model.layers=[{type:lstm,units:4,return_sequences:true},{type:depthwise_conv1d,kernel_size:3,"
                   "initializer:{_target_:tests.custom_init.GainNormal}}]"])
    notes = format_table(modelforge.plan(cfg)).splitlines()[-4:]
    assert notes[0].startswith("* true fans of the layer's computation; Keras would guess layer1_lstm/kernel (8, 16)")
    assert notes[1] == "  scale corrected, so the values get the true fans' variance: layer1_lstm/kernel"
    assert notes[2] == "  true fans handed to the custom initializer: layer2_depthwise_conv1d/kernel"
    assert notes[3] == "  their initializer does not use fans (e.g. orthogonal): layer1_lstm/recurrent_kernel"
