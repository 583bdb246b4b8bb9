"""`model.blocks`: a graph of named blocks expanded into layers named by block path, with repeats, residual
connections and their projections, merges and the output block; every graph mistake refused before shapes."""

import json
from pathlib import Path

import pytest

import modelforge
from modelforge.core.init.plan import make_plan
from modelforge.core.model.blocks import Defaults, expand
from modelforge.core.model.specs import layer_specs
from tests.helpers import FAST, assert_refused, plan_of

DENSE = Defaults("dense", {}, 8)
RES = {"type": "dense"}, {"type": "dense", "activation": "linear"}
BUNDLED = Path(__file__).parents[1] / "fixtures" / "main_700ace1" / "plans.json"


def names(body):
    return [(spec["name"], spec["inputs"]) for spec in body]


def test_repeat_names_copies_and_chains_them():
    body = expand({"stem": {"layers": [{"type": "dense"}]},
                   "res": {"repeat": 3, "residual": True, "layers": list(RES)}}, None, DENSE)
    assert [n for n, _ in names(body)] == ["stem.dense1", *[f"res{i}.{x}" for i in (1, 2, 3)
                                                             for x in ("dense1", "dense2", "add")]]
    adds = {name: inputs for name, inputs in names(body) if name.endswith(".add")}
    # Each add takes the stream first (the block's input), then its branch's end.
    assert adds == {"res1.add": ("stem.dense1", "res1.dense2"), "res2.add": ("res1.add", "res2.dense2"),
                    "res3.add": ("res2.add", "res3.dense2")}


def test_a_layer_spec_takes_the_layer_group_and_the_width_where_it_does_not_say():
    conv = Defaults("conv2d", {"kernel_size": 3, "padding": "same"}, 16)
    body = expand({"a": {"layers": [{}, {"type": "batch_normalization"}, {"filters": 4, "name": "last"}]}},
                  None, conv)
    assert body[0] == {"type": "conv2d", "kernel_size": 3, "padding": "same", "filters": 16, "name": "a.conv1",
                       "inputs": ("inputs",), "block": "a"}
    assert body[1]["name"] == "a.bn1" and "filters" not in body[1]
    assert body[2]["name"] == "a.last" and body[2]["filters"] == 4


def test_nested_blocks_name_layers_by_their_whole_path_and_read_names_in_their_scope():
    body = expand({"stem": {"layers": [{}]},
                   "stage1": {"blocks": {"res": {"repeat": 2, "residual": True, "after": "relu", "layers": list(RES)},
                                         "tail": {"input": "res", "layers": [{}]}}},
                   "top": {"merge": "add", "input": ["stage1.tail", "stem"]}}, None, DENSE)
    found = dict(names(body))
    assert found["stage1.res2.add"] == ("stage1.res1.after", "stage1.res2.dense2")
    assert found["stage1.res2.after"] == ("stage1.res2.add",)
    # `res` (its last copy) is read in stage1's scope; a top-level block names a nested one by its path.
    assert found["stage1.tail.dense1"] == ("stage1.res2.after",)
    assert found["top.add"] == ("stage1.tail.dense1", "stem.dense1")
    assert body[-1]["name"] == "top.add"


def test_a_block_named_reads_a_later_block_in_the_mapping_and_the_walk_reorders():
    body = expand({"a": {"layers": [{}]}, "c": {"merge": "concatenate", "input": ["a", "b"]},
                   "b": {"input": "a", "layers": [{}]}}, "c", DENSE)
    assert [n for n, _ in names(body)] == ["a.dense1", "b.dense1", "c.concatenate"]


@pytest.mark.parametrize(("blocks", "output", "words"), [
    ({"stage.1": {"layers": [{}]}}, None, ["'stage.1'", "without '.' or '/'"]),
    ({"a/b": {"layers": [{}]}}, None, ["'a/b'", "without '.' or '/'"]),
    ({"a": {"layer": [{}]}}, None, ["model.blocks.a.layer", "did you mean 'model.blocks.a.layers'"]),
    ({"a": {"layers": [{}]}, "b": {"input": "aa", "layers": [{}]}}, None, ["'aa'", "did you mean 'a'"]),
    ({"a": {"input": "b", "layers": [{}]}, "b": {"input": "a", "layers": [{}]}}, None, ["a, b", "cycle"]),
    ({"a": {"layers": [{}]}, "b": {"input": "a", "layers": [{}]}, "c": {"input": "a", "layers": [{}]}}, None,
     ["blocks b, c are read by no other block", "model.output=c"]),
    ({"a": {"layers": [{}]}, "b": {"layers": [{}]}}, "bb", ["model.output='bb'", "did you mean 'b'"]),
    ({"a": {"layers": [{}]}, "b": {"input": "a", "layers": [{}]}, "c": {"input": "a", "layers": [{}]}}, "c",
     ["block 'b' is not on the way to the head"]),
    ({"a": {"layers": [{}], "blocks": {"b": {"layers": [{}]}}}}, None, ["both layers and blocks"]),
    ({"a": {"residual": True, "merge": "add", "input": ["x", "y"]}}, None, ["residual: true and merge: add"]),
    ({"a": {"layers": [{}]}, "b": {"input": ["a", "a"], "layers": [{}]}}, None, ["merge: add or merge"]),
    ({"a": {"merge": "ad", "input": ["x", "y"]}}, None, ["'ad'", "did you mean 'add'"]),
    ({"a": {"repeat": 0, "layers": [{}]}}, None, ["model.blocks.a.repeat"]),
    ({"a": {"repeat": 2, "layers": [{}]}, "a2": {"layers": [{}]}}, None, ["two blocks or layers are named 'a2'"]),
    ({"a": {"layers": [{"type": "dense", "inputs": ["x"]}]}}, None, ["model.blocks.a.layers[0].inputs"]),
    ({"a": {"layers": [{"type": "dens"}]}}, None, ["model.blocks.a.layers[0]", "did you mean 'dense'"]),
])
def test_a_bad_graph_is_refused_naming_the_block_and_the_nearest_name(blocks, output, words):
    assert_refused(lambda: expand(blocks, output, DENSE), *words)


def test_a_residual_block_that_changes_the_shape_gets_a_projection_shown_in_the_plan(compose):
    plan = plan_of(compose, "model=resnet")
    shortcut = [e for e in plan.entries if e.place == "shortcut"]
    assert [(e.layer, e.block, e.shape) for e in shortcut] == [("stage2.res1.shortcut", "stage2.res1", (1, 1, 16, 32))]
    assert {e.layer.rsplit(".", 1)[0] for e in plan.entries if e.place == "branch_in"} == {
        "stage1.res1", "stage1.res2", "stage2.res1", "stage2.res2"}
    flat = plan_of(compose, "model=resmlp", "model.blocks.res.repeat=2", "+model.blocks.res.layers.1.units=4")
    proj = next(e for e in flat.entries if e.place == "shortcut")
    assert (proj.layer, proj.type, proj.shape) == ("res1.shortcut", "dense", (8, 4))


def test_a_strided_branch_gets_a_strided_projection(compose):
    specs, _ = layer_specs(modelforge.run_config(compose([
        *FAST, "model=resnet", "+model.blocks.stage2.blocks.res.layers.0.strides=2",
        "model.blocks.stage2.blocks.res.repeat=1"])))
    by_name = {s.name: s for s in specs}
    assert by_name["stage2.res1.shortcut"].args["strides"] == [2, 2]
    assert by_name["stage2.res1.shortcut"].output_shape == (2, 2, 32) == by_name["stage2.res1.bn2"].output_shape


def test_a_branch_no_projection_can_match_is_refused(compose):
    flatten = "+model.blocks.res.layers=[{type:dense},{type:flatten}]"
    assert_refused(lambda: plan_of(compose, "model=resmlp", "layer=conv", "model.blocks.stem.layers=[{filters:8}]",
                                   flatten), "block 'res1'", "no projection")


def test_repeat_sweeps_share_the_first_blocks_seeds(compose):
    seeds = {}
    for repeat in (2, 5):
        plan = plan_of(compose, "model=resmlp", f"model.blocks.res.repeat={repeat}")
        seeds[repeat] = {(e.layer, e.weight): e.seed for e in plan.entries if e.seed is not None}
    shared = {k: v for k, v in seeds[5].items() if k in seeds[2]}
    assert len(shared) == len(seeds[2]) and shared == seeds[2]
    assert seeds[5][("res5.dense1", "kernel")] not in seeds[2].values()


def test_a_block_added_last_by_a_group_needs_model_output_or_must_be_read(compose):
    extra = "+model.blocks.extra={input: stem, layers: [{type: dense}]}"
    assert_refused(lambda: plan_of(compose, "model=resmlp", extra), "blocks res10, extra are read by no other block")
    plan = plan_of(compose, "model=resmlp", extra, "model.output=res", "+model.blocks.res.input=extra")
    assert [e.layer for e in plan.entries if e.weight == "kernel"][:3] == ["stem.dense1", "extra.dense1",
                                                                           "res1.dense1"]


def test_the_keys_blocks_write_are_refused_in_a_layer_list(compose):
    assert_refused(lambda: plan_of(compose, "+model.layers=[{type:dense,name:a},{type:add,inputs:[inputs,a],"
                                            "shortcut:p}]"), "model.layers[1].shortcut", "model.blocks")


def test_blocks_and_layers_together_are_refused(compose):
    assert_refused(lambda: plan_of(compose, "model=resmlp", "model.layers=[{type:dense}]"),
                   "model.layers and model.blocks are both set")
    assert_refused(lambda: plan_of(compose, "model.output=res"), "model.output='res'", "no model.blocks")


def test_the_bundled_configs_plans_are_those_of_the_models_before_blocks(compose):
    """Every bundled model, layer, initializer and experiment plans as it did before `model.blocks` existed."""
    cases = json.loads(BUNDLED.read_text())["cases"]
    assert len(cases) >= 20
    for case in cases:
        plan = make_plan(modelforge.run_config(compose(case["overrides"])))
        assert json.loads(json.dumps(plan.as_json(), default=str)) == case["plan"], case["overrides"]


def test_a_bad_graph_on_the_command_line_exits_2_before_training(tmp_path):
    from tests.helpers import run_module

    refused = run_module(tmp_path, "model=resmlp", "+model.blocks.res.input=stm", "trainer.epochs=1")
    text = assert_refused(refused, "model.blocks.res.input='stm' names no block or layer", "did you mean 'stem'")
    assert text.endswith("blocks: stem, res"), text  # the blocks as the config names them, not res1 ... res10
    assert "TensorFlow" not in refused.stdout  # refused before the run's start-up line


def test_a_model_of_blocks_saves_and_loads_with_keras_under_its_paths(tmp_path, compose):
    import keras
    import numpy as np

    modelforge.train(compose([*FAST, "model=resnet", "model.blocks.stage2.blocks.res.repeat=1"]), run_dir=tmp_path)
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert {"stem.conv1", "stage1.res2.bn2", "stage2.res1.shortcut", "stage2.res1.add"} <= {
        layer.name for layer in loaded.layers}
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    built = modelforge.build_model(compose([*FAST, "model=resnet", "model.blocks.stage2.blocks.res.repeat=1"]))
    built.set_weights(loaded.get_weights())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), built.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
