"""Conventions that more than one layer relies on, each defined once: names of layers, run statuses."""

from __future__ import annotations

from enum import StrEnum

# The output layer every model ends with (softmax over the classes, or linear for regression).
HEAD = "head"
# The input layer's name in every built model.
INPUTS = "inputs"
# The Normalization layer data.standardize puts first.
STANDARDIZE = "standardize"


def activation_layer_name(layer: str, activation: str) -> str:
    """The separate Keras layer that applies a parametric activation (leaky_relu, prelu, elu) after `layer`.

    Example:
        >>> activation_layer_name("block1_dense", "leaky_relu")
        'block1_dense_leaky_relu'
    """
    return f"{layer}_{activation}"


class Status(StrEnum):
    """A run's state as `metrics.json` records it.

    Example:
        >>> Status("completed") is Status.COMPLETED, Status.COMPLETED.value
        (True, 'completed')
    """

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
