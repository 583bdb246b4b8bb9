"""modelforge's own Keras optimizers: Keras' Adam, AdamW, RMSprop and SGD with a learning rate per variable.

Keras optimizers take one learning rate for all variables. muP (Yang et al. 2022, Tensor Programs V) gives each
weight its own: the optimizer's rate times the weight's multiplier. A forward multiplier on the layer's output is not
the same thing (Adam's epsilon, AdamW's decay and clipping all see the difference), so each variable's update here
is Keras' own `update_step` with the rate times its multiplier, and AdamW's decoupled decay uses that rate too, as a
per-parameter-group rate does in PyTorch's optimizers (microsoft/mup's MuAdamW). Multipliers are keyed by the
variable's path (`block2_dense/kernel`, the plan's weight path); a variable without one keeps the rate.

Registered for serialization under the package `modelforge`: a model.keras compiled with one loads once modelforge
is imported, and in plain Keras with `keras.saving.load_model(path, compile=False)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import ops


class _PerVariableRates:
    """The mixin: each variable's update at the optimizer's learning rate times the variable's multiplier."""

    def __init__(self, *args: Any, multipliers: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.multipliers = {str(k): float(v) for k, v in (multipliers or {}).items()}
        self._factors: list[float] = []

    def build(self, variables: list[Any]) -> None:
        super().build(variables)  # type: ignore[misc]
        self._factors = [self.multipliers.get(v.path, 1.0) for v in variables]

    def _factor(self, variable: Any) -> float:
        return self._factors[self._get_variable_index(variable)]  # type: ignore[attr-defined, no-any-return]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        factor = self._factor(variable)
        rate = learning_rate if factor == 1.0 else ops.multiply(learning_rate, factor)
        super().update_step(gradient, variable, rate)  # type: ignore[misc]

    def _apply_weight_decay(self, variables: list[Any]) -> None:
        """Decoupled weight decay at each variable's own rate: `w - w * decay * rate * multiplier`."""
        if self.weight_decay is None:  # type: ignore[attr-defined]
            return
        for variable in variables:
            if self._use_weight_decay(variable):  # type: ignore[attr-defined]
                rate = ops.multiply(ops.cast(self.learning_rate, variable.dtype),  # type: ignore[attr-defined]
                                    self._factor(variable))
                decay = ops.cast(self.weight_decay, variable.dtype)  # type: ignore[attr-defined]
                variable.assign(variable - variable * decay * rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "multipliers": dict(self.multipliers)}  # type: ignore[misc]


@keras.saving.register_keras_serializable(package="modelforge")
class Adam(_PerVariableRates, keras.optimizers.Adam):
    """Keras' Adam with a learning-rate multiplier per variable (`multipliers`: variable path -> factor).

    Example:
        >>> import numpy as np
        >>> w = keras.Variable(np.ones(2, "float32"), name="w")
        >>> opt = Adam(learning_rate=0.1, multipliers={w.path: 0.5})
        >>> opt.apply([np.ones(2, "float32")], [w])
        >>> [round(float(x), 4) for x in w.numpy()]  # Adam's first step is the rate itself: 0.1 x 0.5
        [0.95, 0.95]
    """


@keras.saving.register_keras_serializable(package="modelforge")
class AdamW(_PerVariableRates, keras.optimizers.AdamW):
    """Keras' AdamW with a learning-rate multiplier per variable; its decoupled decay uses each variable's rate."""


@keras.saving.register_keras_serializable(package="modelforge")
class RMSprop(_PerVariableRates, keras.optimizers.RMSprop):
    """Keras' RMSprop with a learning-rate multiplier per variable."""


@keras.saving.register_keras_serializable(package="modelforge")
class SGD(_PerVariableRates, keras.optimizers.SGD):
    """Keras' SGD with a learning-rate multiplier per variable."""


# Keras' optimizer class name -> the same optimizer with a learning rate per variable.
PER_VARIABLE: dict[str, type[keras.optimizers.Optimizer]] = {
    "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "SGD": SGD}
