"""The metrics a run reports, and which way each one is better: one home for both.

Keras names its history keys after the compiled loss and metrics, with `val_` before the validation ones.
The compile step (`modelforge.run.fit`), the config check of `trainer.objective` and
`trainer.early_stopping.monitor`, the summaries and early stopping's mode all read these tables.
"""

from __future__ import annotations

from modelforge.errors import ConfigError, closest

TASKS = ("classification", "regression")
# Per task: the loss Keras minimizes, and the metrics compiled beside it.
LOSSES = {"classification": "sparse_categorical_crossentropy", "regression": "mse"}
TASK_METRICS: dict[str, tuple[str, ...]] = {"classification": ("accuracy",), "regression": ("mae",)}
# What `trainer.objective=auto` means for each task.
DEFAULT_OBJECTIVE = {"classification": "val_accuracy", "regression": "val_loss"}


def reported(task: str) -> tuple[str, ...]:
    """Every history key a run of `task` reports, training metrics first.

    Example:
        >>> reported("classification")
        ('loss', 'accuracy', 'val_loss', 'val_accuracy')
    """
    names = ("loss", *TASK_METRICS[task])
    return (*names, *(f"val_{n}" for n in names))


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (losses and errors) or a larger one (accuracies).

    Example:
        >>> lower_is_better("val_loss"), lower_is_better("val_accuracy")
        (True, False)
    """
    return "loss" in metric or metric.endswith(("mae", "mse", "error"))


def mode(metric: str) -> str:
    """Keras' `mode` for `metric`: `min` for losses and errors, `max` for the rest.

    Example:
        >>> mode("val_accuracy")
        'max'
    """
    return "min" if lower_is_better(metric) else "max"


def objective_for(objective: str, task: str) -> str:
    """The metric `trainer.objective` names (`auto`: the task's default).

    Example:
        >>> objective_for("auto", "regression")
        'val_loss'
    """
    return DEFAULT_OBJECTIVE[task] if objective == "auto" else objective


def sweeper_direction(metric: str) -> str:
    """The direction a sweeper (Optuna) optimizes `metric` in.

    Example:
        >>> sweeper_direction("val_accuracy"), sweeper_direction("val_loss")
        ('maximize', 'minimize')
    """
    return "minimize" if lower_is_better(metric) else "maximize"


def check_metric(name: str, task: str, key: str) -> str:
    """Returns `name` if a run of `task` reports it, else raises a `ConfigError` with the nearest name.

    Example:
        >>> check_metric("val_acc", "classification", "trainer.objective")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: trainer.objective='val_acc' is not a metric ... (did you mean 'val_accuracy'?)...
    """
    valid = reported(task)
    if name not in valid:
        near = closest(name, valid)
        raise ConfigError(f"{key}={name!r} is not a metric a {task} run reports"
                          + (f" (did you mean {near!r}?)" if near else "") + f"; it reports {', '.join(valid)}")
    return name
