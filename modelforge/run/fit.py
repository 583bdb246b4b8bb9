"""Compile and fit: the optimizer, the task's loss and metrics, and modelforge's callbacks.

The callbacks keep history.csv, stop on NaN, stop early, track, checkpoint every epoch, and end the fit at
the next batch once a stop signal (SIGTERM, Ctrl-C) has arrived.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelforge.core.config.schema import Optimizer, RunConfig, TensorBoardLogger
from modelforge.core.registry import RENAMED_ARGUMENTS, get_optimizer_class
from modelforge.errors import ConfigError, closest
from modelforge.run import checkpoint
from modelforge.run.checkpoint import Progress
from modelforge.run.folder import RunFolder


def learning_rate(config: Optimizer, steps_per_epoch: int, epochs: int) -> Any:
    """The learning rate Keras is given: a number, or a `keras.optimizers.schedules` object over the run's steps.

    Example:
        >>> from modelforge.core.config.schema import Schedule
        >>> learning_rate(Optimizer("sgd", {"learning_rate": 0.1}, Schedule("constant", {})), 10, 5)
        0.1
        >>> step = Schedule("step", {"decay_rate": 0.1, "decay_epochs": 10})  # its first step after the run's end
        >>> learning_rate(Optimizer("sgd", {"learning_rate": 0.1}, step), 10, 5)
        0.1
    """
    rate = config.args["learning_rate"]
    schedule, p = config.schedule.name, config.schedule.params
    if schedule == "constant":
        return rate
    import keras

    schedules = keras.optimizers.schedules
    total = steps_per_epoch * epochs
    if schedule == "cosine":
        return schedules.CosineDecay(rate, decay_steps=total, alpha=p["alpha"])
    if schedule == "warmup_cosine":
        warmup = min(int(p["warmup_epochs"]) * steps_per_epoch, total)
        return schedules.CosineDecay(0.0, decay_steps=max(total - warmup, 1), alpha=p["alpha"], warmup_target=rate,
                                     warmup_steps=warmup)
    if schedule == "exponential":
        return schedules.ExponentialDecay(rate, decay_steps=steps_per_epoch, decay_rate=p["decay_rate"])
    every = int(p["decay_epochs"]) * steps_per_epoch
    boundaries = list(range(every, total, every))
    if not boundaries:  # the first step comes after the run ends (Keras' PiecewiseConstantDecay needs one)
        return rate
    values = [rate * p["decay_rate"] ** k for k in range(len(boundaries) + 1)]
    return schedules.PiecewiseConstantDecay(boundaries, values)


def optimizer_class(config: Optimizer) -> Any:
    """The Keras optimizer class, once every configured argument is checked to be one it takes.

    Keras' own constructor signature is the list of valid keys; a wrong one is refused with the nearest.
    """
    import keras

    cls = getattr(keras.optimizers, get_optimizer_class(config.name))
    valid = sorted(set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "name"})
    for key in config.args:
        if key not in valid:
            near = RENAMED_ARGUMENTS.get(key) or closest(key, valid)
            raise ConfigError(f"optimizer={config.name} ({cls.__name__}) takes no argument {key!r}"
                              + (f" (did you mean {near!r}?)" if near else "") + f"; it takes {', '.join(valid)}")
    return cls


def make_optimizer(config: Optimizer, steps_per_epoch: int = 1, epochs: int = 1,
                   multipliers: Mapping[str, float] | None = None) -> Any:
    """The Keras optimizer with its learning-rate schedule over `epochs` of `steps_per_epoch` steps; given
    per-weight learning-rate `multipliers` (muP's, by weight path), modelforge's same optimizer with a rate per
    variable (`modelforge.optimizers`)."""
    cls = optimizer_class(config)
    args = {**config.args, "learning_rate": learning_rate(config, steps_per_epoch, epochs)}
    if multipliers:
        from modelforge.optimizers import PER_VARIABLE

        cls, args = PER_VARIABLE[cls.__name__], {**args, "multipliers": dict(multipliers)}
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer={config.name} rejects {dict(config.args)}: {err}") from None


def compile_model(model: Any, optimizer: Any, run: RunConfig) -> None:
    """Compiles with the optimizer and the loss and metrics `trainer.loss` and `trainer.metrics` name."""
    from modelforge.run import compiled

    model.compile(optimizer=optimizer, loss=compiled.loss(run.trainer, run.task),
                  metrics=compiled.metrics(run.trainer, run.task))
    # The optimizer's variables made now, as a resume makes them to restore them: made inside the first trace of
    # the train step instead, they make TensorFlow trace that step twice.
    model.optimizer.build(model.trainable_variables)


def balanced_class_weight(labels: Any, num_classes: int) -> dict[int, float]:
    """scikit-learn's `balanced` weights: n_samples / (n_classes * count of the class); absent classes weigh 1.

    Example:
        >>> import numpy as np
        >>> balanced_class_weight(np.array([0, 0, 0, 1]), 2)
        {0: 0.6666666666666666, 1: 2.0}
    """
    import numpy as np

    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes)
    return {c: float(len(labels) / (num_classes * n)) if n else 1.0 for c, n in enumerate(counts.tolist())}


class Interrupted(Exception):  # noqa: N818 (it is how the fit ends, not an error of the fit)
    """The fit ended at a batch boundary because a stop signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class StopSignal:
    """Set by the signal handler (which does nothing else); read by the fit at each batch's end."""

    signum: int | None = None


def early_stopping_args(run: RunConfig) -> dict[str, Any]:
    """Keras' EarlyStopping arguments from `trainer.early_stopping` (a run's callback, and each fused arm's)."""
    config = run.trainer.early_stopping
    return {"monitor": config.monitor, "mode": config.mode, "patience": config.patience,
            "min_delta": config.min_delta, "restore_best_weights": config.restore_best_weights}


def plateau_args(run: RunConfig) -> dict[str, Any]:
    """Keras' ReduceLROnPlateau arguments from `trainer.reduce_on_plateau` (a run's callback, and each fused
    arm's)."""
    config = run.trainer.reduce_on_plateau
    return {"monitor": config.monitor, "mode": config.mode, "factor": config.factor, "patience": config.patience,
            "min_delta": config.min_delta, "cooldown": config.cooldown, "min_lr": config.min_lr, "verbose": 0}


def _per_epoch(folder: RunFolder, progress: Progress, stop: StopSignal) -> list[Any]:
    """The stop between batches, the learning rate in each epoch's logs, history.csv after each epoch."""
    import keras

    class StopAtBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
            if stop.signum is not None:
                raise Interrupted(stop.signum)

    class HistoryWriter(keras.callbacks.Callback):
        """Rewrites history.csv after every epoch, so an interrupted run keeps what it learned."""

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            progress.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
            folder.write_csv("history.csv", progress.history)

    class LearningRate(keras.callbacks.Callback):
        """Adds the epoch's last learning rate to its logs (history.csv's `learning_rate` column)."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    return [StopAtBatch(), LearningRate(), HistoryWriter(), keras.callbacks.TerminateOnNaN()]


def _resumable(base: type, saved: Mapping[str, Any], best_weights: list[Any] | None = None) -> type:
    """`base` (Keras' EarlyStopping or ReduceLROnPlateau) starting from the counters (and best weights) a
    checkpoint holds; ReduceLROnPlateau's rate is restored with the optimizer's variables."""

    class Resumable(base):  # type: ignore[valid-type, misc]
        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            super().on_train_begin(logs)
            for key, value in saved.items():
                if value is not None:
                    setattr(self, key, value)
            if best_weights is not None:
                self.best_weights = best_weights

    Resumable.__name__ = Resumable.__qualname__ = f"Resumable{base.__name__}"
    return Resumable


def _tensorboard(run: RunConfig, folder: RunFolder) -> Any:
    import keras

    from modelforge.run.tracking import write_tensorboard_hparams

    assert isinstance(run.logger, TensorBoardLogger)
    # A run folder per job name, so TensorBoard's runs say which job they are.
    log_dir = folder.path / run.logger.log_dir / folder.job_name()
    write_tensorboard_hparams(log_dir, run, folder.path.name)
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=run.logger.histogram_freq)


def make_callbacks(run: RunConfig, folder: RunFolder, progress: Progress, best_weights: list[Any] | None,
                   stop: StopSignal, on_epoch: Callable[[Progress], None], tracker: Any = None,
                   checkpoints: bool = True) -> list[Any]:
    """modelforge's callbacks, in the order they must see each epoch's end (checkpoint last).

    Without `checkpoints`, no checkpoint is written (a fused arm's epochs played back: the run is trained, and
    a checkpoint of its final weights at an earlier epoch would resume wrongly).
    """
    import keras

    callbacks = _per_epoch(folder, progress, stop)
    if tracker is not None:
        callbacks.append(tracker.callback())
    early: Any = None
    if run.trainer.early_stopping.enabled:
        early = _resumable(keras.callbacks.EarlyStopping, dict(progress.stopping), best_weights)(
            **early_stopping_args(run))
        callbacks.append(early)
    if isinstance(run.logger, TensorBoardLogger):
        callbacks.append(_tensorboard(run, folder))
    plateau: Any = None
    if run.trainer.reduce_on_plateau.enabled:
        plateau = _resumable(keras.callbacks.ReduceLROnPlateau, dict(progress.plateau))(**plateau_args(run))
        # Before LearningRate and the history: the rate an epoch ends with is the one the callback set.
        callbacks.insert(1, plateau)

    class Checkpointer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            progress.epochs_done = epoch + 1
            progress.stopped = bool(self.model.stop_training)
            progress.stopping = checkpoint.stopping_state(early) if early is not None else {}
            progress.plateau = (checkpoint.stopping_state(plateau, checkpoint.PLATEAU_STATE) if plateau is not None
                                else {})
            if checkpoints:
                checkpoint.save(folder, self.model, progress, getattr(early, "best_weights", None))
            on_epoch(progress)

    callbacks.append(Checkpointer())
    return callbacks


def fit_model(model: Any, dataset: Any, run: RunConfig, callbacks: list[Any], progress: Progress,
              quiet: bool = False) -> None:
    """Fits from the epoch after the last one done (to the end, or not at all if early stopping ended it).

    `quiet` drops Keras' per-step bars (at `trainer.verbose=auto`) where jobs print one line per epoch.
    """
    from modelforge.data.batches import plain, steps_per_epoch, train_batches
    from modelforge.run.compiled import one_hot

    trainer = run.trainer
    end = progress.epochs_done if progress.stopped else trainer.epochs
    batches = train_batches(dataset.x_train, dataset.y_train, trainer.batch_size, run.seed, trainer.shuffle,
                            first_epoch=progress.epochs_done, epochs=end, decode=dataset.decode)
    validation = dataset.validation(trainer.batch_size)
    if one_hot(trainer, run.task):
        import numpy as np

        classes = dataset.info.num_outputs
        batches = batches.map(plain(lambda x, y: (x, _one_hot(y, classes))))
        if isinstance(validation, tuple):
            validation = (validation[0], np.eye(classes, dtype=np.float32)[validation[1]])
        else:
            validation = validation.map(plain(lambda x, y: (x, _one_hot(y, classes))))
    class_weight = None
    if trainer.class_weight == "balanced":
        class_weight = balanced_class_weight(dataset.y_train, dataset.info.num_outputs)
    model.fit(
        batches, shuffle=False, validation_data=validation,
        validation_batch_size=trainer.batch_size if isinstance(validation, tuple) else None,
        epochs=end, initial_epoch=progress.epochs_done,
        steps_per_epoch=steps_per_epoch(len(dataset.x_train), trainer.batch_size),
        verbose=0 if quiet and trainer.verbose == "auto" else trainer.verbose,
        callbacks=callbacks, class_weight=class_weight,
    )


def _one_hot(labels: Any, classes: int) -> Any:
    import tensorflow as tf

    return tf.one_hot(tf.reshape(tf.cast(labels, tf.int32), [-1]), classes)
