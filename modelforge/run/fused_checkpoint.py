"""A fused group's checkpoint: every stacked variable and slot, the step counts, which arms live, each arm's
history and early-stopping state, written atomically after every epoch.

A sweep killed while a group trains (kill -9, SIGTERM, a lost machine) and then resumed (`python -m
modelforge resume SWEEP_DIR`) continues the group from its last complete epoch, all its unfinished arms
together; the batch order is a function of (seed, epoch), so the rest repeats as the uninterrupted run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from modelforge.run.folder import RunFolder

# The counters of Keras' EarlyStopping an arm resumes with.
STOPPING = ("wait", "best", "best_epoch", "stopped_epoch")


def save(path: Path, arrays: dict[str, Any], state: dict[str, Any]) -> None:
    """Writes the arrays and the JSON state to `path`, atomically (a kill leaves the previous epoch's)."""
    import numpy as np

    payload = {**arrays, "state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)}

    def write(temp: Any) -> None:
        with open(temp, "wb") as f:
            np.savez(f, **payload)  # type: ignore[arg-type]

    path.parent.mkdir(parents=True, exist_ok=True)
    RunFolder(path.parent).write_with(path.name, write)


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The arrays and the state, or None when there is no checkpoint."""
    import numpy as np

    if not path.is_file():
        return None
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as found:
        arrays = {k: found[k] for k in found.files if k != "state"}
        state = json.loads(found["state"].tobytes().decode())
    return arrays, state


def plain(value: Any) -> Any:
    """A counter as JSON takes it (numpy scalars as Python numbers)."""
    return value.item() if hasattr(value, "item") else value
