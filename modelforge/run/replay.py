"""Arms trained elsewhere (a fused group), handed to their own run's lifecycle to be written as ordinary runs.

The fused launcher trains K arms as one model, then runs each job as the basic launcher would. Its run finds
its arm here by its folder: instead of fitting, it takes the arm's final weights and plays the arm's epochs
through the run's own callbacks (history.csv, heartbeat, trackers, checkpoint), so its folder, its trackers
and its summary row are exactly those of a run, written by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Arm:
    """One arm's outcome in a fused group.

    Attributes:
        weights: the final weights, in the order of the arm's own Keras model's `get_weights()`.
        history: one dict of Keras-named metrics per epoch.
        fused: what metrics.json says of the group (`group`, `size`, `arm`, `fit_s`).
        steps: the optimizer steps the arm took.
        slots: the optimizer's slots per trainable variable, by Keras' attribute name (`_momentums` and
            `_velocities` for Adam, `momentums` for SGD), so the saved model's optimizer is the arm's.
        session: the run's `Session` as the launcher set it up (its model as first built, its data), so the
            run need not build it again.
    """

    weights: list[Any]
    history: list[dict[str, float]]
    fused: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    slots: dict[str, list[Any]] = field(default_factory=dict)
    session: Any = None


_arms: dict[Path, Arm] = {}


def offer(folder: Path, arm: Arm) -> None:
    """Leaves `arm` for the run that will claim `folder`."""
    _arms[Path(folder).resolve()] = arm


def waiting(folder: Path) -> bool:
    """Whether an arm waits for the run that will claim `folder`."""
    return Path(folder).resolve() in _arms


def take(folder: Path) -> Arm | None:
    """The arm waiting for `folder`, if any (each is taken once)."""
    return _arms.pop(Path(folder).resolve(), None)


def play(model: Any, arm: Arm, callbacks: list[Any], epochs: int) -> None:
    """Sets the arm's final weights and runs its epochs' ends through `callbacks`, as `fit` would call them."""
    import keras

    model.set_weights(arm.weights)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(arm.steps)
    for attribute, values in arm.slots.items():
        # Keras keeps each slot list in the order of the trainable variables, as the fused model does.
        for variable, value in zip(getattr(optimizer, attribute, []) or [], values, strict=False):
            variable.assign(value)
    hooks = keras.callbacks.CallbackList(callbacks, model=model, add_history=False, add_progbar=False,
                                         epochs=epochs, verbose=0)
    hooks.on_train_begin()
    per_epoch = arm.steps // max(len(arm.history), 1)  # an arm runs whole epochs, from the first on
    for epoch, row in enumerate(arm.history):
        # The step count at this epoch's end, so what callbacks read of the optimizer (the learning rate a
        # schedule gives) is what they read in the run's own fit; the final count is set again at the end.
        optimizer.iterations.assign(per_epoch * (epoch + 1))
        hooks.on_epoch_begin(epoch)
        hooks.on_epoch_end(epoch, dict(row))
    optimizer.iterations.assign(arm.steps)
    hooks.on_train_end()
