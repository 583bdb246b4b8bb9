"""The initializer policy: the table, the knobs, and the precedence layer > override > policy."""
from dataclasses import replace

import pytest

from modelforge.core.config.policy import (
    InitPolicy,
    kernel_choice,
    parse_initializer_config,
    policy_choice,
    role_choice,
)
from modelforge.core.registry import ACTIVATIONS, Family
from tests.helpers import REPO, assert_refused

CONF = REPO / "conf"
# design.md's table, written out independently of conf/initializer/auto.yaml.
EXPECTED = {
    "relu": "he_normal", "relu6": "he_normal", "elu": "he_normal", "gelu": "he_normal", "silu": "he_normal",
    "swish": "he_normal", "mish": "he_normal", "softplus": "he_normal",
    "sigmoid": "glorot_uniform", "tanh": "glorot_uniform", "softmax": "glorot_uniform", "linear": "glorot_uniform",
    "selu": "lecun_normal",
}


@pytest.fixture
def auto(compose):
    from omegaconf import OmegaConf

    policy = parse_initializer_config(OmegaConf.to_container(compose()["initializer"]))
    assert isinstance(policy, InitPolicy)
    return policy


@pytest.mark.parametrize("activation", sorted(EXPECTED))
def test_policy_table(auto, activation):
    choice = policy_choice(activation, {}, auto)
    assert choice.name == EXPECTED[activation]
    assert choice.source == f"policy:{activation}"


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5])
def test_leaky_relu_scale_follows_slope(auto, slope):
    choice = policy_choice("leaky_relu", {"negative_slope": slope}, auto)
    assert choice.name == "variance_scaling"
    assert choice.params["mode"] == "fan_in"
    assert choice.params["distribution"] == "truncated_normal"
    assert choice.params["scale"] == pytest.approx(2.0 / (1.0 + slope**2))


def test_every_activation_family_has_a_policy_rule(auto):
    shipped = {p.stem for p in (CONF / "activation").glob("*.yaml")} - {"auto"}
    assert shipped <= set(ACTIVATIONS)
    assert set(auto.families) == {f.value for f in Family}
    # The family in the registry is what the policy reads: every activation's rule comes from it.
    for name, activation in ACTIVATIONS.items():
        assert auto.rule_for(name) == auto.families[activation.family.value], name


@pytest.mark.parametrize(("knob", "relu", "tanh", "selu"), [
    ("auto", "he_normal", "glorot_uniform", "lecun_normal"),
    ("uniform", "he_uniform", "glorot_uniform", "lecun_uniform"),
    ("normal", "he_normal", "glorot_normal", "lecun_normal"),
])
def test_distribution_knob(auto, knob, relu, tanh, selu):
    auto = replace(auto, distribution=knob)
    assert [policy_choice(a, {}, auto).name for a in ("relu", "tanh", "selu")] == [relu, tanh, selu]


def test_family_without_a_rule_gets_the_default(auto):
    auto = replace(auto, families={k: v for k, v in auto.families.items() if k != "saturating"},
                   default="lecun_uniform")
    assert policy_choice("softsign", {}, auto).name == "lecun_uniform"
    assert policy_choice("relu", {}, auto).name == "he_normal"


def test_precedence_layer_beats_override_beats_policy(auto):
    override = parse_initializer_config({"name": "lecun_uniform"})
    assert kernel_choice("relu", {}, None, auto, "l").source == "policy:relu"
    chosen = kernel_choice("relu", {}, None, override, "l")
    assert (chosen.name, chosen.source) == ("lecun_uniform", "override")
    chosen = kernel_choice("relu", {}, "orthogonal", override, "l")
    assert (chosen.name, chosen.source) == ("orthogonal", "layer")
    chosen = kernel_choice("tanh", {}, {"name": "variance_scaling", "scale": 3.0}, auto, "l")
    assert chosen.params == {"scale": 3.0, "mode": "fan_in", "distribution": "truncated_normal"}


def test_non_kernel_defaults():
    assert role_choice("recurrent", None, "l").name == "orthogonal"
    assert role_choice("bias", None, "l").name == "zeros"
    assert role_choice("bias", "ones", "l").source == "layer"


@pytest.mark.parametrize(("init", "message"), [
    ({"name": "variance_scaling", "mode": "fan_sideways"}, "fan_sideways"),
    ({"name": "variance_scaling", "distribution": "cauchy"}, "cauchy"),
    ({"name": "variance_scaling", "scale": -1.0}, "scale=-1.0"),
    ({"name": "he_normal", "scale": 2.0}, "takes no parameter scale"),
    ({"name": "he_sorta"}, "did you mean 'he_normal'"),
])
def test_bad_override_names_the_value(init, message):
    assert_refused(lambda: kernel_choice("relu", {}, None, parse_initializer_config(init), "l"), message)


def test_policy_uses_edited_rules(auto):
    edited = replace(auto, rules={"relu": "lecun_uniform"}, families={**auto.families, "rectifier": "he_uniform"})
    assert policy_choice("relu", {}, edited).name == "lecun_uniform"
    assert policy_choice("gelu", {}, edited).name == "he_uniform"
