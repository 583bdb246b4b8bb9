"""The fused optimizer: one Keras optimizer's update over stacked variables, each arm with its own scalars and slots.

Each optimizer is one `Rule` class: the slots it keeps, by Keras' own slot names, the arguments every arm of a group
must share, and its step, written out as Keras 3 writes it per variable, in Keras' order and arithmetic (`1 - beta`
taken in Python's doubles), so an arm's weights follow its run's. What every rule shares (clipping, the learning
rate or its schedule, each variable's learning-rate multiplier, weight decay, frozen arms) is `FusedOptimizer`'s.
The arguments each arm may set are `core.registry.ARM_SCALARS`, which the key table also reads: a new fused optimizer
is a `Rule` subclass here and its line there. The idea of per-arm hyperparameters in one fused update is HFTA's
fused optimizers (MLSys 2021).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from modelforge.core.registry import ARM_SCALARS

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf
    from numpy.typing import NDArray

# Gradient clipping: the same setting in every arm of a group, applied to each arm's own gradients (a global
# norm is each arm's, never one across arms).
CLIPPING = ("clipnorm", "global_clipnorm", "clipvalue")
# An argument's value, as a config gives it.
Arg = float | bool | str | None
# A learning rate as Keras is given it: a number, or a schedule called on the step count.
Rate = float | Callable[["tf.Tensor"], "tf.Tensor"]


def per_arm(values: Sequence[float], rank: int) -> tf.Tensor:
    """A per-arm scalar shaped to broadcast over a stacked variable of `rank` dimensions."""
    import tensorflow as tf

    return tf.reshape(tf.constant(values, tf.float32), [len(values)] + [1] * (rank - 1))


class Rule:
    """One Keras optimizer's update over stacked variables (leading axis: the arm).

    A subclass names its Keras optimizer (`name`, as `optimizer=` says it), the slots it keeps (`slots`, Keras'
    slot names), the arguments every arm of a group must hold at these values (`shared`) or at any one value
    (`shared_any`), and writes `step`. Defining the subclass registers it in `RULES`.
    """

    name: ClassVar[str]
    slots: ClassVar[tuple[str, ...]]
    shared: ClassVar[dict[str, Arg]] = {}
    shared_any: ClassVar[tuple[str, ...]] = ()
    # Whether Keras takes an embedding's second moment per occurrence (from its IndexedSlices gradient).
    second_moments: ClassVar[bool] = False

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "name" in vars(cls):
            RULES[cls.name] = cls

    def __init__(self, arm_args: Sequence[Mapping[str, Arg]]) -> None:
        self.args = list(arm_args)

    def scalar(self, key: str, rank: int, rest: bool = False) -> tf.Tensor:
        """Every arm's `key` (or `1 - key`, computed in Python's doubles as Keras does, where `rest`), shaped for a
        variable of `rank` dimensions."""
        return per_arm([1 - float(a[key]) if rest else float(a[key]) for a in self.args], rank)  # type: ignore[arg-type]

    def kept(self, arm: Mapping[str, Arg]) -> tuple[str, ...]:
        """The slots Keras' optimizer makes for an arm's arguments (every one of `slots` unless a subclass says)."""
        return self.slots

    def stored(self) -> tuple[str, ...]:
        """The slots the group's update keeps for every arm (every one of `slots` unless a subclass says)."""
        return self.slots

    def occurrence_scale(self) -> list[float] | None:
        """What Keras multiplies each occurrence's squared embedding gradient by before summing the rows, per arm
        (None: nothing)."""
        return None

    def step(self, var: tf.Variable, grad: tf.Tensor, square: tf.Tensor, rate: tf.Tensor, keep: tf.Tensor,
             slots: Mapping[str, tf.Variable], steps: tf.Variable, scaled: bool) -> None:
        """Updates `var` and its slots for every arm where `keep` (the others stay as they are). `square` is the
        gradient's square, or Keras' per-occurrence sum for an embedding (already times the occurrence scale
        where `scaled`); `rate`, each arm's rate times the variable's multiplier."""
        raise NotImplementedError


# The rules by `optimizer.name`, filled as each Rule subclass is defined.
RULES: dict[str, type[Rule]] = {}


class Adam(Rule):
    """Keras' Adam: momentum and velocity, bias-corrected in the rate."""

    name = "adam"
    slots = ("momentum", "velocity")
    shared = {"amsgrad": False}
    second_moments = True

    def step(self, var: tf.Variable, grad: tf.Tensor, square: tf.Tensor, rate: tf.Tensor, keep: tf.Tensor,
             slots: Mapping[str, tf.Variable], steps: tf.Variable, scaled: bool) -> None:
        import tensorflow as tf

        rank = len(var.shape)
        momentum, velocity = slots["momentum"], slots["velocity"]
        b1, b2, eps = self.scalar("beta_1", rank), self.scalar("beta_2", rank), self.scalar("epsilon", rank)
        # float32(1 - 0.9) is not 1 - float32(0.9): that one rounding moved a ReLU conv arm off its run's path.
        rest_1, rest_2 = self.scalar("beta_1", rank, rest=True), self.scalar("beta_2", rank, rest=True)
        corrected = rate * tf.sqrt(1 - b2**steps) / (1 - b1**steps)
        momentum.assign(tf.where(keep, momentum + (grad - momentum) * rest_1, momentum))
        velocity.assign(tf.where(keep, velocity + (square - velocity) * rest_2, velocity))
        var.assign(tf.where(keep, var - corrected * momentum / (tf.sqrt(velocity) + eps), var))


class AdamW(Adam):
    """Keras' AdamW: Adam's step after the weight decay every rule applies."""

    name = "adamw"


class SGD(Rule):
    """Keras' SGD with momentum (none when an arm's momentum is 0: Keras then makes no slot)."""

    name = "sgd"
    slots = ("momentum",)
    shared = {"nesterov": False}

    def kept(self, arm: Mapping[str, Arg]) -> tuple[str, ...]:
        return self.slots if arm["momentum"] else ()

    def step(self, var: tf.Variable, grad: tf.Tensor, square: tf.Tensor, rate: tf.Tensor, keep: tf.Tensor,
             slots: Mapping[str, tf.Variable], steps: tf.Variable, scaled: bool) -> None:
        import tensorflow as tf

        slot = slots["momentum"]
        slot.assign(tf.where(keep, self.scalar("momentum", len(var.shape)) * slot - rate * grad, slot))
        var.assign(tf.where(keep, var + slot, var))


class RMSprop(Rule):
    """Keras' RMSprop, each arm with its own rho, momentum and epsilon; `centered` is shared by a group's arms.
    With momentum 0 the momentum slot holds the increment itself, which is Keras' update without momentum,
    exactly (Keras then makes no momentum slot)."""

    name = "rmsprop"
    slots = ("velocity", "momentum", "average_gradient")
    shared_any = ("centered",)
    second_moments = True

    @property
    def centered(self) -> bool:
        """Whether the group's arms are centered (they share it)."""
        return bool(self.args[0].get("centered", False))

    def kept(self, arm: Mapping[str, Arg]) -> tuple[str, ...]:
        return ("velocity", *(("momentum",) if arm["momentum"] else ()),
                *(("average_gradient",) if arm.get("centered") else ()))

    def stored(self) -> tuple[str, ...]:
        # The momentum slot holds the increment even at momentum 0; the average gradient only when centered.
        return ("velocity", "momentum", *(("average_gradient",) if self.centered else ()))

    def occurrence_scale(self) -> list[float] | None:
        return [1 - float(a["rho"]) for a in self.args]  # type: ignore[arg-type]

    def step(self, var: tf.Variable, grad: tf.Tensor, square: tf.Tensor, rate: tf.Tensor, keep: tf.Tensor,
             slots: Mapping[str, tf.Variable], steps: tf.Variable, scaled: bool) -> None:
        import tensorflow as tf

        rank = len(var.shape)
        rho, eps, rest = self.scalar("rho", rank), self.scalar("epsilon", rank), self.scalar("rho", rank, rest=True)
        velocity, momentum_slot = slots["velocity"], slots["momentum"]
        velocity.assign(tf.where(keep, rho * velocity + (square if scaled else rest * square), velocity))
        if self.centered:
            average = slots["average_gradient"]
            average.assign(tf.where(keep, rho * average + rest * grad, average))
            denominator = velocity - tf.square(average) + eps
        else:
            denominator = velocity + eps
        increment = rate * grad / tf.sqrt(denominator)
        momentum = self.scalar("momentum", rank)
        momentum_slot.assign(tf.where(keep, momentum * momentum_slot + increment, momentum_slot))
        var.assign(tf.where(keep, var - momentum_slot, var))


class FusedOptimizer:
    """One optimizer for K arms' stacked variables (leading axis: the arm).

    Attributes:
        rule: the optimizer's own update (`Rule`).
        slots: Keras' slot name -> one stacked slot per variable (every slot the rule keeps).
        steps: the updates done (Keras' `iterations`), the same for every live arm.
        rates: each arm's constant learning rate; ReduceLROnPlateau lowers an arm's entry between epochs.
        multipliers: per variable, each arm's factor on its learning rate (1 unless the caller gives others).
        alive: 1 for an arm that trains, 0 for a frozen one (its weights and slots stay as they are).
    """

    def __init__(self, name: str, variables: Sequence[tf.Variable], arm_args: Sequence[Mapping[str, Arg]],
                 clipping: Mapping[str, float], schedules: Sequence[Rate],
                 multipliers: Sequence[Sequence[float]] | None = None) -> None:
        """`schedules`: each arm's learning rate as Keras is given it (a number or a schedule object)."""
        import tensorflow as tf

        self.rule = RULES[name](arm_args)
        self.name, self.variables, self.clipping = name, list(variables), clipping
        self.k = len(arm_args)
        self.slots = {slot: [tf.Variable(tf.zeros_like(v)) for v in variables] for slot in self.rule.stored()}
        self.steps = tf.Variable(0.0)
        self.alive = tf.Variable(tf.ones([self.k]))
        self.rates = tf.Variable([float(a["learning_rate"]) for a in arm_args], dtype=tf.float32)  # type: ignore[arg-type]
        self.multipliers = [per_arm(list(m), len(v.shape)) for m, v in zip(
            multipliers or [[1.0] * self.k for _ in variables], variables, strict=True)]
        self.schedules = list(schedules)
        self.scheduled = any(callable(r) for r in schedules)

    @property
    def args(self) -> list[Mapping[str, Arg]]:
        return self.rule.args

    def keras_slots(self, arm: int) -> dict[str, list[NDArray[np.float32]]]:
        """Arm `arm`'s slots by Keras' slot names, only those Keras' optimizer makes for its arguments, one per
        trainable variable, for its saved model's optimizer (matched by path in `handoff.restore_optimizer`)."""
        import numpy as np

        return {slot: [np.asarray(v[arm].numpy()) for v in self.slots[slot]] for slot in self.rule.kept(self.args[arm])}

    def _current_rates(self) -> list[tf.Tensor]:
        """Each variable's per-arm learning rate for this step: the rate, or the arm's schedule called on the
        step count before the update (as Keras' optimizer calls it), shaped to broadcast over the variable."""
        import tensorflow as tf

        if not self.scheduled:
            now = self.rates
        else:
            step = tf.cast(self.steps, tf.int64)  # the optimizer's iterations, before this update
            now = tf.stack([tf.cast(r(step), tf.float32) if callable(r) else tf.constant(float(r), tf.float32)
                            for r in self.schedules])
        return [tf.reshape(now, [self.k] + [1] * (len(v.shape) - 1)) for v in self.variables]

    def _clip(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
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

    def update(self, grads: Sequence[tf.Tensor], squares: Sequence[tf.Tensor | None] | None = None) -> None:
        """One step for every live arm, from the gradients of the summed loss (so each arm's own).

        `squares[i]`, where given, replaces the square of gradient i in the second moments (an embedding's
        per-occurrence sum, already times `rule.occurrence_scale()` where that is not None).
        """
        import tensorflow as tf

        grads = self._clip(grads)  # Keras' order: clip, decay the weights, then the step
        rates = self._current_rates()
        self.steps.assign_add(1.0)
        decaying = any(a.get("weight_decay") for a in self.args)
        for i, (var, grad) in enumerate(zip(self.variables, grads, strict=True)):
            rank = len(var.shape)
            square = squares[i] if squares is not None else None
            scaled = square is not None and self.rule.occurrence_scale() is not None
            rate = rates[i] * self.multipliers[i]
            # A frozen arm's weights and slots stay as they are (tf.where: NaN times 0 would still be NaN).
            keep = tf.broadcast_to(tf.reshape(self.alive > 0, [-1] + [1] * (rank - 1)), var.shape)
            grad = tf.where(keep, grad, 0.0)
            square = tf.square(grad) if square is None else tf.where(keep, square, 0.0)
            if decaying:
                var.assign(tf.where(keep, var - var * self.rule.scalar("weight_decay", rank) * rate, var))
            self.rule.step(var, grad, square, rate, keep, {s: v[i] for s, v in self.slots.items()}, self.steps,
                           scaled)


# The arguments a fused optimizer's arms may set are the key table's; every rule has its line there.
assert set(RULES) == set(ARM_SCALARS), (sorted(RULES), sorted(ARM_SCALARS))
