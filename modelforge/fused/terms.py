"""A fused group's loss and metrics: the task's defaults written out over the arm axis (`DefaultTerms`), or each
arm's own Keras loss and metric objects, made by the function its run compiles with (`KerasTerms`). `terms_for`
picks one; the trainer asks it for the training step's terms, the validation's and each arm's history row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modelforge.core.config.metrics import DEFAULT_METRICS, LOSSES

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from modelforge.run.setup import Session



class Terms:
    """What a group's arms are trained and validated on.

    `train` gives the sum over arms of each arm's mean batch loss (what the gradient is taken of) and each arm's
    loss and metric summed over the batch; `validate`, each arm's validation loss and metric; `row`, arm a's
    history row under the names its run's Keras logs give.
    """

    def __init__(self, arms: int, softmax: Callable[[tf.Tensor], tf.Tensor] | None) -> None:
        """`softmax`: the head's softmax, when the model computes logits (None: the outputs as they are)."""
        self.arms, self.softmax = arms, softmax

    def reset(self) -> None:
        """Before each epoch."""

    def train(self, out: tf.Tensor, y: tf.Tensor, weights: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def validate(self, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def row(self, a: int, n: int, sums: Sequence[Sequence[float]], val: Sequence[Sequence[float]]) -> dict[str, float]:
        """`sums`: each arm's loss and metric summed over the epoch's `n` samples; `val`: the validation's."""
        raise NotImplementedError


class DefaultTerms(Terms):
    """Crossentropy and accuracy (from the head's logits), or mean squared error and mean absolute error."""

    def __init__(self, arms: int, softmax: Callable[[tf.Tensor], tf.Tensor] | None, task: str) -> None:
        super().__init__(arms, softmax)
        (self.metric,) = DEFAULT_METRICS[task]

    def per_sample(self, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Per arm and sample: the loss and the metric."""
        import tensorflow as tf

        if self.softmax is not None:
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)
            # Keras' accuracy takes the argmax of the probabilities, where near-equal logits can round to a
            # tie that goes to the first class: the same argmax here keeps each arm's count its run's.
            predicted = tf.argmax(tf.nn.softmax(out), axis=-1, output_type=y.dtype)
            return losses, tf.cast(tf.equal(predicted, y), tf.float32)
        err = out - tf.cast(y, out.dtype)
        return tf.reduce_mean(err**2, axis=-1), tf.reduce_mean(tf.abs(err), axis=-1)

    def train(self, out: tf.Tensor, y: tf.Tensor, weights: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        losses, metric = self.per_sample(out, y)
        if weights is not None:
            losses = losses * weights
        total = tf.reduce_sum(tf.reduce_mean(losses, axis=1))  # each arm's mean loss, summed over arms
        return total, tf.reduce_sum(losses, axis=1), tf.reduce_sum(metric, axis=1)

    def validate(self, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        losses, metric = self.per_sample(out, y)
        return tf.reduce_mean(losses, axis=1), tf.reduce_mean(metric, axis=1)

    def row(self, a: int, n: int, sums: Sequence[Sequence[float]], val: Sequence[Sequence[float]]) -> dict[str, float]:
        name = self.metric
        return {name: float(sums[1][a] / n), "loss": float(sums[0][a] / n), f"val_{name}": float(val[1][a]),
                "val_loss": float(val[0][a])}


class KerasTerms(Terms):
    """Each arm's own Keras loss and metric objects (for a `trainer.loss` or `trainer.metrics` other than the
    task's defaults); the metrics keep their sums in their objects."""

    def __init__(self, arms: int, softmax: Callable[[tf.Tensor], tf.Tensor] | None, sessions: Sequence[Session],
                 classes: int) -> None:
        from modelforge.run import compiled

        super().__init__(arms, softmax)
        first = sessions[0].run
        self.classes, self.one_hot = classes, compiled.one_hot(first.trainer, first.task)
        self.losses = [compiled.loss(s.run.trainer, s.run.task) for s in sessions]
        self.train_metrics = [compiled.metrics(s.run.trainer, s.run.task) for s in sessions]
        self.val_metrics = [compiled.metrics(s.run.trainer, s.run.task) for s in sessions]

    def reset(self) -> None:
        for metric in [m for arm in self.train_metrics + self.val_metrics for m in arm]:
            metric.reset_state()

    def batch_losses(self, out: tf.Tensor, y: tf.Tensor, weights: tf.Tensor | None,
                     metrics: list[list[keras.metrics.Metric]]) -> tf.Tensor:
        """Each arm's batch loss by its own Keras loss (the mean over the batch), its metrics updated."""
        import tensorflow as tf

        found = []
        for a in range(self.arms):
            # Keras' softmax keeps its logits on the tensor, and its crossentropy then takes them.
            predicted = self.softmax(out[a]) if self.softmax is not None else out[a]
            target = tf.one_hot(y[a], self.classes) if self.one_hot else y[a]
            found.append(self.losses[a](target, predicted, sample_weight=None if weights is None else weights[a]))
            for metric in metrics[a]:
                metric.update_state(target, predicted)
        return tf.stack(found)

    def train(self, out: tf.Tensor, y: tf.Tensor, weights: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        losses = self.batch_losses(out, y, weights, self.train_metrics)
        return tf.reduce_sum(losses), losses * tf.cast(tf.shape(y)[1], tf.float32), tf.zeros([self.arms])

    def validate(self, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        return self.batch_losses(out, y, None, self.val_metrics), tf.zeros([self.arms])

    def row(self, a: int, n: int, sums: Sequence[Sequence[float]], val: Sequence[Sequence[float]]) -> dict[str, float]:
        return {"loss": float(sums[0][a] / n), **{m.name: float(m.result()) for m in self.train_metrics[a]},
                "val_loss": float(val[0][a]), **{f"val_{m.name}": float(m.result()) for m in self.val_metrics[a]}}


def terms_for(sessions: Sequence[Session], softmax: Callable[[tf.Tensor], tf.Tensor] | None, classes: int) -> Terms:
    """The group's terms: the task's defaults where every arm's run compiles with them, else each arm's own."""
    run = sessions[0].run
    task = run.task
    auto_loss = next(iter(LOSSES[task]))  # `trainer.loss=auto`'s
    if run.trainer.loss.name == auto_loss and tuple(run.trainer.metrics or ()) in ((), DEFAULT_METRICS[task]):
        return DefaultTerms(len(sessions), softmax, run.task)
    return KerasTerms(len(sessions), softmax, sessions, classes)
