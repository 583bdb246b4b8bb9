"""The fused optimizer: Adam, AdamW and SGD over stacked variables, each arm with its own scalars and slots.

Written out as Keras 3 writes each update per variable, in Keras' order and arithmetic (clip, decay the
weights, then the step; `1 - beta` taken in Python's doubles), so an arm's weights follow its run's. The idea of
per-arm hyperparameters in one fused update is HFTA's fused optimizers (MLSys 2021).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Arguments that must be the same in every arm (and at these values) for the update to be written out here.
SHARED_DEFAULTS: dict[str, dict[str, Any]] = {"adam": {"amsgrad": False}, "adamw": {"amsgrad": False},
                                              "sgd": {"nesterov": False}, "rmsprop": {}}
# Arguments that may take any value, the same in every arm (a group's configs are equal but for
# core.registry.ARM_SCALARS).
SHARED_ANY = {"rmsprop": ("centered",)}
# Gradient clipping: the same setting in every arm of a group, applied to each arm's own gradients (a global
# norm is each arm's, never one across arms).
CLIPPING = ("clipnorm", "global_clipnorm", "clipvalue")


def per_arm(values: Sequence[float], rank: int) -> Any:
    """A per-arm scalar shaped to broadcast over a stacked variable of `rank` dimensions."""
    import tensorflow as tf

    return tf.reshape(tf.constant(values, tf.float32), [len(values)] + [1] * (rank - 1))


class FusedOptimizer:
    """One optimizer for K arms' stacked variables (leading axis: the arm).

    Attributes:
        slots: the first slot per variable (Adam's momentums, SGD's momentums).
        second: Adam's velocities (empty for SGD).
        steps: the updates done (Keras' `iterations`), the same for every live arm.
        rates: each arm's constant learning rate; ReduceLROnPlateau lowers an arm's entry between epochs.
        alive: 1 for an arm that trains, 0 for a frozen one (its weights and slots stay as they are).
    """

    def __init__(self, name: str, variables: Sequence[Any], arm_args: Sequence[Mapping[str, Any]],
                 clipping: Mapping[str, float], schedules: Sequence[Any]) -> None:
        """`schedules`: each arm's learning rate as Keras is given it (a number or a schedule object)."""
        import tensorflow as tf

        self.name, self.variables, self.args, self.clipping = name, list(variables), list(arm_args), clipping
        self.k = len(arm_args)
        self.ranks = [len(v.shape) for v in variables]
        self.slots = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.second = [tf.Variable(tf.zeros_like(v)) for v in variables] if name != "sgd" else []
        # RMSprop, centered: the average gradients (the same setting in every arm of a group).
        self.centered = bool(arm_args[0].get("centered", False)) if name == "rmsprop" else False
        self.third = [tf.Variable(tf.zeros_like(v)) for v in variables] if self.centered else []
        self.steps = tf.Variable(0.0)
        self.alive = tf.Variable(tf.ones([self.k]))
        self.rates = tf.Variable([float(a["learning_rate"]) for a in arm_args], dtype=tf.float32)
        self.schedules = list(schedules)
        self.scheduled = any(callable(r) for r in schedules)

    def keras_slots(self, arm: int) -> dict[str, list[Any]]:
        """Arm `arm`'s slots by Keras' slot names (`momentum`, `velocity`), one per trainable variable, for its
        saved model's optimizer (matched by path in `handoff.restore_optimizer`). Keras' SGD makes momentum
        slots only when its momentum is not 0."""
        import numpy as np

        if self.name == "sgd":
            found = {"momentum": self.slots} if self.args[arm]["momentum"] else {}
        elif self.name == "rmsprop":  # slots: the momentums; second: the velocities; third: average gradients
            found = {"velocity": self.second, **({"momentum": self.slots} if self.args[arm]["momentum"] else {}),
                     **({"average_gradient": self.third} if self.centered else {})}
        else:
            found = {"momentum": self.slots, "velocity": self.second}
        return {key: [np.asarray(v[arm].numpy()) for v in values] for key, values in found.items()}

    def _current_rates(self) -> list[Any]:
        """Each variable's per-arm learning rate for this step: the rate, or the arm's schedule called on the
        step count before the update (as Keras' optimizer calls it), shaped to broadcast over the variable."""
        import tensorflow as tf

        if not self.scheduled:
            now = self.rates
        else:
            step = tf.cast(self.steps, tf.int64)  # the optimizer's iterations, before this update
            now = tf.stack([tf.cast(r(step), tf.float32) if callable(r) else tf.constant(float(r), tf.float32)
                            for r in self.schedules])
        return [tf.reshape(now, [self.k] + [1] * (rank - 1)) for rank in self.ranks]

    def _clip(self, grads: Sequence[Any]) -> list[Any]:
        """Keras' clipping, each arm apart: its own norm per variable, or its own global norm."""
        import tensorflow as tf

        clipping = self.clipping
        if "clipvalue" in clipping:
            return [tf.clip_by_value(g, -clipping["clipvalue"], clipping["clipvalue"]) for g in grads]
        if "clipnorm" in clipping:
            limit = clipping["clipnorm"]
            return [g * limit / tf.maximum(tf.sqrt(tf.reduce_sum(g * g, axis=list(range(1, len(g.shape))),
                                                                 keepdims=True)), limit) for g in grads]
        if "global_clipnorm" in clipping:
            limit = clipping["global_clipnorm"]
            norms = tf.sqrt(tf.add_n([tf.reduce_sum(g * g, axis=list(range(1, len(g.shape)))) for g in grads]))
            scale = limit / tf.maximum(norms, limit)  # (arms,)
            return [g * tf.reshape(scale, [-1] + [1] * (len(g.shape) - 1)) for g in grads]
        return list(grads)

    def update(self, grads: Sequence[Any], squares: Sequence[Any] | None = None) -> None:
        """One step for every live arm, from the gradients of the summed loss (so each arm's own).

        `squares[i]`, where given, replaces the square of gradient i in Adam's and RMSprop's second moments:
        Keras gets an embedding's gradient as IndexedSlices and squares it per occurrence before summing the
        rows, so the fused model passes the per-occurrence sum of squares for its embedding tables (for
        RMSprop each occurrence already times `1 - rho`, as Keras multiplies before it sums:
        `occurrence_scale`).
        """
        import tensorflow as tf

        grads = self._clip(grads)  # Keras' order: clip, decay the weights, then the step
        rates = self._current_rates()
        self.steps.assign_add(1.0)
        steps, args = self.steps, self.args
        decaying = any(a["weight_decay"] for a in args)
        for i, (var, grad) in enumerate(zip(self.variables, grads, strict=True)):
            rank, slot = self.ranks[i], self.slots[i]
            square = squares[i] if squares is not None and squares[i] is not None else None
            scaled = square is not None and self.name == "rmsprop"  # already times 1 - rho, per occurrence
            # A frozen arm's weights and slots stay as they are (tf.where: NaN times 0 would still be NaN).
            keep = tf.broadcast_to(tf.reshape(self.alive > 0, [-1] + [1] * (rank - 1)), var.shape)
            grad = tf.where(keep, grad, 0.0)
            square = tf.square(grad) if square is None else tf.where(keep, square, 0.0)
            if decaying:
                decay = per_arm([a["weight_decay"] for a in args], rank)
                var.assign(tf.where(keep, var - var * decay * rates[i], var))
            if self.name in ("adam", "adamw"):
                second = self.second[i]
                b1, b2 = per_arm([a["beta_1"] for a in args], rank), per_arm([a["beta_2"] for a in args], rank)
                eps = per_arm([a["epsilon"] for a in args], rank)
                # 1 - beta as Keras computes it, in Python's doubles before the cast: float32(1 - 0.9) is not
                # 1 - float32(0.9), and that one rounding, measured, moved a ReLU conv arm off its run's path.
                rest_1 = per_arm([1 - a["beta_1"] for a in args], rank)
                rest_2 = per_arm([1 - a["beta_2"] for a in args], rank)
                rate = rates[i] * tf.sqrt(1 - b2**steps) / (1 - b1**steps)
                slot.assign(tf.where(keep, slot + (grad - slot) * rest_1, slot))
                second.assign(tf.where(keep, second + (square - second) * rest_2, second))
                var.assign(tf.where(keep, var - rate * slot / (tf.sqrt(second) + eps), var))
            elif self.name == "rmsprop":
                self._rmsprop(i, var, grad, square, rates[i], keep, scaled)
            else:
                momentum = per_arm([a["momentum"] for a in args], rank)
                slot.assign(tf.where(keep, momentum * slot - rates[i] * grad, slot))
                var.assign(tf.where(keep, var + slot, var))

    def occurrence_scale(self) -> list[float] | None:
        """What Keras multiplies each occurrence's squared embedding gradient by before summing the rows, per
        arm: RMSprop's `1 - rho` (None: nothing, as in Adam)."""
        return [1 - a["rho"] for a in self.args] if self.name == "rmsprop" else None

    def _rmsprop(self, i: int, var: Any, grad: Any, square: Any, rate: Any, keep: Any,
                 scaled: bool = False) -> None:
        """Keras' RMSprop step for variable i, each arm with its own rho, momentum and epsilon. With momentum 0
        the momentum slot holds the increment itself, which is Keras' update without momentum, exactly."""
        import tensorflow as tf

        rank, args = self.ranks[i], self.args
        rho, eps = per_arm([a["rho"] for a in args], rank), per_arm([a["epsilon"] for a in args], rank)
        rest = per_arm([1 - a["rho"] for a in args], rank)  # in Python's doubles, as Keras computes it
        velocity, momentum_slot = self.second[i], self.slots[i]
        velocity.assign(tf.where(keep, rho * velocity + (square if scaled else rest * square), velocity))
        if self.centered:
            average = self.third[i]
            average.assign(tf.where(keep, rho * average + rest * grad, average))
            denominator = velocity - tf.square(average) + eps
        else:
            denominator = velocity + eps
        increment = rate * grad / tf.sqrt(denominator)
        momentum = per_arm([a["momentum"] for a in args], rank)
        momentum_slot.assign(tf.where(keep, momentum * momentum_slot + increment, momentum_slot))
        var.assign(tf.where(keep, var - momentum_slot, var))
