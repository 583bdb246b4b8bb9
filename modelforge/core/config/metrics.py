"""The metrics and losses a run can use, and which way each metric is better: one home for all of them.

Keras names its history keys after the compiled loss and metrics, with `val_` before the validation ones.
The config check (`trainer.metrics`, `trainer.loss`, `trainer.objective`, the monitors), the compile step
(`modelforge.run.fit`, which maps each name to its Keras object), the summaries and early stopping's mode all
read these tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelforge.errors import ConfigError, closest, invalid

TASKS = ("classification", "regression")
# Per task: the metrics `trainer.metrics` may name, each with True when lower is better.
METRICS: dict[str, dict[str, bool]] = {
    "classification": {"accuracy": False, "top_k_accuracy": False, "auc": False, "precision": False,
                       "recall": False},
    "regression": {"mae": True, "mse": True, "rmse": True},
}
# What `trainer.metrics=null` compiles.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {"classification": ("accuracy",), "regression": ("mae",)}
# top_k_accuracy: whether the true class is among the k most likely.
TOP_K = 5
# Per task: the losses `trainer.loss` may name, with their parameters' defaults. The first is `auto`'s.
LOSSES: dict[str, dict[str, dict[str, float]]] = {
    "classification": {"crossentropy": {}, "label_smoothing": {"label_smoothing": 0.1}, "focal": {"gamma": 2.0}},
    "regression": {"mse": {}, "mae": {}, "huber": {"delta": 1.0}, "log_cosh": {}},
}
# What `trainer.objective=auto` means for each task.
DEFAULT_OBJECTIVE = {"classification": "val_accuracy", "regression": "val_loss"}


def check_metrics(names: Sequence[str] | None, task: str) -> tuple[str, ...]:
    """The metrics `trainer.metrics` names for a run of `task` (None: the task's default), each checked.

    Example:
        >>> check_metrics(None, "regression")
        ('mae',)
        >>> check_metrics(["acuracy"], "classification")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: unknown classification metric in trainer.metrics 'acuracy' (did you mean...
    """
    if names is None:
        return DEFAULT_METRICS[task]
    valid = METRICS[task]
    for name in names:
        if name not in valid:
            other = next((t for t in TASKS if name in METRICS[t]), None)
            raise invalid(f"{task} metric in trainer.metrics", name, valid,
                          hint=f"{name!r} is a {other} metric" if other else "")
    if len(set(names)) != len(names):
        raise ConfigError(f"trainer.metrics={list(names)!r} names a metric twice; name each once")
    return tuple(names)


def check_loss(loss: Any, task: str) -> tuple[str, dict[str, float]]:
    """`trainer.loss` (`auto`, a name, or a mapping with `name` and parameters) as a name and its parameters.

    Example:
        >>> check_loss("auto", "classification")
        ('crossentropy', {})
        >>> check_loss({"name": "huber", "delta": 2}, "regression")
        ('huber', {'delta': 2.0})
    """
    given = dict(loss) if isinstance(loss, Mapping) else {"name": loss}
    name = given.pop("name", None)
    valid = LOSSES[task]
    name = next(iter(valid)) if name == "auto" else name
    if name not in valid:
        raise invalid(f"{task} loss in trainer.loss", name, ["auto", *valid])
    params = dict(valid[name])
    for key, value in given.items():
        if key not in params:
            near = closest(key, list(params))
            raise ConfigError(f"trainer.loss.{key}: the {name} loss takes no parameter {key!r}"
                              + (f" (did you mean {near!r}?)" if near else "")
                              + (f"; it takes {', '.join(params)}" if params else "; it takes none"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"trainer.loss.{key}={value!r} must be a number >= 0, e.g. {params[key]}")
        params[key] = float(value)
    if name == "label_smoothing" and not params["label_smoothing"] < 1:
        raise ConfigError(f"trainer.loss.label_smoothing={params['label_smoothing']} must be below 1, e.g. 0.1")
    return name, params


def reported(task: str, names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Every history key a run of `task` compiled with metrics `names` reports, training metrics first.

    Example:
        >>> reported("classification")
        ('loss', 'accuracy', 'val_loss', 'val_accuracy')
        >>> reported("regression", ["mae", "rmse"])
        ('loss', 'mae', 'rmse', 'val_loss', 'val_mae', 'val_rmse')
    """
    keys = ("loss", *(DEFAULT_METRICS[task] if names is None else names))
    return (*keys, *(f"val_{n}" for n in keys))


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (losses and errors) or a larger one (accuracies).

    Example:
        >>> lower_is_better("val_loss"), lower_is_better("val_accuracy"), lower_is_better("val_rmse")
        (True, False, True)
    """
    base = metric.removeprefix("val_")
    for table in METRICS.values():
        if base in table:
            return table[base]
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


def check_metric(name: str, task: str, key: str, names: Sequence[str] | None = None) -> str:
    """Returns `name` if a run of `task` compiled with metrics `names` reports it, else raises a `ConfigError`.

    Example:
        >>> check_metric("val_acc", "classification", "trainer.objective")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: trainer.objective='val_acc' is not a metric ... (did you mean 'val_accuracy'?)...
    """
    valid = reported(task, names)
    if name not in valid:
        near = closest(name, valid)
        hint = ""
        if name.removeprefix("val_") in METRICS[task]:
            hint = f" (add {name.removeprefix('val_')} to trainer.metrics to report it)"
        elif near:
            hint = f" (did you mean {near!r}?)"
        raise ConfigError(f"{key}={name!r} is not a metric a {task} run reports{hint}; it reports {', '.join(valid)}")
    return name


def objective_text(objective: Mapping[str, Any], epochs_run: Any = None) -> str:
    """A run's objective as its result line gives it: the saved model's value, and its epoch when the saved
    model is not the last epoch's (metrics.json written before objectives carried an epoch shows no epoch).

    Example:
        >>> objective_text({"name": "val_accuracy", "value": 0.97213, "epoch": 7}, 9)
        'val_accuracy=0.9721 (epoch 7 of 9, restored)'
        >>> objective_text({"name": "val_loss", "value": 0.1, "epoch": 3}, 3)
        'val_loss=0.1000'
    """
    value = objective.get("value")
    text = f"{objective.get('name')}={value:.4f}" if isinstance(value, (int, float)) else f"{objective.get('name')}=?"
    epoch = objective.get("epoch")
    if epoch is not None and epochs_run is not None and epoch != epochs_run:
        text += f" (epoch {epoch} of {epochs_run}, restored)"
    return text
