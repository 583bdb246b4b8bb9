"""The one walk of the model: a two-input toy graph goes through the specs (pure core), the builder (Keras), LSUV
and the init health report's probe, none of which is told it is not a chain."""

import keras
import numpy as np
import pytest

import modelforge
from modelforge.build import build
from modelforge.core.init.plan import make_plan
from modelforge.core.names import INPUTS
from tests.helpers import FAST, assert_refused

# Two dense branches over the inputs, added: `b` names the model's inputs, `sum` both branches.
TOY = ["+model.layers=[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[inputs]},"
       "{type:add,name:sum,inputs:[a,b]}]"]


def test_the_specs_of_a_two_input_graph(compose):
    plan = make_plan(modelforge.run_config(compose([*FAST, *TOY])))
    specs = {spec.name: spec for spec in plan.specs}
    assert list(specs) == ["a", "b", "sum", "head"]
    assert [specs[n].inputs for n in specs] == [(INPUTS,), (INPUTS,), ("a", "b"), ("sum",)]
    assert specs["sum"].output_shape == (8,) and specs["sum"].weights == []
    assert {(e.layer, e.fan_in, e.fan_out) for e in plan.entries if e.weight == "kernel"} == {
        ("a", 64, 8), ("b", 64, 8), ("head", 8, 10)}
    a, b = (next(e.seed for e in plan.entries if e.path == f"{n}/kernel") for n in "ab")
    assert a != b  # each branch draws its own weights


def test_the_builder_makes_the_graph_keras_would(compose):
    """The built model's output is the hand-computed one: relu(x Wa + ba) + relu(x Wb + bb), then the head."""
    plan = make_plan(modelforge.run_config(compose([*FAST, *TOY])))
    model = build(plan)
    assert len(model.get_layer("sum").input) == 2
    x = np.random.default_rng(0).standard_normal((5, 64)).astype("float32")
    w = {layer.name: [v.numpy().astype(np.float64) for v in layer.weights] for layer in model.layers}
    branch = [np.maximum(x @ w[n][0] + w[n][1], 0) for n in "ab"]
    logits = (branch[0] + branch[1]) @ w["head"][0] + w["head"][1]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-5, atol=1e-6)


def test_lsuv_and_the_probe_walk_the_graph(compose, tmp_path):
    """LSUV measures each branch on the model's inputs and the layer after the sum on the sum (each at unit
    pre-activation variance where the walk fed it); the report's probe steps through every layer."""
    from modelforge.analysis.probe import run_probe
    from modelforge.initializers.lsuv import pre_activation

    after = TOY[0][:-1] + ",{type:dense,name:c,units:8}]"
    plan = make_plan(modelforge.run_config(compose([*FAST, after, "initializer=lsuv"])))
    sample = np.random.default_rng(1).standard_normal((256, 64)).astype("float32")
    model = build(plan, sample=sample)
    assert {path.split("/")[0] for path in plan.measured} == {"a", "b", "c"}
    summed = model.get_layer("sum")([model.get_layer("a")(sample), model.get_layer("b")(sample)])
    for layer, given in (("a", sample), ("b", sample), ("c", summed)):
        pre = keras.ops.convert_to_numpy(pre_activation(model.get_layer(layer), given))
        assert abs(pre.var() - 1.0) <= 0.1, layer
    steps, loss = run_probe(model, plan, sample[:32], np.zeros(32, dtype="int64"))
    assert [s.layer.name for s in steps] == ["a", "b", "sum", "c", "head"] and np.isfinite(loss)


def test_a_graph_trains_and_its_run_folder_is_whole(compose, tmp_path):
    result = modelforge.train(compose([*FAST, *TOY]), run_dir=tmp_path / "run")
    assert result["status"] == "completed" and [layer.name for layer in result.model.layers][-2:] == ["sum", "head"]


@pytest.mark.parametrize(("layers", "words"), [
    ("[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[aa]}]", ["takes 'aa'", "did you mean 'a'"]),
    ("[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[inputs]}]", ["'a': no later layer"]),
    ("[{type:dense,name:a,units:8},{type:add,name:s}]", ["'s' (add) takes two or more inputs"]),
    ("[{type:dense,name:a,units:8},{type:dense,name:b,units:4,inputs:[inputs]},{type:dense,name:c,units:2,"
     "inputs:[a,b]}]", ["'c' (dense) takes one input, not 2"]),
    ("[{type:dense,name:a,units:8},{type:dense,name:b,units:4,inputs:[inputs]},{type:add,name:s,inputs:[a,b]}]",
     ["'s' (add): add takes inputs of one shape, not [8] and [4]"]),
    ("[{type:dense,name:a,units:8},{type:dense,name:b,units:4,inputs:[inputs]},"
     "{type:concatenate,name:s,inputs:[a,b]}]", []),
    ("[{type:dense,name:inputs,units:8}]", ["two layers are named 'inputs'"]),
])
def test_a_graph_that_cannot_be_walked_is_refused_naming_the_layer(compose, layers, words):
    run = modelforge.run_config(compose([*FAST, f"+model.layers={layers}"]))
    if not words:  # concatenate joins [8] and [4] into [12]
        assert {s.name: s.output_shape for s in make_plan(run).specs}["s"] == (12,)
        return
    assert_refused(lambda: make_plan(run), *words)

