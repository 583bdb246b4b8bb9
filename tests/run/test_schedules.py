"""Learning-rate schedules: each epoch's rate in history.csv, against the schedule's formula."""

import math

import pytest

import modelforge
from tests.helpers import FAST, assert_refused, history

LR = 0.01
EPOCHS = 4


def rates(compose, tmp_path, *overrides):
    modelforge.train(compose([*FAST, f"trainer.epochs={EPOCHS}", f"optimizer.learning_rate={LR}", *overrides]),
                     run_dir=tmp_path)
    return [row["learning_rate"] for row in history(tmp_path)]


def cosine(fraction, alpha):
    return LR * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * fraction)))


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], [LR] * EPOCHS),
    (["optimizer.schedule=cosine", "optimizer.alpha=0.1"], [cosine(e / EPOCHS, 0.1) for e in range(1, 5)]),
    (["optimizer.schedule=exponential", "optimizer.decay_rate=0.5"], [LR * 0.5**e for e in range(1, 5)]),
    (["optimizer.schedule=step", "optimizer.decay_rate=0.1", "optimizer.decay_epochs=2"], [LR, LR, LR / 10, LR / 10]),
    (["optimizer.schedule=warmup_cosine", "optimizer.warmup_epochs=2"], [LR / 2, LR, cosine(0.5, 0), cosine(1, 0)]),
])
def test_each_epoch_rate_follows_the_schedule(compose, tmp_path, overrides, expected):
    assert rates(compose, tmp_path, *overrides) == pytest.approx(expected, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(("overrides", "words"), [
    (["optimizer.schedule=cosin"], ["'cosin'", "did you mean 'cosine'"]),
    (["optimizer.decay_rate=0.5"], ["optimizer.decay_rate belongs to the schedule exponential or step"]),
    (["optimizer.schedule=step", "optimizer.decay_epochs=0"], ["optimizer.decay_epochs=0"]),
    # A schedule's keys are the optimizer's own; the nested form gets the flat one to type.
    (["optimizer.schedule=step", "+optimizer.schedule.decay_epochs=1"],
     ["optimizer.schedule is a name", "optimizer.decay_epochs=1"]),
])
def test_bad_schedules_are_refused_before_training(compose, overrides, words):
    assert_refused(lambda: modelforge.run_config(compose(overrides)), *words)


def test_clipping_passes_through_to_keras(compose):
    from modelforge.run.fit import make_optimizer

    optimizer = make_optimizer(modelforge.run_config(compose(["optimizer.global_clipnorm=1.5"])).optimizer)
    assert optimizer.global_clipnorm == 1.5
    optimizer = make_optimizer(modelforge.run_config(compose(["optimizer.clipnorm=0.5"])).optimizer)
    assert optimizer.clipnorm == 0.5
