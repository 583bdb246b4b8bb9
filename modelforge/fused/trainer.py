"""K arms trained as one model: every weight with a leading arm axis, one batched op per layer.

The arms are runs that differ only in what fuses: the initializer, the seed, and the optimizer's per-arm
scalars. Each arm starts from the weights its own Keras model drew (so from exactly its separate run's), reads
its own split in its own batch order, and its loss is summed with the others', so its gradients are its own.
An arm whose loss turns NaN or infinite is frozen from that epoch on, and the others go on.

The pieces, one job each: the fused model (`modelforge.fused.model`: ops, forward, gradients), the optimizer
(`modelforge.fused.optimizer`: one rule per Keras optimizer), the loss terms (`modelforge.fused.terms`), each
arm's callbacks (`modelforge.fused.arms`: Keras' own EarlyStopping and ReduceLROnPlateau per arm), the group
checkpoint (`modelforge.fused.checkpoint`) and what fuses (`modelforge.fused.eligibility`). This module holds
the group's data and its epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelforge.core.registry import ARM_SCALARS
from modelforge.fused import checkpoint as group_checkpoint
from modelforge.fused.arms import ArmCallbacks
from modelforge.fused.handoff import Arm
from modelforge.fused.model import FusedModel
from modelforge.fused.optimizer import CLIPPING, FusedOptimizer
from modelforge.fused.terms import terms_for

if TYPE_CHECKING:
    import tensorflow as tf

    from modelforge.run.setup import Session


class GroupStopped(Exception):  # noqa: N818 (how a fused group's training ends on a signal, not an error)
    """A stop signal arrived; the group's checkpoint holds its last complete epoch."""

    def __init__(self, signum: int, epochs_done: int) -> None:
        super().__init__(signum, epochs_done)
        self.signum, self.epochs_done = signum, epochs_done


def train_group(sessions: Sequence[Session], on_epoch: Callable[[int], None] | None = None,
                checkpoint: Path | None = None, stop: Callable[[], int | None] | None = None,
                belongs: Mapping[str, object] | None = None,
                on_restore: Callable[[int], None] | None = None) -> list[Arm]:
    """Trains the sessions' arms as one model; returns each arm's final weights and history.

    The sessions share everything but what fuses (the launcher groups them so): the layers, the data set and
    split sizes, the batch size, the epochs and the optimizer class.

    Args:
        sessions: the arms' runs, set up (their models as first built hold their initial weights).
        on_epoch: called with the number of epochs done, after each.
        checkpoint: where the group's checkpoint goes after every epoch; training continues from it when it
            is there.
        stop: polled after every epoch (and its checkpoint): a signal number ends the training with
            `GroupStopped`.
        belongs: the group the checkpoint is written for (its arms' config digests): a checkpoint of another
            group is not restored.
        on_restore: called with the epochs done when training continues from the checkpoint.
    """
    group = GroupTrainer(sessions, belongs)
    first_epoch = group_checkpoint.load(group, checkpoint) if checkpoint is not None else 0
    if first_epoch and on_restore is not None:
        on_restore(first_epoch)
    return group.fit(first_epoch, on_epoch, checkpoint, stop)


class GroupData:
    """Every arm's split, stacked (arm axis first), and with `trainer.class_weight=balanced` each arm's class
    weights from its own split, as its run's fit is given them (Keras weighs the training loss, not the metrics)."""

    def __init__(self, sessions: Sequence[Session]) -> None:
        import numpy as np
        import tensorflow as tf

        from modelforge.run.fit import balanced_class_weight

        first = sessions[0].dataset
        self.features = tf.constant(np.stack([s.dataset.x_train for s in sessions]))
        self.targets = tf.constant(np.stack([s.dataset.y_train for s in sessions]))
        self.x_val = tf.constant(np.stack([s.dataset.x_val for s in sessions]))
        self.y_val = tf.constant(np.stack([s.dataset.y_val for s in sessions]))
        self.samples, self.classes = len(first.x_train), first.info.num_outputs
        self.class_weights = tf.constant([[w[c] for c in range(self.classes)] for w in (
            balanced_class_weight(s.dataset.y_train, self.classes) for s in sessions)], tf.float32) \
            if sessions[0].run.trainer.class_weight == "balanced" else None

    def batch(self, idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """Every arm's batch at its own sample indices: inputs, targets, and each sample's class weight."""
        import tensorflow as tf

        x = tf.gather(self.features, idx, batch_dims=1)
        y = tf.gather(self.targets, idx, batch_dims=1)
        weights = None if self.class_weights is None else \
            tf.gather(self.class_weights, tf.cast(y, tf.int32), batch_dims=1)
        return x, y, weights


def _optimizer(sessions: Sequence[Session], model: FusedModel, per_epoch: int) -> FusedOptimizer:
    """The group's optimizer: each arm's scalars, its learning rate as its own optimizer is given it (a number, or
    its schedule, built by the same function), which the fused optimizer calls on the step count, and each arm's
    per-weight learning-rate multipliers (muP's, from its plan)."""
    from modelforge.run.fit import learning_rate

    first = sessions[0].run
    name, epochs = first.optimizer.name, first.trainer.epochs
    arm_args = [{**ARM_SCALARS[name], **{key: v for key, v in s.run.optimizer.args.items() if v is not None}}
                for s in sessions]
    clipping = {key: float(v) for key, v in first.optimizer.args.items() if key in CLIPPING and v}
    paths = {id(v): path for path, v in model.by_path.items()}
    rates = [s.plan.rate_multipliers() for s in sessions]
    multipliers = [[arm.get(paths[id(v)], 1.0) for arm in rates] for v in model.trainable]
    return FusedOptimizer(name, model.trainable, arm_args, clipping,
                          [learning_rate(s.run.optimizer, per_epoch, epochs) for s in sessions], multipliers)


class GroupTrainer:
    """A fused group: its model, optimizer, data, loss terms and each arm's callbacks, and its epochs.

    The pieces a reader holds one at a time: a training step (`step`), an epoch in one graph call (`epoch`), the
    evaluation (`evaluate`), and the epochs with each arm's end of epoch (`fit`).
    """

    def __init__(self, sessions: Sequence[Session], belongs: Mapping[str, object] | None = None) -> None:
        import tensorflow as tf

        from modelforge.data.batches import steps_per_epoch

        self.sessions, self.config = list(sessions), sessions[0].run.trainer
        self.belongs = belongs  # the group its checkpoint is written for
        self.model = FusedModel(sessions)
        self.data = GroupData(sessions)
        self.per_epoch = steps_per_epoch(self.data.samples, self.config.batch_size)
        self.optimizer = _optimizer(sessions, self.model, self.per_epoch)
        self.terms = terms_for(sessions, self.model.head_softmax(), self.data.classes)
        self.arms = ArmCallbacks([s.run for s in sessions], lambda a: lambda: self.model.arm_weights(a),
                                 self.optimizer)
        self.weights_per_arm = len(self.model.weight_paths)
        # No autograph: the one loop is written as a tf.while_loop, and converting every function the step calls
        # (the ops, Keras' activations) would dominate each group's trace. No XLA: docs/benchmarks.md.
        self.train_epoch = tf.function(self.epoch, autograph=False)
        self.evaluate = tf.function(self._evaluate, autograph=False)

    def step(self, idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One batch for every arm (`idx`: each arm's sample indices): the update, and each arm's summed loss
        and metric over the batch."""
        import tensorflow as tf

        x, y, weights = self.data.batch(idx)
        with tf.GradientTape() as tape:
            total, losses, metric = self.terms.train(self.model.forward(x, True), y, weights)
        scale = self.optimizer.rule.occurrence_scale()
        self.optimizer.update(*self.model.gradients(tape, total, scale, self.optimizer.rule.second_moments))
        return losses, metric

    def epoch(self, orders: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One epoch in one graph call (`train_epoch`): the per-step cost of a Python loop is what fusing
        saves. Returns each arm's summed loss and metric over the epoch."""
        import tensorflow as tf

        batch, k = self.config.batch_size, len(self.sessions)
        full_batches, rest = divmod(self.data.samples, batch)

        def body(step: tf.Tensor, loss_sum: tf.Tensor, metric_sum: tf.Tensor) -> tuple[tf.Tensor, ...]:
            losses, metric = self.step(orders[:, step * batch:(step + 1) * batch])
            return step + 1, loss_sum + losses, metric_sum + metric

        _, loss_sum, metric_sum = tf.while_loop(lambda step, *_: step < full_batches, body,
                                                (tf.constant(0), tf.zeros([k]), tf.zeros([k])))
        if rest:  # the last, smaller batch, as Keras' fit takes it
            losses, metric = self.step(orders[:, full_batches * batch:])
            loss_sum, metric_sum = loss_sum + losses, metric_sum + metric
        return loss_sum, metric_sum

    def _evaluate(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Each arm's validation loss and metric (`evaluate`, one graph call)."""
        return self.terms.validate(self.model.forward(self.data.x_val, False), self.data.y_val)

    def fit(self, first_epoch: int, on_epoch: Callable[[int], None] | None, checkpoint: Path | None,
            stop: Callable[[], int | None] | None) -> list[Arm]:
        """The epochs from `first_epoch` on, each arm's end of epoch, the checkpoint, the stop signal."""
        import numpy as np
        import tensorflow as tf

        from modelforge.data.batches import epoch_order

        started = time.perf_counter()
        for epoch in range(first_epoch, self.config.epochs):
            orders = np.stack([epoch_order(self.data.samples, s.run.seed, epoch, self.config.shuffle)
                               for s in self.sessions])
            self.arms.steps += self.optimizer.alive.numpy() * self.per_epoch
            self.terms.reset()
            sums = [t.numpy().astype(np.float64) for t in self.train_epoch(tf.constant(orders))]
            val = [t.numpy() for t in self.evaluate()]
            living = self.optimizer.alive.numpy()
            for a in range(len(self.sessions)):
                if living[a]:
                    self.arms.end_epoch(epoch, a, self.terms.row(a, self.data.samples, sums, val))
            if checkpoint is not None:
                group_checkpoint.save(self, checkpoint, epoch + 1)
            if on_epoch is not None:
                on_epoch(epoch + 1)
            signum = stop() if stop is not None else None
            if signum is not None and epoch + 1 < self.config.epochs:
                raise GroupStopped(signum, epoch + 1)
        return self.outcomes(time.perf_counter() - started)

    def outcomes(self, fit_s: float) -> list[Arm]:
        """Each arm's outcome: its final weights, history, share of the group and optimizer state."""
        k = len(self.sessions)
        return [Arm(self.arms.final_weights(a), self.arms.histories[a], {"size": k, "arm": a, "fit_s": round(fit_s, 4)},
                    int(self.arms.steps[a]), self.optimizer.keras_slots(a)) for a in range(k)]
