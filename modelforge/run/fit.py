"""Compile and fit: the optimizer, the task's loss and metrics, and modelforge's callbacks."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from modelforge.core.config import Optimizer, RunConfig, TensorBoardLogger
from modelforge.core.metrics import LOSSES, TASK_METRICS
from modelforge.core.registry import RENAMED_ARGUMENTS, get_optimizer_class
from modelforge.errors import ConfigError, closest
from modelforge.run.folder import RunFolder


def make_optimizer(config: Optimizer) -> Any:
    """The Keras optimizer; an argument its class does not take is refused with the nearest one it does.

    Keras' own constructor signature is the list of valid keys.
    """
    import keras

    cls = getattr(keras.optimizers, get_optimizer_class(config.name))
    valid = sorted(set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "name"})
    for key in config.args:
        if key not in valid:
            near = RENAMED_ARGUMENTS.get(key) or closest(key, valid)
            raise ConfigError(f"optimizer={config.name} ({cls.__name__}) takes no argument {key!r}"
                              + (f" (did you mean {near!r}?)" if near else "") + f"; it takes {', '.join(valid)}")
    try:
        return cls(**config.args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer={config.name} rejects {dict(config.args)}: {err}") from None


def compile_model(model: Any, optimizer: Any, task: str) -> None:
    """Compiles with the optimizer and the loss and metrics the task calls for (see `core.metrics`)."""
    model.compile(optimizer=optimizer, loss=LOSSES[task], metrics=list(TASK_METRICS[task]))


def _history_writer(folder: RunFolder) -> Any:
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        """Rewrites history.csv after every epoch, so an interrupted run keeps what it learned."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict[str, Any]] = []

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
            folder.write_csv("history.csv", self.rows)

    return HistoryWriter()


def make_callbacks(run: RunConfig, folder: RunFolder, tracker: Any = None) -> list[Any]:
    """History writer, NaN guard, and the optional early stopping, TensorBoard and MLflow callbacks."""
    import keras

    callbacks = [_history_writer(folder), keras.callbacks.TerminateOnNaN()]
    if tracker is not None:
        callbacks.append(tracker.callback())
    stopping = run.trainer.early_stopping
    if stopping.enabled:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=stopping.monitor, mode=stopping.mode, patience=stopping.patience,
            min_delta=stopping.min_delta, restore_best_weights=stopping.restore_best_weights,
        ))
    if isinstance(run.logger, TensorBoardLogger):
        from modelforge.run.tracking import write_tensorboard_hparams

        log_dir = folder.path / run.logger.log_dir
        write_tensorboard_hparams(log_dir, run, folder.path.name)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=run.logger.histogram_freq))
    return callbacks


def fit_model(model: Any, dataset: Any, run: RunConfig, folder: RunFolder, tracker: Any = None) -> dict[str, list]:
    """Fits with the trainer settings and modelforge's callbacks; returns Keras' history dict."""
    from modelforge.data.batches import train_batches

    trainer = run.trainer
    batches = train_batches(dataset.x_train, dataset.y_train, trainer.batch_size, run.seed, trainer.shuffle)
    return model.fit(  # type: ignore[no-any-return]
        batches, shuffle=False, validation_data=(dataset.x_val, dataset.y_val),
        validation_batch_size=trainer.batch_size, epochs=trainer.epochs, verbose=trainer.verbose,
        callbacks=make_callbacks(run, folder, tracker),
    ).history
