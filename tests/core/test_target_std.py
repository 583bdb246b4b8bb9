"""target_std against the textbook formulas, written out by hand."""

import math

import pytest

from modelforge.core.config.policy import InitChoice, target_std
from modelforge.core.model.fans import keras_fans


def std_of(name, shape, **params):
    fan_in, fan_out = keras_fans(shape)
    return target_std(InitChoice(name, params), shape, fan_in, fan_out)


@pytest.mark.parametrize("shape", [(64, 32), (3, 3, 16, 32), (5, 8, 4)])
def test_glorot_and_he_and_lecun(shape):
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    glorot_limit = math.sqrt(6 / (fan_in + fan_out))
    assert std_of("glorot_uniform", shape) == pytest.approx(glorot_limit / math.sqrt(3))
    assert std_of("glorot_normal", shape) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)))
    he_limit = math.sqrt(6 / fan_in)
    assert std_of("he_uniform", shape) == pytest.approx(he_limit / math.sqrt(3))
    assert std_of("he_normal", shape) == pytest.approx(math.sqrt(2 / fan_in))
    assert std_of("lecun_normal", shape) == pytest.approx(math.sqrt(1 / fan_in))
    assert std_of("lecun_uniform", shape) == pytest.approx(math.sqrt(3 / fan_in) / math.sqrt(3))


@pytest.mark.parametrize(("mode", "n"), [("fan_in", 64), ("fan_out", 32), ("fan_avg", 48)])
def test_variance_scaling_modes(mode, n):
    for distribution in ("truncated_normal", "untruncated_normal", "uniform"):
        got = std_of("variance_scaling", (64, 32), scale=3.0, mode=mode, distribution=distribution)
        assert got == pytest.approx(math.sqrt(3.0 / n))


def test_orthogonal_and_constants():
    assert std_of("orthogonal", (64, 256), gain=1.0) == pytest.approx(1 / 16)
    assert std_of("orthogonal", (400, 100), gain=2.0) == pytest.approx(2 / 20)
    assert std_of("zeros", (4, 4)) == 0.0
    assert std_of("random_uniform", (4, 4), minval=-1.0, maxval=1.0) == pytest.approx(2 / math.sqrt(12))


def test_keras_fans_match_keras():
    from keras.src.initializers.random_initializers import compute_fans

    for shape in [(7,), (64, 10), (3, 3, 1, 8), (3, 8, 16), (2, 2, 2, 4, 6)]:
        assert keras_fans(shape) == tuple(int(f) for f in compute_fans(shape))
