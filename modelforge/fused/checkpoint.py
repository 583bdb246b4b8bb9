"""A fused group's checkpoint, written after every epoch as a run's own is (`modelforge.run.checkpoint`: two
generations, atomically, bound to what they belong to).

It holds every stacked variable, the optimizer's slots by Keras' slot names, its step count and each arm's rate,
which arms live and their step counts, each arm's history, early-stopping and plateau state (with best weights,
and the weights of arms that stopped). Batch order is a function of (seed, epoch), so a sweep killed while the
group trains, once resumed, continues all its unfinished arms as the uninterrupted run would.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelforge.errors import ConfigError
from modelforge.run.checkpoint import FORMAT, PLATEAU_STATE, read_arrays, stopping_state, write_arrays
from modelforge.run.folder import RunFolder

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from modelforge.fused.trainer import GroupTrainer

# The prefixes a checkpoint written before the slots took Keras' names gives them.
_EARLIER_SLOT_NAMES = {"momentum": "m", "velocity": "v", "average_gradient": "a"}


def save(group: GroupTrainer, checkpoint: Path, epochs_done: int) -> None:
    """Writes the group's checkpoint after an epoch (two generations, atomically: `write_arrays`)."""
    optimizer, arms = group.optimizer, group.arms
    arrays: dict[str, NDArray[np.float32]] = {f"var_{i}": v.numpy() for i, v in enumerate(group.model.every_variable)}
    for slot, variables in optimizer.slots.items():
        arrays.update({f"{slot}_{i}": v.numpy() for i, v in enumerate(variables)})
    arrays["rates"] = optimizer.rates.numpy()
    best_counts = []
    for a, stopper in enumerate(arms.stoppers):
        best = list(getattr(stopper, "best_weights", None) or [])
        best_counts.append(len(best))
        arrays.update({f"best_{a}_{j}": w for j, w in enumerate(best)})
    for a, weights in arms.stopped_weights.items():
        arrays.update({f"final_{a}_{j}": w for j, w in enumerate(weights)})
    write_arrays(RunFolder(checkpoint.parent), checkpoint.name, arrays, {
        "epochs_done": epochs_done, "steps": float(optimizer.steps.numpy()), "alive": optimizer.alive.numpy().tolist(),
        "arm_steps": arms.steps.tolist(), "histories": arms.histories, "final": list(arms.stopped_weights),
        "best_counts": best_counts,
        "stopping": [stopping_state(s) if s is not None else {} for s in arms.stoppers],
        "plateau": [stopping_state(p, PLATEAU_STATE) if p is not None else {} for p in arms.plateaus]},
        belongs=group.belongs)


def load(group: GroupTrainer, checkpoint: Path) -> int:
    """Restores the group from its newest readable checkpoint generation; returns the epochs done (0: none).

    Raises:
        ConfigError: the checkpoint was written in an older layout.
    """
    import numpy as np

    saved = read_arrays(checkpoint, group.belongs)
    if saved is None:
        return 0
    arrays, state = saved
    if state.get("format") != FORMAT:
        raise ConfigError(f"{checkpoint} was written by an older modelforge, in a layout this one does not read; the "
                          f"sweep in {checkpoint.parent.parent} cannot be resumed: run it again into a new "
                          "hydra.sweep.dir")
    optimizer, arms = group.optimizer, group.arms
    for i, variable in enumerate(group.model.every_variable):
        variable.assign(arrays[f"var_{i}"])
    for slot, variables in optimizer.slots.items():
        prefix = slot if f"{slot}_0" in arrays else _EARLIER_SLOT_NAMES[slot]
        for i, variable in enumerate(variables):
            variable.assign(arrays[f"{prefix}_{i}"])
    optimizer.steps.assign(float(state["steps"]))
    optimizer.rates.assign(arrays["rates"])
    optimizer.alive.assign(np.asarray(state["alive"], dtype=np.float32))
    arms.steps = np.asarray(state["arm_steps"], dtype=np.float64)
    arms.histories = state["histories"]
    for a, stopper in enumerate(arms.stoppers):
        if stopper is not None:
            for key, value in state["stopping"][a].items():
                setattr(stopper, key, value)
            count = int(state["best_counts"][a])
            stopper.best_weights = [arrays[f"best_{a}_{j}"] for j in range(count)] if count else None
    for a in state["final"]:
        arms.stopped_weights[int(a)] = [arrays[f"final_{a}_{j}"] for j in range(group.weights_per_arm)]
    for plateau, counters in zip(arms.plateaus, state["plateau"], strict=True):
        for key, value in counters.items():
            setattr(plateau, key, value)
    return int(state["epochs_done"])
