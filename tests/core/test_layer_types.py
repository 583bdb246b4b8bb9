"""Every layer type of the registry (`modelforge.core.model.layer_types.LAYER_TYPES`) plans and builds; its plan's
fans as Keras computes them equal Keras' own `compute_fans` of the built weight, and each drawn weight's std equals
the plan's `target_std` within 3 standard errors."""

import math

import pytest
from keras.src.initializers.random_initializers import compute_fans
from keras.src.layers.core.einsum_dense import _analyze_einsum_string

import modelforge
from modelforge.core.model.layer_types import LAYER_TYPES
from modelforge.layers import layer_class, weight_name

# Per type: the data's shape (None: token ids) and the layer's keys. A merge reads two dense layers.
SEQUENCE, IMAGE, VOLUME = [16, 6], [8, 8, 4], [4, 4, 4, 2]
CASES = {
    "dense": ([40], {"units": 30}),
    "embedding": (None, {"input_dim": 17, "output_dim": 16}),
    "flatten": (IMAGE, {}),
    "dropout": ([40], {"rate": 0.2}),
    "activation": ([40], {"activation": "tanh"}),
    "batch_normalization": ([40], {}),
    "layer_normalization": ([40], {}),
    "add": ([40], {}),
    "concatenate": ([40], {}),
    "gate": ([40], {}),
    "layer_scale": ([40], {}),
    "scale": ([40], {}),
    "multi_head_attention": (SEQUENCE, {"num_heads": 2, "key_dim": 4}),
    "position_embedding": (SEQUENCE, {}),
    "simple_rnn": (SEQUENCE, {"units": 12}),
    "lstm": (SEQUENCE, {"units": 12}),
    "gru": (SEQUENCE, {"units": 12}),
}
for dims, shape in ((1, SEQUENCE), (2, IMAGE), (3, VOLUME)):
    CASES.update({
        f"conv{dims}d": (shape, {"filters": 8, "kernel_size": 3, "padding": "same"}),
        f"conv{dims}d_transpose": (shape, {"filters": 8, "kernel_size": 2, "strides": 2}),
        f"max_pooling{dims}d": (shape, {"pool_size": 2}),
        f"average_pooling{dims}d": (shape, {"pool_size": 2}),
        f"global_average_pooling{dims}d": (shape, {}),
        f"global_max_pooling{dims}d": (shape, {}),
    })
    if dims < 3:
        CASES[f"depthwise_conv{dims}d"] = (shape, {"kernel_size": 3, "depth_multiplier": 2})
        CASES[f"separable_conv{dims}d"] = (shape, {"filters": 8, "kernel_size": 3})


def keras_fans_of(layer, weight, shape):
    """The fans Keras 3.15 computes for a built weight: from the shape, or, for an attention projection's einsum
    kernel, from the axes its EinsumDense derives from its equation (Keras' own analysis of it)."""
    if "/" not in weight:
        return compute_fans(shape)
    projection = weight.split("/")[0]
    sub = getattr(layer, "_output_dense" if projection == "attention_output" else f"_{projection}_dense")
    inputs, kernel = sub.equation.split("->")[0].split(",")
    source = tuple(shape[kernel.index(c)] if c in kernel else 5 for c in inputs)  # the einsum's input, as built
    *_, input_axes, output_axes = _analyze_einsum_string(sub.equation, sub.bias_axes, source,
                                                         sub.partial_output_shape)
    return compute_fans(shape, input_axes, output_axes)


def test_every_layer_type_has_a_case():
    assert set(CASES) == set(LAYER_TYPES)


def overrides(name):
    shape, keys = CASES[name]
    spec = ",".join(f"{k}:{v}" for k, v in {"type": name, "name": "probe", **keys}.items())
    if LAYER_TYPES[name].merge is not None:
        layers = ("[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[inputs]},"
                  f"{{{spec},inputs:[a,b]}}]")
    else:
        layers = f"[{{{spec}}}]"
    data = ["data.layout=tokens"] if shape is None else [
        "data=synthetic", f"data.shape=[{','.join(map(str, shape))}]", "data.num_samples=64"]
    return [f"+model.layers={layers}", "model.units=4", *data]


@pytest.mark.parametrize("name", sorted(LAYER_TYPES))
def test_each_layer_type_plans_and_builds_as_keras_computes_it(compose, name):
    cfg = compose(overrides(name))
    plan = modelforge.plan(cfg)
    layer = modelforge.build_model(cfg).get_layer("probe")
    assert type(layer) is layer_class(LAYER_TYPES[name].keras_class)
    built = {weight_name(layer, w): w.numpy() for w in layer.weights}  # an attention layer's query/kernel
    entries = plan.for_layer("probe")
    assert {e.weight for e in entries} <= set(built)
    for entry in entries:
        drawn = built[entry.weight]
        assert drawn.shape == entry.shape, entry.weight
        if entry.fan_in is not None:
            # The plan says what Keras computes where it differs from the true fans (None: they agree).
            assert (entry.keras_fans or (entry.fan_in, entry.fan_out)) == keras_fans_of(layer, entry.weight,
                                                                                       drawn.shape), entry.weight
        if entry.target_std:
            # The sample std of n draws is off by about std / sqrt(2n) (a bell's kurtosis; a uniform's is less).
            error = entry.target_std / math.sqrt(2 * drawn.size)
            assert abs(drawn.std() - entry.target_std) <= 3 * error, (entry.weight, drawn.std(), entry.target_std)
