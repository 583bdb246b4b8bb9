"""modelforge's optimizers with a learning rate per variable, against a hand-written per-layer-learning-rate update:
three steps of Adam, AdamW with weight decay and RMSprop at width 1024, with and without clipnorm, to 1e-6 relative;
and their saving (registered; plain Keras loads the model with compile=False)."""

import keras
import numpy as np
import pytest

from modelforge import optimizers

WIDTH = 1024
RATE = 1e-2
STEPS = 3


def variables():
    """A hidden kernel (width x width), an input kernel and a bias, with a multiplier each (1/m for the hidden one)."""
    rng = np.random.default_rng(0)
    shapes = {"hidden/kernel": (WIDTH, WIDTH), "input/kernel": (16, WIDTH), "input/bias": (WIDTH,)}
    found = {}
    for path, shape in shapes.items():
        layer, weight = path.split("/")
        with keras.name_scope(layer):
            found[path] = keras.Variable(rng.standard_normal(shape).astype("float32") * 0.05, name=weight)
    return found


MULTIPLIERS = {"hidden/kernel": 64 / WIDTH, "input/kernel": 1.0, "input/bias": 2.0}


def clipped(g, clipnorm):
    if not clipnorm:
        return g
    norm = np.sqrt(np.sum(g * g))
    return g * clipnorm / max(norm, clipnorm)


def by_hand(name, start, grads, clipnorm, weight_decay=0.01):
    """Each variable updated with its own learning rate RATE x multiplier, by the optimizers' published rules in
    float64, in the order Keras applies them (AdamW's decay before the step; RMSprop's epsilon inside the root)."""
    f = np.float64
    w = {p: v.astype(f) for p, v in start.items()}
    m = {p: np.zeros_like(v) for p, v in w.items()}
    v = {p: np.zeros_like(x) for p, x in w.items()}
    b1, b2, eps, rho, weight_decay = f(0.9), f(0.999), f(1e-7), f(0.9), f(weight_decay)
    for t, step in enumerate(grads, start=1):
        for p in w:
            g = clipped(step[p].astype(f), clipnorm)
            lr = f(RATE) * f(MULTIPLIERS[p])
            if name == "rmsprop":
                v[p] = rho * v[p] + (1 - rho) * g * g
                w[p] -= lr * g / np.sqrt(v[p] + eps)
                continue
            if name == "adamw":
                w[p] -= w[p] * weight_decay * lr
            m[p] += (g - m[p]) * (1 - b1)
            v[p] += (g * g - v[p]) * (1 - b2)
            alpha = lr * np.sqrt(f(1) - b2 ** f(t)) / (f(1) - b1 ** f(t))
            w[p] -= m[p] * alpha / (np.sqrt(v[p]) + eps)
    return w


def per_layer_keras(name, made, grads, clipnorm, extra):
    """The per-layer learning rates as one writes them by hand in Keras: one optimizer per variable, at RATE times its
    multiplier."""
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop}[name]
    own = {p: cls(learning_rate=RATE * MULTIPLIERS[p], clipnorm=clipnorm, **extra) for p in made}
    for step in grads:
        for p, variable in made.items():
            own[p].apply([step[p]], [variable])


@pytest.mark.parametrize("clipnorm", [None, 0.5])
@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop"])
def test_three_steps_equal_a_per_layer_learning_rate_update(name, clipnorm):
    """To 1e-6 relative of what the steps moved against per-layer Keras optimizers; to 1e-4 against the rules
    written out in float64 (float32's 1 - beta_2^t alone differs by 1e-5 between two ways of computing the power)."""
    made, reference = variables(), variables()
    paths = list(made)
    start = {p: made[p].numpy() for p in paths}
    cls = {"adam": optimizers.Adam, "adamw": optimizers.AdamW, "rmsprop": optimizers.RMSprop}[name]
    extra = {"weight_decay": 0.01} if name == "adamw" else {}
    opt = cls(learning_rate=RATE, clipnorm=clipnorm, multipliers={made[p].path: MULTIPLIERS[p] for p in paths},
              **extra)
    rng = np.random.default_rng(1)
    grads = [{p: rng.standard_normal(made[p].shape).astype("float32") for p in paths} for _ in range(STEPS)]
    for step in grads:
        opt.apply([step[p] for p in paths], [made[p] for p in paths])
    per_layer_keras(name, reference, grads, clipnorm, extra)
    written = by_hand(name, start, grads, clipnorm)
    for p in paths:
        moved = reference[p].numpy() - start[p]
        ours = made[p].numpy() - start[p]
        assert np.abs(ours - moved).max() <= 1e-6 * np.abs(moved).max(), (name, p)
        assert np.abs(ours - (written[p] - start[p])).max() <= 1e-4 * np.abs(moved).max(), (name, p)
    # The multiplier changes the hidden kernel's move by far more than the tolerance.
    hidden = made["hidden/kernel"].numpy() - start["hidden/kernel"]
    assert np.abs(hidden).max() < 0.2 * np.abs(made["input/kernel"].numpy() - start["input/kernel"]).max()


def test_a_variable_without_a_multiplier_keeps_the_rate():
    plain, ours = variables(), variables()
    grads = [np.ones(v.shape, "float32") for v in plain.values()]
    keras.optimizers.Adam(RATE).apply(grads, list(plain.values()))
    optimizers.Adam(learning_rate=RATE, multipliers={}).apply(grads, list(ours.values()))
    for a, b in zip(plain.values(), ours.values(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_model_compiled_with_one_saves_and_loads(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="d")(inputs))
    model.compile(optimizer=optimizers.AdamW(learning_rate=RATE, multipliers={"d/kernel": 0.25}), loss="mse")
    model.fit(np.ones((8, 4)), np.zeros((8, 3)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is optimizers.AdamW and loaded.optimizer.multipliers == {"d/kernel": 0.25}
    plain = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(plain.predict(np.ones((2, 4)), verbose=0), model.predict(np.ones((2, 4)), verbose=0))
