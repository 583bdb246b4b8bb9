"""Residual rules against their formulas: by place, on top of the policy, with the same seeds (so a rescaled weight
is the unscaled draw times its factor), and refused where they contradict the model or the initializer."""

import math

import numpy as np
import pytest

import modelforge
from modelforge.core.config.digest import result_keys
from tests.helpers import FAST, assert_refused, residual_mlp


def planned(compose, rule, *overrides):
    return modelforge.plan(compose([*FAST, f"residual={rule}", *overrides]))


def by_path(plan):
    return {e.path: e for e in plan.entries}


@pytest.mark.parametrize(("blocks", "rule", "expected"), [
    # (branch_in, branch_out, readout) factors on the policy's std; None: untouched.
    (3, "zero_last", (None, 0.0, None)),
    (3, "scaled", (None, 1 / math.sqrt(3), None)),
    (3, "fixup", (3 ** -0.5, 0.0, 0.0)),  # L^(-1/(2m-2)) with m = 2
    (8, "fixup", (8 ** -0.5, 0.0, 0.0)),
    (8, "scaled", (None, 1 / math.sqrt(8), None)),
])
def test_each_rule_scales_each_place_by_its_formula(compose, blocks, rule, expected):
    base = by_path(planned(compose, "none", residual_mlp(blocks)))
    ruled = by_path(planned(compose, rule, residual_mlp(blocks)))
    for i in range(blocks):
        places = ((f"p{i}/kernel", expected[0]), (f"q{i}/kernel", expected[1]), ("head/kernel", expected[2]))
        for path, factor in places:
            if factor is None:
                assert ruled[path] == base[path], path
                continue
            assert ruled[path].target_std == pytest.approx(base[path].target_std * factor), path
            assert ruled[path].choice.source == f"residual:{rule}"
    assert ruled["s/kernel"] == base["s/kernel"]  # the stem is the policy's


def test_fixup_with_three_kernel_branches(compose):
    blocks = [f"{{type:dense,name:a{i},units:16}},{{type:dense,name:b{i},units:16}},"
              f"{{type:dense,name:c{i},units:16,activation:linear}},"
              f"{{type:add,name:r{i},inputs:[{'s' if i == 0 else f'r{i - 1}'},c{i}]}}" for i in range(4)]
    layers = "+model.layers=[{type:dense,name:s,units:16}," + ",".join(blocks) + "]"
    base, ruled = by_path(planned(compose, "none", layers)), by_path(planned(compose, "fixup", layers))
    factor = 4 ** (-1 / 4)  # L = 4, m = 3: L^(-1/(2m-2))
    for i in range(4):
        for path in (f"a{i}/kernel", f"b{i}/kernel"):
            assert ruled[path].target_std == pytest.approx(base[path].target_std * factor)
        assert ruled[f"c{i}/kernel"].target_std == 0 and ruled[f"c{i}/kernel"].depth == 3


def test_built_weights_are_the_same_draws_scaled(compose):
    layers = residual_mlp(3)
    none = modelforge.build_model(compose([*FAST, layers]))
    for rule in ("scaled", "fixup", "zero_last"):
        model = modelforge.build_model(compose([*FAST, "residual=" + rule, layers]))
        plan = by_path(planned(compose, rule, layers))
        for i in range(3):
            for name in (f"p{i}", f"q{i}"):
                got, drawn = model.get_layer(name).kernel.numpy(), none.get_layer(name).kernel.numpy()
                std = plan[f"{name}/kernel"].target_std
                base = by_path(planned(compose, "none", layers))[f"{name}/kernel"].target_std
                if std == 0:
                    assert not got.any()
                else:
                    np.testing.assert_allclose(got, drawn * (std / base), rtol=1e-5, atol=1e-7)


def test_a_layers_own_initializer_wins(compose):
    layers = residual_mlp(2).replace("{type:dense,name:q0,units:16,activation:linear}",
                                     "{type:dense,name:q0,units:16,activation:linear,initializer:orthogonal}")
    ruled = by_path(planned(compose, "zero_last", layers))
    assert ruled["q0/kernel"].choice.name == "orthogonal" and ruled["q1/kernel"].choice.name == "zeros"


def test_zero_last_zeroes_a_normalized_branchs_gamma_not_its_kernel(compose):
    normed = residual_mlp(2, extra=",{type:batch_normalization,name:n}")
    normed = normed.replace("{type:batch_normalization,name:n}", "{type:batch_normalization,name:n0}", 1)
    normed = normed.replace("{type:batch_normalization,name:n}", "{type:batch_normalization,name:n1}", 1)
    normed = normed.replace("inputs:[s,q0]", "inputs:[s,n0]").replace("inputs:[r0,q1]", "inputs:[r0,n1]")
    base, ruled = by_path(planned(compose, "none", normed)), by_path(planned(compose, "zero_last", normed))
    for i in range(2):
        gamma = ruled[f"n{i}/gamma"].choice
        assert (gamma.name, gamma.source) == ("zeros", "residual:zero_last")
        assert ruled[f"q{i}/kernel"] == base[f"q{i}/kernel"] and ruled[f"n{i}/beta"] == base[f"n{i}/beta"]


@pytest.mark.parametrize(("overrides", "words"), [
    (["residual=fixup", "initializer=lsuv", residual_mlp(2)], ["residual=fixup with initializer=lsuv", "undo"]),
    (["residual=scaled"], ["residual=scaled", "no residual block", "residual=none"]),
    (["residual=fixup", residual_mlp(1, extra=",{type:batch_normalization,name:n0}").replace(
        "inputs:[s,q0]", "inputs:[s,n0]")], ["normalization layers (n0)", "residual=zero_last"]),
    (["residual=fixup", "+model.layers=[{type:dense,name:s,units:8},{type:dense,name:f,units:8},"
                        "{type:add,name:r,inputs:[s,f]}]"], ["one-kernel branches (block r)", "-1/(2m-2)"]),
    (["residual=rezero"], ["residual=rezero", "no residual block"]),
    (["residual=rezro"], ["residual option 'rezro'", "did you mean 'rezero'"]),
])
def test_contradictions_are_refused_naming_both(compose, overrides, words):
    assert_refused(lambda: modelforge.plan(compose([*FAST, *overrides])), *words)


def test_none_is_the_default_and_leaves_records_as_they_were(compose):
    run = modelforge.run_config(compose(FAST))
    assert run.residual.name == "none" and "residual.name" not in result_keys(run.resolved)
    scaled = modelforge.run_config(compose([*FAST, "residual=scaled"]))
    assert result_keys(scaled.resolved)["residual.name"] == "scaled"
    old = {k: v for k, v in compose(FAST).items() if k != "residual"}  # a config.yaml written before the group
    assert modelforge.run_config(old).residual.name == "none"


@pytest.mark.parametrize(("rule", "kind", "weight"), [("rezero", "gate", "alpha"),
                                                     ("layerscale", "layer_scale", "gamma")])
def test_rezero_and_layerscale_add_a_layer_at_each_branchs_end(compose, rule, kind, weight):
    plan = planned(compose, rule, residual_mlp(3))
    for i in range(3):
        (add,) = [s for s in plan.specs if s.name == f"r{i}"]
        assert add.inputs == ("s" if i == 0 else f"r{i - 1}", f"q{i}_{kind}")
        entry = by_path(plan)[f"q{i}_{kind}/{weight}"]
        assert (entry.place, entry.block, entry.choice.source) == ("gate", f"r{i}", f"residual:{rule}")
        assert entry.choice.params == {"value": 0.0 if rule == "rezero" else 0.1}
    model = modelforge.build_model(compose([*FAST, f"residual={rule}", residual_mlp(3)]))
    values = model.get_layer(f"q0_{kind}").weights[0].numpy()
    assert np.all(values == (0.0 if rule == "rezero" else np.float32(0.1)))


@pytest.mark.parametrize(("blocks", "value"), [(18, 0.1), (19, 1e-5), (24, 1e-5), (25, 1e-6)])
def test_layerscale_starts_by_depth_as_cait(compose, blocks, value):
    entry = by_path(planned(compose, "layerscale", residual_mlp(blocks, width=4)))["q0_layer_scale/gamma"]
    assert entry.choice.params == {"value": value} and entry.branches == blocks


def test_only_rules_that_add_layers_split_a_fused_group(compose):
    from modelforge.fused.groups import group_key

    keys = {rule: group_key(modelforge.run_config(compose([*FAST, f"residual={rule}", residual_mlp(2)])).resolved)
            for rule in ("none", "zero_last", "fixup", "scaled", "rezero", "layerscale")}
    assert len({keys[r] for r in ("none", "zero_last", "fixup", "scaled")}) == 1
    assert len({keys["none"], keys["rezero"], keys["layerscale"]}) == 3


@pytest.mark.parametrize(("rule", "key", "value", "path"), [
    ("rezero", "gate_init", 0.1, "res1.gate/alpha"),  # SkipInit's small nonzero start
    ("layerscale", "init_value", 1e-4, "res1.layer_scale/gamma"),
])
def test_a_rules_start_is_its_key_and_arms_differing_in_it_fuse(compose, rule, key, value, path):
    plan = planned(compose, rule, "model=resmlp", "model.blocks.res.repeat=2", f"residual.{key}={value}")
    entry = by_path(plan)[path]
    assert entry.choice.params == {"value": value} and entry.choice.source == f"residual:{rule}"
    model = modelforge.build_model(compose([*FAST, f"residual={rule}", "model=resmlp", "model.blocks.res.repeat=2",
                                            f"residual.{key}={value}"]))
    np.testing.assert_array_equal(model.get_layer(path.split("/")[0]).weights[0].numpy(), np.float32(value))
    from modelforge.fused.groups import group_key

    keys = {group_key(modelforge.run_config(compose([*FAST, f"residual={rule}", "model=resmlp",
                                                     f"residual.{key}={v}"])).resolved) for v in (value, 0.5)}
    assert len(keys) == 1
    default = modelforge.run_config(compose([*FAST, f"residual={rule}", "model=resmlp"]))
    assert f"residual.{key}" not in result_keys(default.resolved)  # records of runs before the key still match
    assert result_keys(modelforge.run_config(compose([*FAST, f"residual={rule}", "model=resmlp",
                                                      f"residual.{key}={value}"])).resolved)[f"residual.{key}"] == value


def test_a_key_of_another_rule_is_refused_naming_its_rule(compose):
    assert_refused(lambda: planned(compose, "layerscale", "model=resmlp", "+residual.gate_init=0.1"),
                   "residual.gate_init", "residual=layerscale takes no gate_init", "it is residual=rezero's")
    old = {**compose([*FAST, "model=resmlp", "residual=rezero"])}
    old["residual"] = {"name": "rezero"}  # a run folder's config.yaml from before the key
    assert modelforge.run_config(old).residual.gate_init == 0.0
