"""An arm trained in a fused group, handed to its own run's lifecycle to be written as an ordinary run.

The fused launcher trains K arms as one model, then runs each job as the basic launcher would, giving the job's
run its `Arm` (through the task function's call, never a global). Instead of fitting, the run sets the arm's
final weights and optimizer state and plays the arm's epochs through its own callbacks (history.csv,
heartbeat, trackers), so its folder, its trackers and its summary row are exactly those of a run, written by
the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np
    from numpy.typing import NDArray

    from modelforge.run.setup import Session


@dataclass
class Arm:
    """One arm's outcome in a fused group (it satisfies `modelforge.run.lifecycle.Trained`).

    Attributes:
        weights: the final weights, in the order of the arm's own Keras model's `get_weights()`.
        history: one dict of Keras-named metrics per epoch.
        fused: what metrics.json says of the group (`group`, `size`, `arm`, `fit_s`, and `share_s`, the arm's
            share of the group's fit).
        steps: the optimizer steps the arm took.
        slots: the optimizer's slots by Keras' slot name (`momentum`, `velocity`), one array per trainable
            variable in the model's order, so the saved model's optimizer is the arm's.
        session: the run's `Session` as the launcher set it up (its model as first built, its data), so the
            run need not build it again.
    """

    weights: list[NDArray[np.float32]]
    history: list[dict[str, float]]
    fused: dict[str, float | str] = field(default_factory=dict)
    steps: int = 0
    slots: dict[str, list[NDArray[np.float32]]] = field(default_factory=dict)
    session: Session | None = None

    def play(self, model: keras.Model, callbacks: list[keras.callbacks.Callback], epochs: int) -> None:
        """Sets the arm's final weights and optimizer state, and runs its epochs' ends through `callbacks`, as
        `fit` would call them."""
        import keras

        model.set_weights(self.weights)
        optimizer = model.optimizer
        restore_optimizer(optimizer, model.trainable_variables, self.steps, self.slots)
        hooks = keras.callbacks.CallbackList(callbacks, model=model, add_history=False, add_progbar=False,
                                             epochs=epochs, verbose=0)
        hooks.on_train_begin()
        per_epoch = self.steps // max(len(self.history), 1)  # an arm runs whole epochs, from the first on
        for epoch, row in enumerate(self.history):
            # The step count at this epoch's end, so what callbacks read of the optimizer (the learning rate a
            # schedule gives) is what they read in the run's own fit; the final count is set again at the end.
            optimizer.iterations.assign(per_epoch * (epoch + 1))
            hooks.on_epoch_begin(epoch)
            hooks.on_epoch_end(epoch, dict(row))
        optimizer.iterations.assign(self.steps)
        hooks.on_train_end()


# Optimizer variables that are not slots: the step count (set from `steps`) and the rate (from the config).
NOT_SLOTS = ("iteration", "learning_rate")


def slot_path(optimizer: keras.Optimizer, variable: keras.Variable, slot: str) -> str:
    """The path Keras 3 gives `variable`'s `slot` in `optimizer` (`adam/sequential_d1_kernel_momentum`)."""
    prefix = optimizer.iterations.path.rsplit("/", 1)[0]  # the optimizer's own name, as its variables carry it
    return f"{prefix}/{variable.path.replace('/', '_')}_{slot}"


def restore_optimizer(optimizer: keras.Optimizer, trainable: Sequence[keras.Variable], steps: int,
                      slots: Mapping[str, Sequence[NDArray[np.float32]]]) -> None:
    """Builds `optimizer` for `trainable` and sets its step count and every slot, matched by the public
    variables' paths.

    Raises:
        RuntimeError: a slot given has no variable of its path, or a slot variable of the optimizer was given no
            value (Keras named its slots otherwise): the saved optimizer would be silently wrong.
    """
    optimizer.build(trainable)
    optimizer.iterations.assign(steps)
    by_path = {v.path: v for v in optimizer.variables}
    assigned = {optimizer.iterations.path}
    for slot, values in slots.items():
        if len(values) != len(trainable):
            raise RuntimeError(f"{len(values)} values for the {slot!r} slots of {len(trainable)} variables")
        for variable, value in zip(trainable, values, strict=True):
            path = slot_path(optimizer, variable, slot)
            if path not in by_path:
                raise RuntimeError(f"{type(optimizer).__name__} has no variable {path!r}; its variables: "
                                   f"{', '.join(by_path)}")
            by_path[path].assign(value)
            assigned.add(path)
    missing = [p for p in by_path if p not in assigned and p.rsplit("/", 1)[-1] not in NOT_SLOTS]
    if missing:
        raise RuntimeError(f"{type(optimizer).__name__}'s variables {', '.join(missing)} were given no value by "
                           "the fused optimizer")
