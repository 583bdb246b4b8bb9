"""Each arm's own end of epoch in a fused group: Keras' own EarlyStopping and ReduceLROnPlateau per arm, on views
of that arm, its history, and the weights of an arm that stopped."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf
    from numpy.typing import NDArray

    from modelforge.core.config.schema import RunConfig
    from modelforge.fused.optimizer import FusedOptimizer

Weights = list["NDArray[np.float32]"]


class ArmOptimizer:
    """What Keras' ReduceLROnPlateau reads and sets of an optimizer, for one arm: its entry of the rates."""

    def __init__(self, rates: tf.Variable, arm: int) -> None:
        self._rates, self._arm = rates, arm

    @property
    def learning_rate(self) -> tf.Tensor:
        return self._rates[self._arm]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._rates[self._arm].assign(value)


class ArmView:
    """What Keras' EarlyStopping and ReduceLROnPlateau read of a model, for one arm of the fused model."""

    def __init__(self, weights: Callable[[], Weights], optimizer: ArmOptimizer) -> None:
        self.get_weights = weights
        self.optimizer = optimizer
        self.stop_training = False


def _callbacks(run: RunConfig, view: ArmView) -> tuple[keras.callbacks.EarlyStopping | None,
                                                        keras.callbacks.ReduceLROnPlateau | None]:
    """Keras' own EarlyStopping and ReduceLROnPlateau for one arm (None where the run does not use one)."""
    import keras

    from modelforge.run.fit import early_stopping_args, plateau_args

    trainer = run.trainer
    stopper = keras.callbacks.EarlyStopping(**early_stopping_args(run)) if trainer.early_stopping.enabled else None
    plateau = keras.callbacks.ReduceLROnPlateau(**plateau_args(run)) if trainer.reduce_on_plateau.enabled else None
    for callback in (stopper, plateau):
        if callback is not None:
            callback.set_model(view)
            callback.on_train_begin()
    return stopper, plateau


class ArmCallbacks:
    """Every arm's callbacks, history, step count and, once it stopped early, its weights.

    Attributes:
        stoppers, plateaus: each arm's EarlyStopping and ReduceLROnPlateau (None where its run has none).
        histories: each arm's history rows, as its run's Keras logs name them.
        steps: each arm's optimizer steps (a frozen arm's stop counting).
        stopped_weights: arm -> the weights it stopped with (its best, when it restores them).
    """

    def __init__(self, runs: Sequence[RunConfig], weights: Callable[[int], Callable[[], Weights]],
                 optimizer: FusedOptimizer) -> None:
        import numpy as np

        made = [_callbacks(run, ArmView(weights(a), ArmOptimizer(optimizer.rates, a))) for a, run in enumerate(runs)]
        self.stoppers = [m[0] for m in made]
        self.plateaus = [m[1] for m in made]
        self.histories: list[list[dict[str, float]]] = [[] for _ in runs]
        self.steps = np.zeros(len(runs))
        self.stopped_weights: dict[int, Weights] = {}
        self.weights, self.alive = weights, optimizer.alive

    def end_epoch(self, epoch: int, a: int, row: dict[str, float]) -> None:
        """Arm a's epoch end, as its run's callbacks see it: its history row; a NaN freezes it (its run fails
        with that epoch); its plateau, then its early stopping, decide on its own metrics."""
        self.histories[a].append(row)
        if not all(math.isfinite(v) for v in row.values()):
            self.alive[a].assign(0.0)  # the others go on
            return
        plateau, stopper = self.plateaus[a], self.stoppers[a]
        if plateau is not None:  # before early stopping, as in a run's callbacks
            plateau.on_epoch_end(epoch, dict(row))
        if stopper is not None:
            stopper.on_epoch_end(epoch, dict(row))
            if stopper.model.stop_training:
                self.alive[a].assign(0.0)
                keep_best = stopper.restore_best_weights and stopper.best_weights is not None
                self.stopped_weights[a] = stopper.best_weights if keep_best else stopper.model.get_weights()

    def final_weights(self, a: int) -> Weights:
        """Arm a's weights when training ends: Keras' EarlyStopping restores the best, stopped early or not."""
        stopper = self.stoppers[a]
        if a in self.stopped_weights:
            return self.stopped_weights[a]
        if stopper is not None and stopper.restore_best_weights and stopper.best_weights is not None:
            return list(stopper.best_weights)
        return self.weights(a)()
