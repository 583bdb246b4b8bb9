"""Each layer's place in a residual model, from the graph's structure: branches, shortcuts, gates, the stem and the
readout, with L (the model's branches) and m (a branch's kernels); none in a model without residual blocks."""

from modelforge.core.init.plan import format_table
from modelforge.core.model.places import places
from tests.helpers import plan_of, residual_mlp


def where(plan):
    return {e.layer: (e.place, e.block, e.branches, e.depth) for e in plan.entries if e.weight != "bias"}


def test_a_residual_mlps_branches_stem_and_readout(compose):
    found = where(plan_of(compose, residual_mlp(3)))
    assert found["s"] == ("stem", None, 3, 0) and found["head"] == ("readout", None, 3, 0)
    for i in range(3):
        assert found[f"p{i}"] == ("branch_in", f"r{i}", 3, 2)
        assert found[f"q{i}"] == ("branch_out", f"r{i}", 3, 2)


def test_the_order_of_an_adds_inputs_does_not_matter(compose):
    flipped = residual_mlp(2).replace("inputs:[s,q0]", "inputs:[q0,s]").replace("inputs:[r0,q1]", "inputs:[q1,r0]")
    assert where(plan_of(compose, flipped)) == where(plan_of(compose, residual_mlp(2)))


def test_a_projection_shortcut_and_a_one_kernel_branch(compose):
    layers = ("+model.layers=[{type:dense,name:a,units:16},{type:dense,name:b,units:8},"
              "{type:dense,name:c,units:8,inputs:[a]},{type:add,name:r,inputs:[c,b]}]")
    found = where(plan_of(compose, layers))
    # Both sides leave `a`: the side with fewer kernels is the shortcut; on a tie, the first input's side.
    assert found["b"] == ("branch_out", "r", 1, 1) and found["c"] == ("shortcut", "r", 1, 1)
    three = layers.replace("{type:dense,name:b,units:8}", "{type:dense,name:b0,units:8},{type:dense,name:b,units:8}")
    found = where(plan_of(compose, three))
    assert found["b0"][0] == "branch_in" and found["b"][0] == "branch_out" and found["c"][0] == "shortcut"


def test_a_gate_and_a_normalization_at_a_branchs_end(compose):
    found = {e.path: (e.place, e.block) for e in plan_of(compose, residual_mlp(1, extra=",{type:gate,name:g0}")
                                                        .replace("inputs:[s,q0]", "inputs:[s,g0]")).entries}
    assert found["g0/alpha"] == ("gate", "r0") and found["q0/kernel"] == ("branch_out", "r0")
    normed = residual_mlp(1, extra=",{type:batch_normalization,name:n0}").replace("inputs:[s,q0]", "inputs:[s,n0]")
    found = {e.path: e.place for e in plan_of(compose, normed).entries}
    assert found["n0/gamma"] == "branch_out" and found["q0/kernel"] == "branch_out"


def test_no_places_without_a_residual_block(compose):
    concatenated = ("+model.layers=[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[inputs]},"
                    "{type:concatenate,name:both,inputs:[a,b]}]")
    for overrides in ([], ["layer=conv", "model.units=4"], [concatenated]):
        plan = plan_of(compose, *overrides)
        assert places(plan.specs) == {} and all(e.place is None for e in plan.entries)
        assert all("place" not in e.as_dict() for e in plan.entries)
        assert format_table(plan).splitlines()[0].split()[:2] == ["layer", "weight"]


def test_the_plan_and_init_plan_json_carry_the_places(compose):
    plan = plan_of(compose, residual_mlp(2))
    assert format_table(plan).splitlines()[0].split()[:4] == ["layer", "block", "place", "weight"]
    record = {e["layer"] + "/" + e["weight"]: e for e in (x.as_dict() for x in plan.entries)}
    assert {k: record["q1/kernel"][k] for k in ("place", "block", "branches", "depth")} == {
        "place": "branch_out", "block": "r1", "branches": 2, "depth": 2}
