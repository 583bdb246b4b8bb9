"""K arms trained as one model: every weight with a leading arm axis, one batched op per layer.

The arms are runs that differ only in what fuses: the initializer, the seed, and the optimizer's per-arm
scalars. Each arm starts from the weights its own Keras model drew (so from exactly its separate run's), reads
its own split in its own batch order, and its loss is summed with the others', so its gradients are its own.
The optimizer is `modelforge.fused.optimizer`'s: Adam, AdamW and SGD over the stacked variables, with a hyperparameter
per arm, as Keras 3 writes them per variable. An arm whose loss turns NaN or infinite is frozen from that
epoch on, and the others go on.

What fuses (`run_refused` says why a run does not): the layers `modelforge.fused.ops` covers; every loss and metric
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelforge.core.model.graph import chained, layers_of, walk
from modelforge.core.names import INPUTS
from modelforge.core.registry import ARM_SCALARS
from modelforge.errors import ConfigError
from modelforge.fused.handoff import Arm
from modelforge.fused.optimizer import CLIPPING, SHARED_ANY, SHARED_DEFAULTS, FusedOptimizer
from modelforge.run.checkpoint import FORMAT, PLATEAU_STATE, read_arrays, stopping_state, write_arrays
from modelforge.run.folder import RunFolder
from modelforge.run.setup import Session


def run_refused(session: Session) -> str | None:
    """Why this run cannot train in a fused group (None: it can)."""
    run, model = session.run, session.model
    trainer, optimizer = run.trainer, run.optimizer
    from modelforge.fused.ops import layer_refused

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
    clipped = [key for key in CLIPPING if optimizer.args.get(key)]
    embedded = any(type(layer).__name__ == "Embedding" for layer in model.layers)
    checks = [
        # Keras clips an embedding's IndexedSlices gradient by the norm of its occurrences, not of its rows.
        (bool(clipped) and embedded, f"optimizer.{clipped[0] if clipped else ''} with an Embedding layer"),
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
                checkpoint: Path | None = None, stop: Callable[[], int | None] | None = None,
                belongs: Mapping[str, Any] | None = None) -> list[Arm]:
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
    """
    group = GroupTrainer(sessions)
    group.belongs = belongs
    first_epoch = restore(group, checkpoint) if checkpoint is not None else 0
    return group.fit(first_epoch, on_epoch, checkpoint, stop)


class GroupTrainer:
    """A fused group: its ops over stacked variables, its optimizer and data, each arm's callbacks and history.

    The pieces a reader holds one at a time: the forward pass and the losses (`forward`, `losses`), a
    training step (`step`), an epoch in one graph call (`epoch`), the evaluation (`evaluate`), each arm's
    end of epoch (`end_epoch`), and the group checkpoint (`save` and `restore`, below).
    """

    def __init__(self, sessions: Sequence[Session]) -> None:
        self.sessions, self.first = list(sessions), sessions[0]
        self.k, self.trainer, self.task = len(sessions), self.first.run.trainer, self.first.run.task
        self.name = self.first.run.optimizer.name
        self.belongs: Mapping[str, Any] | None = None  # the group its checkpoint is written for
        self._build_ops()
        self._build_optimizer()
        self._build_data()
        self._build_terms()
        self._build_callbacks()
        import tensorflow as tf

        # No autograph: converting every function the step calls (the ops, Keras' activations) took ~2.4 s of
        # each group's 3.4 s trace, measured; the one loop is written as a tf.while_loop instead.
        # XLA (jit_compile) measured 5x slower at 1 arm and far worse at 9, with this loop.
        self.train_epoch = tf.function(self.epoch, autograph=False)
        self.evaluate = tf.function(self._evaluate, autograph=False)

    def _build_ops(self) -> None:
        """The layers, read from every arm's Keras model, with every arm's initial weights stacked."""
        import numpy as np
        import tensorflow as tf

        from modelforge.fused.ops import make_op

        sessions, first = self.sessions, self.first
        self.ops: list[Any] = []
        self.by_path: dict[str, Any] = {}
        for index in range(len(first.model.layers)):
            def stacked(j: int, index: int = index) -> Any:
                found = tf.Variable(np.stack([s.model.layers[index].weights[j].numpy() for s in sessions]))
                self.by_path[first.model.layers[index].weights[j].path] = found
                return found

            self.ops.append(make_op([s.model.layers[index] for s in sessions], stacked))
        named = {layer.name: op for layer, op in zip(first.model.layers, self.ops, strict=True)}
        self.node_ops = {spec.name: [named[layer.name] for layer in layers_of(first.model, spec.name, spec.activation)]
                         for spec in first.plan.specs}
        in_nodes = {id(op) for ops in self.node_ops.values() for op in ops}
        self.leading = [op for op in self.ops if id(op) not in in_nodes]  # the input and its standardization
        self.variables = [v for op in self.ops for v, trainable in zip(op.variables, op.trainable, strict=True)
                          if trainable]
        self.every = list(self.by_path.values())  # trainable or not (batch-norm statistics), in a fixed order
        self.softmax_head = self.task == "classification" and \
            getattr(self.ops[-1].activation, "__name__", "") == "softmax"

    def _build_optimizer(self) -> None:
        """Each arm's learning rate as its own optimizer is given it: a number, or its schedule (built by the
        same function), which the fused optimizer calls on the step count as Keras does."""
        from modelforge.data.batches import steps_per_epoch
        from modelforge.run.fit import learning_rate

        name, trainer = self.name, self.trainer
        arm_args = [{**ARM_SCALARS[name], **{key: v for key, v in s.run.optimizer.args.items() if v is not None}}
                    for s in self.sessions]
        clipping = {key: float(v) for key, v in self.first.run.optimizer.args.items() if key in CLIPPING and v}
        self.per_epoch = steps_per_epoch(len(self.first.dataset.x_train), trainer.batch_size)
        self.optimizer = FusedOptimizer(name, self.variables, arm_args, clipping,
                                        [learning_rate(s.run.optimizer, self.per_epoch, trainer.epochs)
                                         for s in self.sessions])
        self.alive = self.optimizer.alive

    def _build_data(self) -> None:
        """Every arm's split, stacked; `trainer.class_weight=balanced`: each arm's weights from its own split,
        as its run's fit is given them (Keras weighs the training loss, not the metrics)."""
        import numpy as np
        import tensorflow as tf

        from modelforge.run.fit import balanced_class_weight

        sessions = self.sessions
        self.features = tf.constant(np.stack([s.dataset.x_train for s in sessions]))
        self.targets = tf.constant(np.stack([s.dataset.y_train for s in sessions]))
        self.x_val = tf.constant(np.stack([s.dataset.x_val for s in sessions]))
        self.y_val = tf.constant(np.stack([s.dataset.y_val for s in sessions]))
        self.n, self.classes = len(self.first.dataset.x_train), self.first.dataset.info.num_outputs
        self.weighed = self.trainer.class_weight == "balanced"
        self.class_table = tf.constant([[w[c] for c in range(self.classes)] for w in (
            balanced_class_weight(s.dataset.y_train, self.classes) for s in sessions)], tf.float32) \
            if self.weighed else None

    def _build_terms(self) -> None:
        """trainer.loss and trainer.metrics other than the task's defaults: each arm's own Keras loss and
        metric objects, made by the function its run compiles with."""
        from modelforge.run import compiled

        trainer, task = self.trainer, self.task
        self.keras_terms = trainer.loss.name not in ("crossentropy", "mse") or \
            tuple(trainer.metrics or ()) not in ((), ("accuracy",), ("mae",))
        self.metric_name = "accuracy" if task == "classification" else "mae"
        self.train_metrics: list[list[Any]] = []
        self.val_metrics: list[list[Any]] = []
        if self.keras_terms:
            self.dense = compiled.one_hot(trainer, task)
            self.loss_objects = [compiled.loss(s.run.trainer, task) for s in self.sessions]
            self.train_metrics = [compiled.metrics(s.run.trainer, task) for s in self.sessions]
            self.val_metrics = [compiled.metrics(s.run.trainer, task) for s in self.sessions]

    def _build_callbacks(self) -> None:
        """Keras' own EarlyStopping and ReduceLROnPlateau per arm, on views of that arm."""
        import numpy as np

        made = [_arm_callbacks(s.run, _ArmView(self.arm_weights(a), _ArmOptimizer(self.optimizer.rates, a)))
                for a, s in enumerate(self.sessions)]
        self.stoppers, self.plateaus = [m[0] for m in made], [m[1] for m in made]
        self.final: dict[int, list[Any]] = {}  # the weights of arms that stopped early
        self.histories: list[list[dict[str, float]]] = [[] for _ in self.sessions]
        self.arm_steps = np.zeros(self.k)

    def arm_weights(self, a: int) -> Callable[[], list[Any]]:
        """Arm a's weights in the order of its Keras model's get_weights()."""
        import numpy as np

        return lambda: [np.asarray(self.by_path[w.path][a].numpy()) for w in self.first.model.weights]

    def forward(self, x: Any, training: bool) -> Any:
        """(arms, batch, ...) inputs to (arms, batch, outputs): logits for a softmax head, else outputs. The
        layers before any node (the input, the standardization) first, then the model's walk in its plan's
        order (`core.model.graph.walk`), each node's ops on its inputs."""
        def run(op: Any, h: Any) -> Any:
            h = op.run(h, training)
            if op.activation is not None and not (self.softmax_head and op is self.ops[-1]):
                h = op.activation(h)
            return h

        h = x
        for op in self.leading:
            h = run(op, h)
        specs = self.first.plan.specs
        return walk(specs, {INPUTS: h}, lambda spec, xs: chained(self.node_ops[spec.name], xs, run))[specs[-1].name]

    def losses(self, out: Any, y: Any) -> tuple[Any, Any]:
        """Per arm and sample, with the task's default terms: the loss (Keras' reduction is the mean over the
        batch) and the metric."""
        import tensorflow as tf

        if self.softmax_head:
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out)
            # Keras' accuracy takes the argmax of the probabilities, where near-equal logits can round to a
            # tie that goes to the first class: the same argmax here keeps each arm's count its run's.
            predicted = tf.argmax(tf.nn.softmax(out), axis=-1, output_type=y.dtype)
            return losses, tf.cast(tf.equal(predicted, y), tf.float32)
        err = out - tf.cast(y, out.dtype)
        return tf.reduce_mean(err**2, axis=-1), tf.reduce_mean(tf.abs(err), axis=-1)

    def keras_losses(self, out: Any, y: Any, weights: Any, metrics: list[list[Any]]) -> Any:
        """Each arm's batch loss by its own Keras loss (the mean over the batch), its metrics updated."""
        import tensorflow as tf

        found = []
        for a in range(self.k):
            # Keras' softmax keeps its logits on the tensor, and its crossentropy then takes them.
            predicted = self.ops[-1].activation(out[a]) if self.softmax_head else out[a]
            target = tf.one_hot(y[a], self.classes) if self.dense else y[a]
            found.append(self.loss_objects[a](target, predicted,
                                              sample_weight=None if weights is None else weights[a]))
            for metric in metrics[a]:
                metric.update_state(target, predicted)
        return tf.stack(found)

    def gradients(self, tape: Any, total: Any) -> tuple[list[Any], list[Any] | None]:
        """Each variable's gradient, and for embedding tables the per-occurrence sum of squares Keras' Adam and
        RMSprop take from their IndexedSlices gradients (None elsewhere)."""
        import tensorflow as tf

        k, variables = self.k, self.variables
        tapped = [op for op in self.ops if op.taps] if self.name != "sgd" else []
        found = tape.gradient(total, [*variables, *(op.taps[0][1] for op in tapped)])
        grads, squares = found[:len(variables)], [None] * len(variables)
        for op, d_out in zip(tapped, found[len(variables):], strict=True):
            (ids, _), table = op.taps[0], op.variables[0]
            vocab, width = int(table.shape[1]), int(table.shape[-1])
            offsets = tf.reshape(tf.range(k) * vocab, [k] + [1] * (len(ids.shape) - 1))
            occurrences = tf.square(d_out)
            scale = self.optimizer.occurrence_scale()
            if scale is not None:  # each occurrence scaled before the rows are summed, as Keras does it
                shape = [k] + [1] * (len(d_out.shape) - 1)
                occurrences = occurrences * tf.reshape(tf.constant(scale, tf.float32), shape)
            summed = tf.math.unsorted_segment_sum(tf.reshape(occurrences, [-1, width]),
                                                  tf.reshape(ids + offsets, [-1]), k * vocab)
            squares[next(j for j, v in enumerate(variables) if v is table)] = tf.reshape(summed, table.shape)
        return list(grads), squares if tapped else None

    def step(self, idx: Any) -> tuple[Any, Any]:
        """One batch for every arm (`idx`: each arm's sample indices): the update, and each arm's summed loss
        and metric over the batch."""
        import tensorflow as tf

        x = tf.gather(self.features, idx, batch_dims=1)
        y = tf.gather(self.targets, idx, batch_dims=1)
        weights = tf.gather(self.class_table, tf.cast(y, tf.int32), batch_dims=1) if self.weighed else None
        with tf.GradientTape() as tape:
            if self.keras_terms:
                batch_losses = self.keras_losses(self.forward(x, True), y, weights, self.train_metrics)
                total = tf.reduce_sum(batch_losses)
            else:
                losses, metric = self.losses(self.forward(x, True), y)
                if weights is not None:
                    losses = losses * weights
                total = tf.reduce_sum(tf.reduce_mean(losses, axis=1))  # each arm's mean loss, summed over arms
        self.optimizer.update(*self.gradients(tape, total))
        if self.keras_terms:  # the metrics are in their objects
            return batch_losses * tf.cast(tf.shape(y)[1], tf.float32), tf.zeros([self.k])
        return tf.reduce_sum(losses, axis=1), tf.reduce_sum(metric, axis=1)

    def epoch(self, orders: Any) -> tuple[Any, Any]:
        """One epoch in one graph call (`train_epoch`): the per-step cost of a Python loop is what fusing
        saves. Returns each arm's summed loss and metric over the epoch."""
        import tensorflow as tf

        batch, k = self.trainer.batch_size, self.k
        full_batches, rest = divmod(self.n, batch)

        def body(step: Any, loss_sum: Any, metric_sum: Any) -> tuple[Any, Any, Any]:
            losses, metric = self.step(orders[:, step * batch:(step + 1) * batch])
            return step + 1, loss_sum + losses, metric_sum + metric

        _, loss_sum, metric_sum = tf.while_loop(lambda step, *_: step < full_batches, body,
                                                (tf.constant(0), tf.zeros([k]), tf.zeros([k])))
        if rest:  # the last, smaller batch, as Keras' fit takes it
            losses, metric = self.step(orders[:, full_batches * batch:])
            loss_sum, metric_sum = loss_sum + losses, metric_sum + metric
        return loss_sum, metric_sum

    def _evaluate(self) -> tuple[Any, Any]:
        """Each arm's validation loss and metric (`evaluate`, one graph call)."""
        import tensorflow as tf

        if self.keras_terms:
            out = self.keras_losses(self.forward(self.x_val, False), self.y_val, None, self.val_metrics)
            return out, tf.zeros([self.k])
        losses, metric = self.losses(self.forward(self.x_val, False), self.y_val)
        return tf.reduce_mean(losses, axis=1), tf.reduce_mean(metric, axis=1)

    def row(self, a: int, loss_sum: Any, metric_sum: Any, val_loss: Any, val_metric: Any) -> dict[str, float]:
        """Arm a's history row for the epoch, under the names its run's Keras logs give."""
        n, name = self.n, self.metric_name
        if self.keras_terms:
            return {"loss": float(loss_sum[a] / n), **{m.name: float(m.result()) for m in self.train_metrics[a]},
                    "val_loss": float(val_loss[a]),
                    **{f"val_{m.name}": float(m.result()) for m in self.val_metrics[a]}}
        return {name: float(metric_sum[a] / n), "loss": float(loss_sum[a] / n), f"val_{name}": float(val_metric[a]),
                "val_loss": float(val_loss[a])}

    def end_epoch(self, epoch: int, a: int, row: dict[str, float]) -> None:
        """Arm a's epoch end, as its run's callbacks see it: its history row; a NaN freezes it (its run fails
        with that epoch); its plateau, then its early stopping, decide on its own metrics."""
        self.histories[a].append(row)
        if not all(math.isfinite(v) for v in row.values()):
            self.alive[a].assign(0.0)  # the others go on
            return
        if self.plateaus[a] is not None:  # before early stopping, as in a run's callbacks
            self.plateaus[a].on_epoch_end(epoch, dict(row))
        stopper = self.stoppers[a]
        if stopper is not None:
            stopper.on_epoch_end(epoch, dict(row))
            if stopper.model.stop_training:
                self.alive[a].assign(0.0)
                keep_best = stopper.restore_best_weights and stopper.best_weights is not None
                self.final[a] = stopper.best_weights if keep_best else stopper.model.get_weights()

    def fit(self, first_epoch: int, on_epoch: Callable[[int], None] | None, checkpoint: Path | None,
            stop: Callable[[], int | None] | None) -> list[Arm]:
        """The epochs from `first_epoch` on, each arm's end of epoch, the checkpoint, the stop signal."""
        import numpy as np
        import tensorflow as tf

        from modelforge.data.batches import epoch_order

        started = time.perf_counter()
        for epoch in range(first_epoch, self.trainer.epochs):
            orders = np.stack([epoch_order(self.n, s.run.seed, epoch, self.trainer.shuffle) for s in self.sessions])
            self.arm_steps += self.alive.numpy() * self.per_epoch
            for metric in [m for arm in self.train_metrics + self.val_metrics for m in arm]:
                metric.reset_state()
            loss_sum, metric_sum = (t.numpy().astype(np.float64) for t in self.train_epoch(tf.constant(orders)))
            val_loss, val_metric = (t.numpy() for t in self.evaluate())
            living = self.alive.numpy()
            for a in range(self.k):
                if living[a]:
                    self.end_epoch(epoch, a, self.row(a, loss_sum, metric_sum, val_loss, val_metric))
            if checkpoint is not None:
                save(self, checkpoint, epoch + 1)
            if on_epoch is not None:
                on_epoch(epoch + 1)
            signum = stop() if stop is not None else None
            if signum is not None and epoch + 1 < self.trainer.epochs:
                raise GroupStopped(signum, epoch + 1)
        return self.arms(time.perf_counter() - started)

    def arms(self, fit_s: float) -> list[Arm]:
        """Each arm's outcome; Keras' EarlyStopping restores the best weights when training ends, stopped early
        or not."""
        found = []
        for a, stopper in enumerate(self.stoppers):
            restored = stopper is not None and stopper.restore_best_weights and stopper.best_weights is not None
            weights = self.final.get(a) or (list(stopper.best_weights) if restored else self.arm_weights(a)())
            fused = {"size": self.k, "arm": a, "fit_s": round(fit_s, 4)}
            found.append(Arm(weights, self.histories[a], fused, int(self.arm_steps[a]),
                             self.optimizer.keras_slots(a)))
        return found


# The group checkpoint: every stacked variable and slot, the step counts, which arms live, each arm's history,
# early-stopping and plateau state. Batch order is a function of (seed, epoch), so a sweep killed while the
# group trains, once resumed, continues all its unfinished arms as the uninterrupted run would.
_SLOTS = (("m", "slots"), ("v", "second"), ("a", "third"))


def save(group: GroupTrainer, checkpoint: Path, epochs_done: int) -> None:
    """Writes the group's checkpoint after an epoch (two generations, atomically: `write_arrays`)."""
    optimizer = group.optimizer
    arrays = {f"var_{i}": v.numpy() for i, v in enumerate(group.every)}
    for prefix, attribute in _SLOTS:
        arrays.update({f"{prefix}_{i}": v.numpy() for i, v in enumerate(getattr(optimizer, attribute))})
    arrays["rates"] = optimizer.rates.numpy()
    best_counts = []
    for a, stopper in enumerate(group.stoppers):
        best = list(getattr(stopper, "best_weights", None) or [])
        best_counts.append(len(best))
        arrays.update({f"best_{a}_{j}": w for j, w in enumerate(best)})
    for a, weights in group.final.items():
        arrays.update({f"final_{a}_{j}": w for j, w in enumerate(weights)})
    write_arrays(RunFolder(checkpoint.parent), checkpoint.name, arrays, {
        "epochs_done": epochs_done, "steps": float(optimizer.steps.numpy()), "alive": group.alive.numpy().tolist(),
        "arm_steps": group.arm_steps.tolist(), "histories": group.histories, "final": list(group.final),
        "best_counts": best_counts,
        "stopping": [stopping_state(s) if s is not None else {} for s in group.stoppers],
        "plateau": [stopping_state(p, PLATEAU_STATE) if p is not None else {} for p in group.plateaus]},
        belongs=group.belongs)


def restore(group: GroupTrainer, checkpoint: Path) -> int:
    """Restores the group from its newest readable checkpoint generation; returns the epochs done (0: none).

    Raises:
        ConfigError: the checkpoint was written in an older layout.
    """
    import numpy as np

    saved = read_arrays(checkpoint, group.belongs)
    if saved is None:
        return 0
    arrays, state = saved
    if state.get("format") != FORMAT:
        raise ConfigError(f"{checkpoint} was written by an older modelforge, in a layout this one does not read; the "
                          f"sweep in {checkpoint.parent.parent} cannot be resumed: run it again into a new "
                          "hydra.sweep.dir")
    optimizer = group.optimizer
    for i, variable in enumerate(group.every):
        variable.assign(arrays[f"var_{i}"])
    for prefix, attribute in _SLOTS:
        for i, variable in enumerate(getattr(optimizer, attribute)):
            variable.assign(arrays[f"{prefix}_{i}"])
    optimizer.steps.assign(float(state["steps"]))
    optimizer.rates.assign(arrays["rates"])
    group.alive.assign(np.asarray(state["alive"], dtype=np.float32))
    group.arm_steps = np.asarray(state["arm_steps"], dtype=np.float64)
    group.histories = state["histories"]
    for a, stopper in enumerate(group.stoppers):
        if stopper is not None:
            for key, value in state["stopping"][a].items():
                setattr(stopper, key, value)
            count = int(state["best_counts"][a])
            stopper.best_weights = [arrays[f"best_{a}_{j}"] for j in range(count)] if count else None
    for a in state["final"]:
        group.final[int(a)] = [arrays[f"final_{a}_{j}"] for j in range(len(group.first.model.weights))]
    for plateau, counters in zip(group.plateaus, state["plateau"], strict=True):
        for key, value in counters.items():
            setattr(plateau, key, value)
    return int(state["epochs_done"])
