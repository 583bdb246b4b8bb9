"""The command's output folders, checked once Hydra has composed the config and before it writes anything.

A run, plan or diagnosis goes into an empty folder or one of modelforge's own of the same kind
(`modelforge.run.owned`). A sweep folder belongs to one sweep: the same command again continues it (as `resume`
does: completed jobs kept, unfinished ones continued), and any other sweep is refused before a job starts. A
sweep's jobs each get a folder of their own inside the sweep's (`hydra.sweep.subdir`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from modelforge.analysis.summary import PLANNED
from modelforge.errors import ConfigError
from modelforge.run.folder import writable
from modelforge.run.owned import Kind, NotOurs, check_ours, mark

SWEEP_DIR = "hydra.sweep.dir="


def _resolved(config: Any, key: str) -> str | None:
    from omegaconf import OmegaConf

    value = OmegaConf.select(config, key, throw_on_resolution_failure=False)
    return None if value is None else str(value)


def check_folders(config: Any, kind: Kind) -> None:
    """Refuses output folders this command may not write into (see the module's docstring); a sweep folder is
    recorded as the sweep's. Sets `resumed` for the jobs when the command continues its own sweep."""
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if config is None or OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
        run_dir = _resolved(config, "hydra.run.dir") if config is not None else None
        if run_dir:
            check_ours(run_dir, kind, "hydra.run.dir")
            writable(run_dir, "hydra.run.dir")  # before Hydra opens its log there
        return
    check_subdir(str(config.hydra.sweep._get_node("subdir")._value()))
    sweep = _resolved(config, "hydra.sweep.dir")
    if not sweep:
        return
    check_ours(sweep, Kind.SWEEP, "hydra.sweep.dir")
    check_same_sweep(Path(sweep), config)
    mark(writable(sweep, "hydra.sweep.dir"), Kind.SWEEP)


def check_subdir(subdir: str) -> None:
    """A job's folder lies inside the sweep's, one of its own: a relative path that goes down.

    Example:
        >>> check_subdir("${hydra.job.num}")
        >>> check_subdir(".")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: hydra.sweep.subdir='.' is refused: each job of a sweep writes a run folder...
    """
    parts = Path(subdir).parts
    if not parts or Path(subdir).is_absolute() or ".." in parts:
        raise ConfigError(f"hydra.sweep.subdir={subdir!r} is refused: each job of a sweep writes a run folder of its "
                          "own inside the sweep's folder, so the subdir is a relative path below it, e.g. "
                          "hydra.sweep.subdir=${hydra.job.num} (the default)")


def _command(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(SWEEP_DIR)]


def check_same_sweep(sweep: Path, config: Any) -> None:
    """A sweep folder holding another sweep's plan is refused; the same command again continues its sweep."""
    from modelforge.run.lifecycle import resumed_environment, sweep_resumed

    try:
        recorded = json.loads((sweep / PLANNED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(recorded, dict) or sweep_resumed():
        return
    task, hydra = list(config.hydra.overrides.task), list(config.hydra.overrides.hydra)
    launcher = str(config.hydra.launcher.get("_target_", ""))
    same = (recorded.get("task_overrides") == task
            and _command(list(recorded.get("hydra_overrides") or [])) == _command(hydra)
            and recorded.get("launcher", launcher) == launcher)
    if not same:
        was = " ".join(o for o in _command([*recorded.get("task_overrides", []),
                                            *recorded.get("hydra_overrides", [])]) if not o.startswith("hydra.mode="))
        raise NotOurs(f"hydra.sweep.dir: {sweep} holds another sweep ({was or 'no overrides'}), and a sweep folder "
                      f"holds one sweep; continue that one with: python -m modelforge resume {sweep}, or choose "
                      "another folder for this one (hydra.sweep.dir=...)")
    print(f"modelforge: {sweep} holds this sweep already; continuing it (completed jobs are kept)", flush=True)
    os.environ.update(resumed_environment())  # read by each job, in this process or a launcher's workers
