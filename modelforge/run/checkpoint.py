"""Checkpoints: what a run needs to continue exactly where it stopped, written atomically after every epoch.

Two generations, `checkpoint.npz` and the one before it, `checkpoint.prev.npz`, each with a digest of its
arrays, the run it belongs to (its config's digest and its folder's token) and a seal over both: a corrupt,
truncated, edited, missing or another run's latest one falls back to the previous one (or to the first epoch;
a run that finds only another run's checkpoints is refused),
and the run still ends bit for bit as it would have. Each holds every model variable (weights, batch-norm
statistics, dropout's seed state), every optimizer variable (its step count and slots), early stopping's
state with its best weights, and a JSON record of the epochs done and the history so far. Batch order is a
function of (seed, epoch) (see `modelforge.data.batches`), so nothing else is needed for the rest of the run
to repeat bit for bit. A run that completes removes its checkpoint: `model.keras` is then the result.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.errors import ConfigError
from modelforge.run.console import say
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


# The checkpoint layout written here; a fused group's checkpoint of another (older) layout is refused.
FORMAT = 2


def previous(path: Path) -> Path:
    """The previous generation's name: checkpoint.npz -> checkpoint.prev.npz."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def arrays_digest(arrays: Mapping[str, Any]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order: what a checkpoint's state holds,
    so a file that reads but holds other bytes is found out."""
    import numpy as np

    sha = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        sha.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        sha.update(value.tobytes())
    return sha.hexdigest()


def seal(arrays_sha: str, state: Mapping[str, Any]) -> str:
    """SHA-256 over the arrays' digest and the state's JSON (its own seal left out): an edited state (the epochs
    done, the history, the run it belongs to) is found out as surely as edited arrays."""
    body = {k: v for k, v in state.items() if k != "seal"}
    return hashlib.sha256((arrays_sha + json.dumps(body, sort_keys=True)).encode()).hexdigest()


class Foreign(ValueError):
    """A checkpoint that reads whole but belongs to another run."""


def owner(folder: RunFolder) -> dict[str, Any]:
    """The run a checkpoint written in `folder` belongs to, as its metrics.json records it: its config's digest
    and the folder's own token (None where a folder written by an older modelforge has none)."""
    if folder.owner is None:  # read once: a run's digest and token do not change while it runs
        record = folder.record()
        config = record.get("config") or {}
        folder.owner = {"config": config.get("digest") if isinstance(config, dict) else None,
                        "token": record.get("temp_token")}
    return folder.owner


def write_arrays(folder: RunFolder, name: str, arrays: Mapping[str, Any], state: Mapping[str, Any],
                 belongs: Mapping[str, Any] | None = None) -> None:
    """Writes named arrays and a JSON state (the arrays' digest, the run it `belongs` to, and a seal over both)
    as one npz file, atomically, keeping the generation before it as `<name>.prev.npz`.

    A kill at any moment leaves a whole latest generation or a whole previous one; a disk that fills while the
    new one is written leaves the previous one intact. The run's checkpoint and a fused group's are both
    written so.
    """
    import numpy as np

    state = {**state, "format": FORMAT, "digest": arrays_digest(arrays)}
    if belongs is not None:
        state["owner"] = dict(belongs)
    state["seal"] = seal(state["digest"], state)
    payload = {**arrays, "state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)}

    def write(path: Any) -> None:
        with open(path, "wb") as f:
            np.savez(f, **payload)  # type: ignore[arg-type]

    latest = folder.path / name
    if latest.is_file():
        os.replace(latest, previous(latest))
    folder.write_with(name, write)


def _read_one(path: Path, belongs: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as found:
        arrays = {k: found[k] for k in found.files if k != "state"}
        state = json.loads(found["state"].tobytes().decode())
    if not isinstance(state, dict):
        raise ValueError("its state is not a mapping")
    if "digest" in state and arrays_digest(arrays) != state["digest"]:
        raise ValueError("its arrays do not match the digest written with them")
    if "seal" in state and seal(str(state.get("digest")), state) != state["seal"]:
        raise ValueError("its state does not match the seal written with it (edited)")
    # What either side does not know is not compared: a checkpoint written by an older modelforge names no run,
    # and a folder whose record has no config digest resumes unchecked (`check_same_config` says so).
    theirs = state.get("owner") or {}
    if belongs is not None and belongs.get("config") is not None and any(
            theirs.get(k) not in (None, v) for k, v in belongs.items() if v is not None):
        raise Foreign(f"it belongs to another run (config {theirs.get('config')}, folder token "
                      f"{theirs.get('token')}; this run's: {belongs.get('config')}, {belongs.get('token')})")
    return arrays, state


def read_arrays(path: Path, belongs: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest readable generation `write_arrays` wrote (no pickles) that belongs to this run: the latest,
    else the previous one, saying in one line why it fell back; None when neither exists or can be read (the run
    starts over).

    Raises:
        ConfigError: every generation there belongs to another run (or is damaged): starting over would train
            this run beside another's state, so it is refused.
    """
    problems: list[str] = []
    foreign = False
    for candidate in (path, previous(path)):
        if not candidate.is_file():
            if candidate == path and previous(path).is_file():
                problems.append(f"{path.name} is missing")
            continue
        try:
            arrays, state = _read_one(candidate, belongs)
        except Exception as err:  # noqa: BLE001 (any damage: truncated, empty, not a zip, wrong bytes)
            foreign = foreign or isinstance(err, Foreign)
            problems.append(f"{candidate.name} cannot be used ({type(err).__name__}: {err})")
            continue
        if problems:
            say(f"{path.parent}: {'; '.join(problems)}; continuing from {candidate.name} "
                f"(after epoch {state.get('epochs_done', '?')})")
        return arrays, state
    if foreign:
        raise ConfigError(f"{path.parent}: {'; '.join(problems)}; no checkpoint there is this run's, so it is not "
                          "resumed: move the other run's checkpoint files out, or start this run in a new folder")
    if problems:
        say(f"{path.parent}: {'; '.join(problems)}; no checkpoint can be read, so the run starts again from its "
            "first epoch (it repeats exactly)")
    return None


def save(folder: RunFolder, model: Any, progress: Progress, best_weights: list[Any] | None) -> None:
    """Writes the checkpoint atomically (a kill while writing leaves the previous one intact)."""
    import numpy as np

    arrays = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    arrays.update({f"best_{i}": np.asarray(w) for i, w in enumerate(best_weights or [])})
    write_arrays(folder, CHECKPOINT, arrays, {
        "epochs_done": progress.epochs_done, "history": progress.history, "stopped": progress.stopped,
        "stopping": progress.stopping, "plateau": progress.plateau, "has_best": best_weights is not None},
        belongs=owner(folder))


def load(folder: RunFolder, model: Any) -> tuple[Progress, list[Any] | None]:
    """Restores the model's and its optimizer's variables from the newest readable checkpoint; returns the
    progress (none, from the first epoch, when no generation can be read)."""
    found = read_arrays(folder.path / CHECKPOINT, owner(folder))
    if found is None:
        return Progress(), None
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
    """Whether any generation of the checkpoint is there (readable or not: `load` tells)."""
    path = folder.path / CHECKPOINT
    return path.exists() or previous(path).exists()


def check_files(folder: RunFolder) -> None:
    """Refuses a run folder whose checkpoint names hold something other than a file (a folder, a link, a device):
    the run could neither read nor replace it.

    Raises:
        ConfigError: naming the entry.
    """
    for path in (folder.path / CHECKPOINT, previous(folder.path / CHECKPOINT)):
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            what = "a link" if path.is_symlink() else "a folder" if path.is_dir() else "not a regular file"
            raise ConfigError(f"{path} is {what}, not a checkpoint file, and modelforge writes the run's checkpoint "
                              "under that name: move it out of the run folder, then run again")


def remove(folder: RunFolder) -> None:
    """Removes both generations (model.keras is the result now)."""
    path = folder.path / CHECKPOINT
    path.unlink(missing_ok=True)
    previous(path).unlink(missing_ok=True)


# The counters of Keras' EarlyStopping and ReduceLROnPlateau that a resumed run must start from.
STOPPING_STATE = ("wait", "best", "best_epoch", "stopped_epoch")
PLATEAU_STATE = ("wait", "best", "cooldown_counter")


def stopping_state(callback: Any, keys: tuple[str, ...] = STOPPING_STATE) -> dict[str, Any]:
    """A callback's counters (`keys`), as plain numbers."""
    found: Mapping[str, Any] = {k: getattr(callback, k, None) for k in keys}
    return {k: (float(v) if isinstance(v, float) or hasattr(v, "item") else v) for k, v in found.items()}
