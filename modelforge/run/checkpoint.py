"""Checkpoints: what a run needs to continue exactly where it stopped, written atomically after every epoch.

One file, `checkpoint.npz`: every model variable (weights, batch-norm statistics, dropout's seed state), every
optimizer variable (its step count and slots), early stopping's state with its best weights, and a JSON
record of the epochs done and the history so far. Batch order is a function of (seed, epoch) (see
`modelforge.data.batches`), so nothing else is needed for the rest of the run to repeat bit for bit. A run
that completes removes its checkpoint: `model.keras` is then the result.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.run.folder import RunFolder

CHECKPOINT = "checkpoint.npz"


@dataclass
class Progress:
    """A run's progress as a checkpoint holds it.

    Attributes:
        epochs_done: complete epochs (training resumes at this 0-based epoch).
        history: one row per epoch done, as history.csv holds them.
        stopped: early stopping ended the run: no epoch is left to train.
        stopping: early stopping's counters (`wait`, `best`, `best_epoch`, `stopped_epoch`).
        plateau: ReduceLROnPlateau's counters (`wait`, `best`, `cooldown_counter`); the rate itself is an
            optimizer variable.
    """

    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    stopping: dict[str, Any] = field(default_factory=dict)
    plateau: dict[str, Any] = field(default_factory=dict)


def write_arrays(folder: RunFolder, name: str, arrays: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Writes named arrays and a JSON state as one npz file, atomically (a kill leaves the previous one intact).

    The run's checkpoint and a fused group's (`modelforge.run.fused`) are both written so.
    """
    import numpy as np

    payload = {**arrays, "state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)}

    def write(path: Any) -> None:
        with open(path, "wb") as f:
            np.savez(f, **payload)  # type: ignore[arg-type]

    folder.write_with(name, write)


def read_arrays(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The arrays and the state `write_arrays` wrote (no pickles), or None when there is no such file."""
    import numpy as np

    if not path.is_file():
        return None
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as found:
        arrays = {k: found[k] for k in found.files if k != "state"}
        state = json.loads(found["state"].tobytes().decode())
    return arrays, state


def save(folder: RunFolder, model: Any, progress: Progress, best_weights: list[Any] | None) -> None:
    """Writes the checkpoint atomically (a kill while writing leaves the previous one intact)."""
    import numpy as np

    arrays = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    arrays.update({f"best_{i}": np.asarray(w) for i, w in enumerate(best_weights or [])})
    write_arrays(folder, CHECKPOINT, arrays, {
        "epochs_done": progress.epochs_done, "history": progress.history, "stopped": progress.stopped,
        "stopping": progress.stopping, "plateau": progress.plateau, "has_best": best_weights is not None})


def load(folder: RunFolder, model: Any) -> tuple[Progress, list[Any] | None]:
    """Restores the model's and its optimizer's variables from the checkpoint; returns the progress."""
    found = read_arrays(folder.path / CHECKPOINT)
    if found is None:
        raise FileNotFoundError(folder.path / CHECKPOINT)
    arrays, state = found
    model.optimizer.build(model.trainable_variables)
    for i, variable in enumerate(model.variables):
        variable.assign(arrays[f"model_{i}"])
    for i, variable in enumerate(model.optimizer.variables):
        variable.assign(arrays[f"optimizer_{i}"])
    best = None
    if state["has_best"]:
        best = [arrays[f"best_{i}"] for i in range(sum(k.startswith("best_") for k in arrays))]
    progress = Progress(state["epochs_done"], state["history"], state["stopped"], state["stopping"],
                        state.get("plateau", {}))
    return progress, best


def exists(folder: RunFolder) -> bool:
    return (folder.path / CHECKPOINT).exists()


def remove(folder: RunFolder) -> None:
    (folder.path / CHECKPOINT).unlink(missing_ok=True)


# The counters of Keras' EarlyStopping and ReduceLROnPlateau that a resumed run must start from.
STOPPING_STATE = ("wait", "best", "best_epoch", "stopped_epoch")
PLATEAU_STATE = ("wait", "best", "cooldown_counter")


def stopping_state(callback: Any, keys: tuple[str, ...] = STOPPING_STATE) -> dict[str, Any]:
    """A callback's counters (`keys`), as plain numbers."""
    found: Mapping[str, Any] = {k: getattr(callback, k, None) for k in keys}
    return {k: (float(v) if isinstance(v, float) or hasattr(v, "item") else v) for k, v in found.items()}
