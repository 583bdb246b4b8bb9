"""LSUV's decisions (`modelforge.core.lsuv`): its keys, what it leaves to the policy, when it rescales and stops,
and the words the plan, the log and the terminal use, against the paper's rule (Mishkin & Matas 2016, Alg. 1)."""

import math

import pytest

from modelforge.core import lsuv
from modelforge.core.registry import INITIALIZERS
from modelforge.errors import ConfigError


def test_the_registry_offers_lsuv_with_its_own_defaults():
    assert INITIALIZERS["lsuv"] == lsuv.DEFAULTS and INITIALIZERS["lsuv"] is not lsuv.DEFAULTS


@pytest.mark.parametrize(("key", "bad"), [("samples", 1), ("tolerance", 0), ("max_iter", -1),
                                          ("target_variance", 0), ("include_head", "yes")])
def test_bad_keys_are_refused_by_name(key, bad):
    with pytest.raises(ConfigError, match=f"initializer.{key}="):
        lsuv.check({**lsuv.DEFAULTS, key: bad}, "initializer")


@pytest.mark.parametrize("variance", [0.01, 0.5, 3.0, 250.0])
def test_one_round_brings_a_linear_layers_variance_to_the_target(variance):
    # Var(W x) scales with the square of W's scale: one factor sqrt(target / variance) lands on the target.
    for target in (1.0, 2.0):
        params = {**lsuv.DEFAULTS, "target_variance": target}
        factor = lsuv.next_factor(variance, 0, params)
        assert factor is not None and math.isclose(variance * factor**2, target)
        assert lsuv.next_factor(variance * factor**2, 1, params) is None


def test_rescaling_stops_converged_out_of_rounds_or_at_a_variance_no_scale_mends():
    params = {**lsuv.DEFAULTS, "max_iter": 3, "tolerance": 0.1}
    assert lsuv.next_factor(1.09, 0, params) is None and lsuv.converged(1.09, params)
    assert lsuv.next_factor(1.11, 0, params) is not None and not lsuv.converged(1.11, params)
    assert lsuv.next_factor(5.0, 3, params) is None
    for variance in (0.0, math.inf, math.nan):
        assert lsuv.next_factor(variance, 0, params) is None and not lsuv.converged(variance, params)


@pytest.mark.parametrize(("head", "include", "kind", "weight", "left"), [
    (True, False, "dense", "kernel", "output layer"), (True, True, "dense", "kernel", ""),
    (False, False, "embedding", "embeddings", "embeddings"),
    (False, False, "separable_conv", "depthwise_kernel", "pointwise"),
    (False, False, "separable_conv", "pointwise_kernel", ""), (False, False, "conv", "kernel", ""),
])
def test_what_lsuv_leaves_to_the_policy(head, include, kind, weight, left):
    said = lsuv.left_to_policy({**lsuv.DEFAULTS, "include_head": include}, head, kind, weight)
    assert (left in said and said != "") if left else said == ""


def test_its_words_carry_the_measured_figures():
    measured = {"a/kernel": {"scale": 0.5, "iterations": 2, "variance": 1.02, "converged": True},
                "b/kernel": {"scale": 2.0, "iterations": 10, "variance": 1.6, "converged": False}}
    assert lsuv.summary(measured, 0.25).startswith("lsuv: 2 kernels rescaled on the sample in 0.25 s, 1 within")
    assert "NOT converged" in lsuv.log_line("b/kernel", measured["b/kernel"])
    warning = lsuv.not_converged("b/kernel", measured["b/kernel"], lsuv.DEFAULTS)
    assert "b/kernel" in warning and "1.6 after 10 rounds, target 1 +- 0.1" in warning
    assert lsuv.footnote(lsuv.DEFAULTS, list(measured.values())).startswith("lsuv: 2 kernels rescaled")
    assert "; 1 converged" in lsuv.footnote(lsuv.DEFAULTS, list(measured.values()))
    assert "on 256 training samples" in lsuv.footnote(lsuv.DEFAULTS, None)
