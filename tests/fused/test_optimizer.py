"""The fused optimizer against Keras' own, and the hand-off of its state through public variables, in process."""

import keras
import numpy as np
import pytest

from modelforge.core.registry import ARM_SCALARS
from modelforge.fused.handoff import restore_optimizer
from modelforge.fused.optimizer import FusedOptimizer

# Three arms whose per-arm scalars all differ, per optimizer.
ARMS = {
    "adam": [{"learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
             {"learning_rate": 0.003, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5},
             {"learning_rate": 0.05, "beta_1": 0.95, "beta_2": 0.9, "epsilon": 1e-3}],
    "adamw": [{"learning_rate": 0.01, "weight_decay": 0.004}, {"learning_rate": 0.02, "weight_decay": 0.1},
              {"learning_rate": 0.005, "beta_1": 0.7, "weight_decay": 0.0}],
    "sgd": [{"learning_rate": 0.1, "momentum": 0.0}, {"learning_rate": 0.05, "momentum": 0.9},
            {"learning_rate": 0.2, "momentum": 0.5, "weight_decay": 0.01}],
    # `centered` is shared by a group's arms: the arms here are centered, the uncentered path runs end to end.
    "rmsprop": [{"learning_rate": 0.01, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": True},
                {"learning_rate": 0.003, "rho": 0.8, "momentum": 0.9, "epsilon": 1e-5, "centered": True},
                {"learning_rate": 0.02, "rho": 0.95, "momentum": 0.3, "epsilon": 1e-3, "centered": True}],
}
KERAS_CLASS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop}


@pytest.mark.parametrize("name", sorted(ARM_SCALARS))
def test_three_steps_match_keras_for_every_arm(name):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,)]
    start = [rng.standard_normal((3, *s)).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal((3, *s)).astype(np.float32) for s in shapes] for _ in range(3)]
    args = [{**ARM_SCALARS[name], **given} for given in ARMS[name]]
    stacked = [tf.Variable(v) for v in start]
    fused = FusedOptimizer(name, stacked, args, {}, [a["learning_rate"] for a in args])
    for step in grads:
        fused.update([tf.constant(g) for g in step])
    for a, given in enumerate(ARMS[name]):
        own = [keras.Variable(v[a], name=f"w{i}") for i, v in enumerate(start)]
        optimizer = KERAS_CLASS[name](**given)
        for step in grads:
            optimizer.apply_gradients(zip([tf.constant(g[a]) for g in step], own, strict=True))
        for fused_var, var in zip(stacked, own, strict=True):
            expected = np.asarray(var.numpy())
            assert np.abs(fused_var[a].numpy() - expected).max() <= 1e-6 * np.abs(expected).max(), (name, a)
        # The slots too, as the arm's saved model gets them, by Keras' own variable paths.
        model_vars = own
        slots = fused.keras_slots(a)
        for slot, values in slots.items():
            for value, var in zip(values, model_vars, strict=True):
                (found,) = [v for v in optimizer.variables if v.path.endswith(f"{var.path.replace('/', '_')}_{slot}")]
                np.testing.assert_allclose(value, found.numpy(), rtol=1e-5, atol=1e-7)


def test_state_moves_through_public_variables_and_anything_unmatched_raises():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d1")])
    optimizer = keras.optimizers.Adam()
    values = [np.full(v.shape, 0.5, np.float32) for v in model.trainable_variables]
    restore_optimizer(optimizer, model.trainable_variables, 7, {"momentum": values, "velocity": values})
    assert int(optimizer.iterations) == 7
    assert all(float(v.numpy().ravel()[0]) == 0.5 for v in optimizer.variables if v.path.endswith("_momentum"))
    with pytest.raises(RuntimeError, match="has no variable"):  # a slot Keras does not have (renamed)
        restore_optimizer(keras.optimizers.Adam(), model.trainable_variables, 1, {"_momentums": values})
    with pytest.raises(RuntimeError, match="were given no value"):  # a slot Keras has, left unset
        restore_optimizer(keras.optimizers.Adam(), model.trainable_variables, 1, {"momentum": values})


def test_each_rule_keeps_the_slots_keras_makes_by_their_keras_names():
    from modelforge.fused.optimizer import RULES

    assert set(RULES) == set(ARM_SCALARS)
    for name, rule in RULES.items():
        for given in ARMS[name]:
            args = {**ARM_SCALARS[name], **given}
            keras_optimizer = KERAS_CLASS[name](**given)
            keras_optimizer.build([keras.Variable(np.zeros((2, 2), np.float32), name="w")])
            made = {v.path.rsplit("_", 1)[-1] for v in keras_optimizer.variables
                    if v.path.rsplit("/", 1)[-1] not in ("iteration", "learning_rate")}
            made = {"average_gradient" if slot == "gradient" else slot for slot in made}
            assert set(rule([args]).kept(args)) == made, (name, given)


@pytest.mark.parametrize("name", sorted(ARM_SCALARS))
def test_a_variables_rate_multiplier_is_that_variables_learning_rate_times_it(name):
    """What the muP rules need: per variable, each arm's rate scaled by its own factor."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    start = [rng.standard_normal((3, 4, 2)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)]
    grads = [[rng.standard_normal(v.shape).astype(np.float32) for v in start] for _ in range(3)]
    args = [{**ARM_SCALARS[name], **given} for given in ARMS[name]]
    multipliers = [[0.5, 2.0, 1.0], [1.0, 0.25, 3.0]]
    stacked = [tf.Variable(v) for v in start]
    fused = FusedOptimizer(name, stacked, args, {}, [a["learning_rate"] for a in args], multipliers)
    for step in grads:
        fused.update([tf.constant(g) for g in step])
    for a, given in enumerate(ARMS[name]):
        for i, value in enumerate(start):
            own = keras.Variable(value[a])
            rate = given["learning_rate"] * multipliers[i][a]
            optimizer = KERAS_CLASS[name](**{**given, "learning_rate": rate})
            for step in grads:
                optimizer.apply_gradients([(tf.constant(step[i][a]), own)])
            expected = own.numpy()
            assert np.abs(stacked[i][a].numpy() - expected).max() <= 1e-5 * np.abs(expected).max(), (name, a, i)
