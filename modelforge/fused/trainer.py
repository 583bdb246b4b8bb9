"""K arms trained as one model: every weight with a leading arm axis, one batched op per layer.

The arms are runs that differ only in what fuses: the initializer, the seed, and the optimizer's per-arm
scalars. Each arm starts from the weights its own Keras model drew (so from exactly its separate run's), reads
its own split in its own batch order, and its loss is summed with the others', so its gradients are its own.
The optimizer is `modelforge.fused.optimizer`'s: Adam, AdamW and SGD over the stacked variables, with a hyperparameter
per arm, as Keras 3 writes them per variable. An arm whose loss turns NaN or infinite is frozen from that
epoch on, and the others go on.

What fuses (`why_not` says why something does not): the layers `modelforge.fused.ops` covers; every loss and metric
(the defaults written out here, others as each arm's own Keras objects); Adam, AdamW or SGD (weight decay
per arm; clipping by value, norm or global norm, each arm's own); every `optimizer.schedule` (each arm's own,
called on its step count as Keras calls it); `trainer.class_weight` (each arm's from its own split); float32
on one device. Early stopping and plateaus are each arm's own: Keras' own EarlyStopping and
ReduceLROnPlateau decide for each arm on the arm's metrics; a stopped arm is frozen (with its best weights
when it restores them) while the others go on, and a plateau lowers that arm's rate alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelforge.errors import ConfigError
from modelforge.fused.handoff import Arm
from modelforge.fused.optimizer import ARM_SCALARS, CLIPPING, SHARED_ANY, SHARED_DEFAULTS, FusedOptimizer
from modelforge.run.checkpoint import FORMAT, PLATEAU_STATE, read_arrays, stopping_state, write_arrays
from modelforge.run.folder import RunFolder
from modelforge.run.setup import Session


def why_not(session: Session) -> str | None:
    """Why this run cannot train in a fused group (None: it can)."""
    run, model = session.run, session.model
    trainer, optimizer = run.trainer, run.optimizer
    from modelforge.fused.ops import why_not as layer_refused

    for layer in model.layers:
        refused = layer_refused(layer)
        if refused is not None:
            return refused
    if optimizer.name not in ARM_SCALARS:
        return f"optimizer={optimizer.name}; the fused model trains {' and '.join(ARM_SCALARS)}"
    known = {**ARM_SCALARS[optimizer.name], **SHARED_DEFAULTS[optimizer.name]}
    for key, value in optimizer.args.items():
        if key in CLIPPING or value is None or key in SHARED_ANY.get(optimizer.name, ()):
            continue
        if key not in known or (key in SHARED_DEFAULTS[optimizer.name] and value != known[key]):
            return f"optimizer.{key}={value!r} is not fused"
    checks = [
        (trainer.precision != "float32", f"trainer.precision={trainer.precision}"),
        (trainer.strategy != "default", f"trainer.strategy={trainer.strategy}"),
        (session.dataset.decode is not None, f"data={run.data.name} streams from files"),
    ]
    for not_covered, why in checks:
        if not_covered:
            return f"{why}, which the fused model does not cover"
    return None


class GroupStopped(Exception):  # noqa: N818 (how a fused group's training ends on a signal, not an error)
    """A stop signal arrived; the group's checkpoint holds its last complete epoch."""

    def __init__(self, signum: int, epochs_done: int) -> None:
        super().__init__(signum, epochs_done)
        self.signum, self.epochs_done = signum, epochs_done


class _ArmOptimizer:
    """What Keras' ReduceLROnPlateau reads and sets of an optimizer, for one arm: its entry of the rates."""

    def __init__(self, rates: Any, arm: int) -> None:
        self._rates, self._arm = rates, arm

    @property
    def learning_rate(self) -> Any:
        return self._rates[self._arm]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._rates[self._arm].assign(value)


class _ArmView:
    """What Keras' EarlyStopping and ReduceLROnPlateau read of a model, for one arm of the fused model."""

    def __init__(self, weights: Callable[[], list[Any]], optimizer: _ArmOptimizer) -> None:
        self.get_weights = weights
        self.optimizer = optimizer
        self.stop_training = False


def _arm_callbacks(run: Any, view: _ArmView) -> tuple[Any, Any]:
    """Keras' own EarlyStopping and ReduceLROnPlateau for one arm (None where the run does not use one)."""
    import keras

    from modelforge.run.fit import early_stopping_args, plateau_args

    trainer = run.trainer
    made = (keras.callbacks.EarlyStopping(**early_stopping_args(run)) if trainer.early_stopping.enabled else None,
            keras.callbacks.ReduceLROnPlateau(**plateau_args(run)) if trainer.reduce_on_plateau.enabled else None)
    for callback in made:
        if callback is not None:
            callback.set_model(view)
            callback.on_train_begin()
    return made


def train_group(sessions: Sequence[Session], on_epoch: Callable[[int], None] | None = None,
                checkpoint: Path | None = None, stop: Callable[[], int | None] | None = None) -> list[Arm]:
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
    """
    import numpy as np
    import tensorflow as tf

    first = sessions[0]
    k, trainer, task = len(sessions), first.run.trainer, first.run.task
    name = first.run.optimizer.name
    arm_args = [{**ARM_SCALARS[name], **{key: v for key, v in s.run.optimizer.args.items() if v is not None}}
                for s in sessions]
    clipping = {key: float(v) for key, v in first.run.optimizer.args.items() if key in CLIPPING and v}

    # The layers, read from the first arm's Keras model, and every arm's initial weights stacked.
    from modelforge.fused.ops import make_op

    ops, by_path = [], {}
    for index in range(len(first.model.layers)):
        def stacked(j: int, index: int = index) -> Any:
            found = tf.Variable(np.stack([s.model.layers[index].weights[j].numpy() for s in sessions]))
            by_path[first.model.layers[index].weights[j].path] = found
            return found

        ops.append(make_op([s.model.layers[index] for s in sessions], stacked))
    variables = [v for op in ops for v, trainable in zip(op.variables, op.trainable, strict=True) if trainable]
    softmax_head = task == "classification" and getattr(ops[-1].activation, "__name__", "") == "softmax"

    def forward(x: Any, training: bool) -> Any:
        """(arms, batch, ...) inputs to (arms, batch, outputs): logits for a softmax head, else outputs."""
        h = x
        for i, op in enumerate(ops):
            h = op.run(h, training)
            if op.activation is not None and not (softmax_head and i == len(ops) - 1):
                h = op.activation(h)
        return h

    def arm_losses(out: Any, y: Any) -> tuple[Any, Any]:
        """Per arm and sample: the loss (Keras' reduction is the mean over the batch) and the metric."""
        if softmax_head:
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)
            # Keras' accuracy takes the argmax of the probabilities, where near-equal logits can round to a
            # tie that goes to the first class: the same argmax here keeps each arm's count its run's.
            predicted = tf.argmax(tf.nn.softmax(out), axis=-1, output_type=y.dtype)
            metric = tf.cast(tf.equal(predicted, y), tf.float32)
            return losses, metric
        err = out - tf.cast(y, out.dtype)
        return tf.reduce_mean(err**2, axis=-1), tf.reduce_mean(tf.abs(err), axis=-1)

    # Each arm's learning rate as its own optimizer is given it: a number, or its schedule (built by the same
    # function), which the fused optimizer calls on the step count as Keras does.
    from modelforge.data.batches import steps_per_epoch
    from modelforge.run.fit import learning_rate

    per_epoch = steps_per_epoch(len(first.dataset.x_train), trainer.batch_size)
    optimizer = FusedOptimizer(name, variables, arm_args, clipping,
                               [learning_rate(s.run.optimizer, per_epoch, trainer.epochs) for s in sessions])
    alive = optimizer.alive

    features = tf.constant(np.stack([s.dataset.x_train for s in sessions]))
    targets = tf.constant(np.stack([s.dataset.y_train for s in sessions]))

    # trainer.class_weight=balanced: each arm's weights from its own training split, as its run's fit is given
    # them; Keras weighs the training loss (the mean over the batch of weight times loss), not the metrics.
    from modelforge.run.fit import balanced_class_weight

    classes = first.dataset.info.num_outputs
    weighed = trainer.class_weight == "balanced"
    if weighed:
        table = tf.constant([[weights[c] for c in range(classes)] for weights in (
            balanced_class_weight(s.dataset.y_train, classes) for s in sessions)], tf.float32)

    # trainer.loss and trainer.metrics other than the task's defaults: each arm's own Keras loss and metric
    # objects, made by the function its run compiles with, called on the arm's predictions as Keras calls them.
    from modelforge.run import compiled

    keras_terms = trainer.loss.name not in ("crossentropy", "mse") or \
        tuple(trainer.metrics or ()) not in ((), ("accuracy",), ("mae",))
    if keras_terms:
        dense = compiled.one_hot(trainer, task)
        loss_objects = [compiled.loss(s.run.trainer, task) for s in sessions]
        train_metrics = [compiled.metrics(s.run.trainer, task) for s in sessions]
        val_metrics = [compiled.metrics(s.run.trainer, task) for s in sessions]

    def keras_losses(out: Any, y: Any, weights: Any, metrics: list[list[Any]]) -> Any:
        """Each arm's batch loss (Keras' mean over the batch), its metrics updated with the batch."""
        found = []
        for a in range(k):
            # Keras' softmax keeps its logits on the tensor, and its crossentropy then takes them.
            predicted = ops[-1].activation(out[a]) if softmax_head else out[a]
            target = tf.one_hot(y[a], classes) if dense else y[a]
            found.append(loss_objects[a](target, predicted, sample_weight=None if weights is None else weights[a]))
            for metric in metrics[a]:
                metric.update_state(target, predicted)
        return tf.stack(found)

    def gradients(tape: Any, total: Any) -> tuple[list[Any], list[Any] | None]:
        """Each variable's gradient, and for embedding tables the per-occurrence sum of squares Keras' Adam and
        RMSprop take from their IndexedSlices gradients (None elsewhere)."""
        tapped = [op for op in ops if op.taps] if name != "sgd" else []
        found = tape.gradient(total, [*variables, *(op.taps[0][1] for op in tapped)])
        grads, squares = found[:len(variables)], [None] * len(variables)
        for op, d_out in zip(tapped, found[len(variables):], strict=True):
            (ids, _), table = op.taps[0], op.variables[0]
            vocab, width = int(table.shape[1]), int(table.shape[-1])
            offsets = tf.reshape(tf.range(k) * vocab, [k] + [1] * (len(ids.shape) - 1))
            summed = tf.math.unsorted_segment_sum(tf.reshape(tf.square(d_out), [-1, width]),
                                                  tf.reshape(ids + offsets, [-1]), k * vocab)
            squares[next(j for j, v in enumerate(variables) if v is table)] = tf.reshape(summed, table.shape)
        return list(grads), squares if tapped else None

    def train_step(idx: Any) -> tuple[Any, Any]:
        x = tf.gather(features, idx, batch_dims=1)
        y = tf.gather(targets, idx, batch_dims=1)
        weights = tf.gather(table, tf.cast(y, tf.int32), batch_dims=1) if weighed else None
        if keras_terms:
            with tf.GradientTape() as tape:
                batch_losses = keras_losses(forward(x, True), y, weights, train_metrics)
                total = tf.reduce_sum(batch_losses)
            optimizer.update(*gradients(tape, total))
            size = tf.cast(tf.shape(y)[1], tf.float32)
            return batch_losses * size, tf.zeros([k])  # the metrics are in their objects
        with tf.GradientTape() as tape:
            losses, metric = arm_losses(forward(x, True), y)
            if weighed:
                losses = losses * weights
            total = tf.reduce_sum(tf.reduce_mean(losses, axis=1))  # each arm's mean loss, summed over arms
        optimizer.update(*gradients(tape, total))
        return tf.reduce_sum(losses, axis=1), tf.reduce_sum(metric, axis=1)

    n, batch = len(first.dataset.x_train), trainer.batch_size
    full_batches, rest = divmod(n, batch)

    # No autograph: converting every function the step calls (the ops, Keras' activations) took ~2.4 s of
    # each group's 3.4 s trace, measured; the one loop is written as a tf.while_loop instead.
    # XLA (jit_compile) measured 5x slower at 1 arm and far worse at 9, with this loop.
    @tf.function(autograph=False)
    def train_epoch(orders: Any) -> tuple[Any, Any]:
        """One epoch in one call: the per-step cost of a Python loop is what fusing saves."""
        def body(step: Any, loss_sum: Any, metric_sum: Any) -> tuple[Any, Any, Any]:
            losses, metric = train_step(orders[:, step * batch:(step + 1) * batch])
            return step + 1, loss_sum + losses, metric_sum + metric

        _, loss_sum, metric_sum = tf.while_loop(lambda step, *_: step < full_batches, body,
                                                (tf.constant(0), tf.zeros([k]), tf.zeros([k])))
        if rest:  # the last, smaller batch, as Keras' fit takes it
            losses, metric = train_step(orders[:, full_batches * batch:])
            loss_sum, metric_sum = loss_sum + losses, metric_sum + metric
        return loss_sum, metric_sum

    x_val = tf.constant(np.stack([s.dataset.x_val for s in sessions]))
    y_val = tf.constant(np.stack([s.dataset.y_val for s in sessions]))

    @tf.function(autograph=False)
    def evaluate() -> tuple[Any, Any]:
        if keras_terms:
            return keras_losses(forward(x_val, False), y_val, None, val_metrics), tf.zeros([k])
        losses, metric = arm_losses(forward(x_val, False), y_val)
        return tf.reduce_mean(losses, axis=1), tf.reduce_mean(metric, axis=1)

    from modelforge.data.batches import epoch_order

    def arm_weights(a: int) -> Callable[[], list[Any]]:
        """Arm a's weights in the order of its Keras model's get_weights()."""
        return lambda: [np.asarray(by_path[w.path][a].numpy()) for w in first.model.weights]

    made = [_arm_callbacks(s.run, _ArmView(arm_weights(a), _ArmOptimizer(optimizer.rates, a)))
            for a, s in enumerate(sessions)]
    stoppers, plateaus = [m[0] for m in made], [m[1] for m in made]
    final: dict[int, list[Any]] = {}  # the weights of arms that stopped early
    metric_name = "accuracy" if task == "classification" else "mae"
    histories: list[list[dict[str, float]]] = [[] for _ in sessions]
    arm_steps = np.zeros(k)
    every = list(by_path.values())  # trainable or not (batch-norm statistics), in a fixed order
    first_epoch = 0
    # The group's checkpoint: every stacked variable and slot, the step counts, which arms live, each arm's
    # history and early-stopping state. Batch order is a function of (seed, epoch), so a sweep killed while
    # the group trains, once resumed, continues all its unfinished arms as the uninterrupted run would.
    saved = read_arrays(checkpoint) if checkpoint is not None else None
    if saved is not None and checkpoint is not None:  # a resumed sweep: the group goes on from its last epoch
        arrays, state = saved
        if state.get("format") != FORMAT:
            raise ConfigError(f"{checkpoint} was written by an older modelforge, in a layout this one does not "
                              f"read; the sweep in {checkpoint.parent.parent} cannot be resumed: run it again "
                              "into a new hydra.sweep.dir")
        for i, variable in enumerate(every):
            variable.assign(arrays[f"var_{i}"])
        for prefix, group in (("m", optimizer.slots), ("v", optimizer.second)):
            for i, variable in enumerate(group):
                variable.assign(arrays[f"{prefix}_{i}"])
        optimizer.steps.assign(float(state["steps"]))
        alive.assign(np.asarray(state["alive"], dtype=np.float32))
        arm_steps = np.asarray(state["arm_steps"], dtype=np.float64)
        histories = state["histories"]
        first_epoch = int(state["epochs_done"])
        for a, stopper in enumerate(stoppers):
            if stopper is not None:
                for key, value in state["stopping"][a].items():
                    setattr(stopper, key, value)
                count = int(state["best_counts"][a])
                stopper.best_weights = [arrays[f"best_{a}_{j}"] for j in range(count)] if count else None
        for a in state["final"]:
            final[int(a)] = [arrays[f"final_{a}_{j}"] for j in range(len(first.model.weights))]
        if "rates" in arrays:  # a checkpoint of this version (before it, rates were constants)
            optimizer.rates.assign(arrays["rates"])
        for plateau, counters in zip(plateaus, state.get("plateau") or [{}] * k, strict=True):
            for key, value in counters.items():
                setattr(plateau, key, value)
    started = time.perf_counter()
    for epoch in range(first_epoch, trainer.epochs):
        orders = np.stack([epoch_order(n, s.run.seed, epoch, trainer.shuffle) for s in sessions])
        arm_steps += alive.numpy() * per_epoch
        for metric in [m for arm in (train_metrics + val_metrics if keras_terms else []) for m in arm]:
            metric.reset_state()
        loss_sum, metric_sum = (t.numpy().astype(np.float64) for t in train_epoch(tf.constant(orders)))
        val_loss, val_metric = (t.numpy() for t in evaluate())
        living = alive.numpy()
        for a in range(k):
            if living[a] == 0:
                continue
            if keras_terms:
                row = {"loss": float(loss_sum[a] / n), **{m.name: float(m.result()) for m in train_metrics[a]},
                       "val_loss": float(val_loss[a]), **{f"val_{m.name}": float(m.result()) for m in val_metrics[a]}}
            else:
                row = {metric_name: float(metric_sum[a] / n), "loss": float(loss_sum[a] / n),
                       f"val_{metric_name}": float(val_metric[a]), "val_loss": float(val_loss[a])}
            histories[a].append(row)
            if not all(math.isfinite(v) for v in row.values()):
                alive[a].assign(0.0)  # this arm's run fails with its NaN epoch; the others go on
                continue
            if plateaus[a] is not None:  # before early stopping, as in a run's callbacks
                plateaus[a].on_epoch_end(epoch, dict(row))
            if stoppers[a] is not None:
                stopper = stoppers[a]
                stopper.on_epoch_end(epoch, dict(row))
                if stopper.model.stop_training:
                    alive[a].assign(0.0)
                    keep_best = stopper.restore_best_weights and stopper.best_weights is not None
                    final[a] = stopper.best_weights if keep_best else stopper.model.get_weights()
        if checkpoint is not None:
            arrays = {f"var_{i}": v.numpy() for i, v in enumerate(every)}
            arrays.update({f"m_{i}": v.numpy() for i, v in enumerate(optimizer.slots)})
            arrays.update({f"v_{i}": v.numpy() for i, v in enumerate(optimizer.second)})
            arrays["rates"] = optimizer.rates.numpy()
            best_counts = []
            for a, stopper in enumerate(stoppers):
                best = list(getattr(stopper, "best_weights", None) or [])
                best_counts.append(len(best))
                arrays.update({f"best_{a}_{j}": w for j, w in enumerate(best)})
            for a, weights in final.items():
                arrays.update({f"final_{a}_{j}": w for j, w in enumerate(weights)})
            write_arrays(RunFolder(checkpoint.parent), checkpoint.name, arrays, {
                "epochs_done": epoch + 1, "steps": float(optimizer.steps.numpy()), "alive": alive.numpy().tolist(),
                "arm_steps": arm_steps.tolist(), "histories": histories, "final": list(final),
                "best_counts": best_counts,
                "stopping": [stopping_state(s) if s is not None else {} for s in stoppers],
                "plateau": [stopping_state(p, PLATEAU_STATE) if p is not None else {} for p in plateaus]})
        if on_epoch is not None:
            on_epoch(epoch + 1)
        signum = stop() if stop is not None else None
        if signum is not None and epoch + 1 < trainer.epochs:
            raise GroupStopped(signum, epoch + 1)
    fit_s = time.perf_counter() - started

    arms = []
    for a in range(k):
        # Keras' EarlyStopping restores the best weights when training ends, stopped early or not.
        stopper = stoppers[a]
        restored = stopper is not None and stopper.restore_best_weights and stopper.best_weights is not None
        weights = final.get(a) or (list(stopper.best_weights) if restored else arm_weights(a)())
        fused = {"size": k, "arm": a, "fit_s": round(fit_s, 4)}
        arms.append(Arm(weights, histories[a], fused, int(arm_steps[a]), optimizer.keras_slots(a)))
    return arms

