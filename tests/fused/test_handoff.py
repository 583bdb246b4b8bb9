"""The replay in process: an arm handed to its run sets the weights and optimizer state its fused
training ended with, and plays its epochs through the run's callbacks as `fit` would have called them."""

import keras
import numpy as np
import pytest

from modelforge.fused.handoff import Arm, restore_optimizer, slot_path


class Recorder(keras.callbacks.Callback):
    """What a run's callbacks see at each epoch's end: the logs and the learning rate the optimizer gives."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, dict(logs or {}), float(np.asarray(self.model.optimizer.learning_rate))))


def model():
    keras.utils.set_random_seed(0)
    made = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="hidden"),
                             keras.layers.Dense(2, name="head")], name="net")
    rate = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.9)
    made.compile(optimizer=keras.optimizers.Adam(rate, name="adam"), loss="mse")
    return made


def test_an_arm_plays_its_epochs_as_fit_would():
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.random.default_rng(1).normal(size=(32, 2))
    trained, during_fit = model(), Recorder()
    fitted = trained.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[during_fit])
    optimizer = trained.optimizer
    by_path = {v.path: v for v in optimizer.variables}
    slots = {slot: [by_path[slot_path(optimizer, v, slot)].numpy() for v in trained.trainable_variables]
             for slot in ("momentum", "velocity")}
    history = [{k: values[e] for k, values in fitted.history.items()} for e in range(3)]
    arm = Arm(trained.get_weights(), history, steps=int(optimizer.iterations.numpy()), slots=slots)
    fresh, during_play = model(), Recorder()
    arm.play(fresh, [during_play], epochs=3)
    assert [(e, logs) for e, logs, _ in during_play.seen] == [(e, logs) for e, logs, _ in during_fit.seen]
    # Each epoch's rate, as a schedule gives it from the step count: the same as in the fit.
    assert [r for *_, r in during_play.seen] == pytest.approx([r for *_, r in during_fit.seen], rel=1e-7)
    for a, b in zip(trained.variables + optimizer.variables, fresh.variables + fresh.optimizer.variables,
                    strict=True):
        assert a.path == b.path and np.array_equal(a.numpy(), b.numpy()), a.path


def test_a_slot_keras_names_otherwise_is_refused():
    fresh = model()
    with pytest.raises(RuntimeError, match="has no variable"):
        restore_optimizer(fresh.optimizer, fresh.trainable_variables, 3,
                          {"momentums": [np.zeros(v.shape) for v in fresh.trainable_variables]})
    with pytest.raises(RuntimeError, match="were given no value"):
        restore_optimizer(fresh.optimizer, fresh.trainable_variables, 3,
                          {"momentum": [np.zeros(v.shape) for v in fresh.trainable_variables]})
