"""The loss and metrics a run compiles, as Keras objects, from the names `core.config.metrics` checks.

Class labels stay integers (Keras' sparse losses and metrics) unless the run needs one-hot rows: label
smoothing, the focal loss, and AUC, precision and recall take one-hot labels in Keras. Then the labels are
encoded in the input pipeline and every class metric is its categorical twin, so the saved model.keras
holds only Keras' own classes and loads without modelforge.
"""

from __future__ import annotations

from typing import Any

from modelforge.core.config.metrics import TOP_K
from modelforge.core.config.schema import Trainer

# What makes a classification run feed one-hot labels.
ONE_HOT_LOSSES = ("label_smoothing", "focal")
ONE_HOT_METRICS = ("auc", "precision", "recall")


def one_hot(trainer: Trainer, task: str) -> bool:
    """Whether the run's labels are fed as one-hot rows.

    Example:
        >>> from modelforge.core.config.schema import RunConfig
        >>> one_hot(RunConfig.from_mapping(composed).trainer, "classification")
        False
    """
    names = trainer.metrics or ()
    return task == "classification" and (trainer.loss.name in ONE_HOT_LOSSES
                                         or any(n in ONE_HOT_METRICS for n in names))


def loss(trainer: Trainer, task: str) -> Any:
    """The Keras loss `trainer.loss` names."""
    import keras

    name, params = trainer.loss.name, dict(trainer.loss.params)
    if task == "classification":
        if name == "focal":
            return keras.losses.CategoricalFocalCrossentropy(gamma=params["gamma"])
        if one_hot(trainer, task):
            return keras.losses.CategoricalCrossentropy(label_smoothing=params.get("label_smoothing", 0.0))
        return keras.losses.SparseCategoricalCrossentropy()
    return {
        "mse": lambda: keras.losses.MeanSquaredError(),
        "mae": lambda: keras.losses.MeanAbsoluteError(),
        "huber": lambda: keras.losses.Huber(delta=params.get("delta", 1.0)),
        "log_cosh": lambda: keras.losses.LogCosh(),
    }[name]()


def metrics(trainer: Trainer, task: str) -> list[Any]:
    """The Keras metrics `trainer.metrics` names, each named as its history column."""
    import keras

    m = keras.metrics
    dense = one_hot(trainer, task)
    made = {
        "accuracy": lambda: (m.CategoricalAccuracy if dense else m.SparseCategoricalAccuracy)(name="accuracy"),
        "top_k_accuracy": lambda: (m.TopKCategoricalAccuracy if dense else m.SparseTopKCategoricalAccuracy)(
            k=TOP_K, name="top_k_accuracy"),
        "auc": lambda: m.AUC(name="auc"),
        "precision": lambda: m.Precision(name="precision"),
        "recall": lambda: m.Recall(name="recall"),
        "mae": lambda: m.MeanAbsoluteError(name="mae"),
        "mse": lambda: m.MeanSquaredError(name="mse"),
        "rmse": lambda: m.RootMeanSquaredError(name="rmse"),
    }
    return [made[name]() for name in trainer.metrics or ()]
