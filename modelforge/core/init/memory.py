"""How much memory a run needs: weights, gradients and optimizer slots, and one batch of activations.

Pure arithmetic on the plan, so an impossible model is refused before anything is built. An estimate, not a
measurement: it counts float32 values and leaves out TensorFlow's own workspace, so real use runs higher.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from modelforge.core.init.plan import Plan
from modelforge.core.registry import OPTIMIZER_SLOTS

BYTES_PER_VALUE = 4  # float32


def human(n: float) -> str:
    """Bytes as people read them.

    Example:
        >>> human(1536), human(6 * 1024**4)
        ('1.5 KB', '6.0 TB')
    """
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs, by what holds them."""

    weights: int
    training_state: int  # gradients and the optimizer's slots (Adam keeps two values per weight)
    activations: int  # one batch through every layer, kept for the backward pass, and its gradients

    @property
    def total(self) -> int:
        return self.weights + self.training_state + self.activations

    def describe(self) -> str:
        return (f"about {human(self.total)} (weights {human(self.weights)}, gradients and optimizer slots "
                f"{human(self.training_state)}, one batch of activations {human(self.activations)})")

    def advice(self) -> str:
        """What to shrink: the batch when activations dominate, the model otherwise."""
        if self.activations > self.weights + self.training_state:
            return "shrink trainer.batch_size (or the layers' outputs)"
        return "shrink model.units or model.depth (or the layers in model.layers)"


def estimate(plan: Plan, batch_size: int, optimizer: str) -> MemoryEstimate:
    """The memory a run of `plan` needs with `batch_size` and `optimizer` (a name in the registry).

    Example:
        >>> from modelforge.core.config.schema import RunConfig
        >>> from modelforge.core.init.plan import make_plan
        >>> plan = make_plan(RunConfig.from_mapping(composed))
        >>> estimate(plan, 32, "adam").weights == 4 * sum(math.prod(e.shape) for e in plan.entries)
        True
    """
    values = sum(math.prod(e.shape) for e in plan.entries)
    outputs = math.prod(plan.info.input_shape) + sum(math.prod(spec.output_shape) for spec in plan.specs)
    outputs += sum(kept(spec.input_shape, spec.args) for spec in plan.specs if (kept := spec.layer_type.kept))
    return MemoryEstimate(
        weights=values * BYTES_PER_VALUE,
        training_state=values * BYTES_PER_VALUE * (1 + OPTIMIZER_SLOTS.get(optimizer, 2)),
        activations=2 * batch_size * outputs * BYTES_PER_VALUE,
    )


def available_memory() -> int | None:
    """Bytes of memory the machine can give a new process now (Linux' MemAvailable; elsewhere the free pages),
    or None if the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
