"""`python -m modelforge [train] [overrides]`: compose, check, train, and leave a run folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from modelforge.analysis.summary import PLANNED
from modelforge.api import train
from modelforge.cli.app import claim_job_folder, in_multirun, run_hydra, sweep_dir, write_hydra_files
from modelforge.core.config.metrics import objective_text
from modelforge.core.names import counted
from modelforge.run.console import Place
from modelforge.run.folder import FolderState, RunFolder
from modelforge.run.lifecycle import sweep_resumed
from modelforge.run.owned import Kind

# Statuses of jobs that are over, for the count of jobs done.
_OVER = {"completed", "failed", "dead", "interrupted"}


def sweep_place(compact: bool) -> tuple[Place, int | None]:
    """This job's place in the sweep: its label, how it prints (`compact`: an arm of a fused group, one line),
    and how many jobs the sweep has."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    planned = _planned()
    total = len(planned.get("jobs") or []) or None
    marks = sweep_dir() / ".plans"

    def first_of_plan(digest: str) -> bool:
        # The first job with this plan prints its table; a marker file says so to every other process.
        marks.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(marks / digest, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    side_by_side = not str(hydra.launcher.get("_target_", "")).endswith("BasicLauncher")
    return Place(f"[{hydra.job.num + 1}/{total or '?'}]", side_by_side, first_of_plan, compact), total


def _planned() -> dict[str, Any]:
    try:
        found = json.loads((sweep_dir() / PLANNED).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def progress_note(total: int | None, time_left: bool = True) -> str:
    """`4 of 9 jobs done, about 1 min 12 s left`, from the sweep's job folders and when it was launched (without
    the time left for fused arms, whose jobs take a fraction of a second each once their group trained)."""
    done = 0
    for metrics in sweep_dir().rglob("metrics.json"):
        done += RunFolder(metrics.parent).record().get("status") in _OVER
    if not total:
        return f"{counted(done, 'job')} done"
    if not time_left:
        return f"{done} of {total} jobs done"
    elapsed = time.time() - float(_planned().get("launched_at") or time.time())
    left = elapsed / max(done, 1) * max(total - done, 0)
    return f"{done} of {total} jobs done, about {int(left // 60)} min {int(left % 60)} s left"


def train_in(cfg: Any, run_dir: Path, arm: Any = None) -> float:
    """Checks and trains the composed config in Hydra's run folder; returns the objective for sweepers.

    The folder is claimed (locked, and refused if another run holds it) before anything is written, Hydra's
    `.hydra/` record included. A config refused by the checks leaves `metrics.json` saying `failed` and why,
    so a sweep's summary accounts for the job. In a sweep that `resume` re-launched, a completed job reports
    its recorded objective untouched, and an unfinished one continues from its checkpoint. In a sweep each job
    starts with one line (`[3/9] initializer=he_normal,seed=2`) and ends with its objective, its time and the
    sweep's time left. `arm`: the job's epochs, trained by the fused launcher in its group.
    """
    folder = RunFolder(run_dir)
    resume = sweep_resumed()
    place, total = sweep_place(arm is not None) if in_multirun() else (None, None)
    if resume and folder.state() == FolderState.COMPLETED:
        record = folder.record()
        objective = record["objective"]
        print(f"{place.label + ' ' if place else ''}{folder.job_name()}: "
              f"{objective_text(objective, record.get('epochs_run'))} (completed before; untouched)", flush=True)
        return float(objective["value"])
    if claim_job_folder(folder, Kind.RUN, resume) == FolderState.EMPTY:
        write_hydra_files(cfg, folder)
    started = time.perf_counter()
    if place and not place.compact:
        print(f"{place.label} {folder.job_name()}", flush=True)
    metrics = train(cfg, run_dir=folder, resume=resume, place=place, trained=arm)
    objective = metrics["objective"]
    result = objective_text(objective, metrics.get("epochs_run"))
    if place and place.compact:  # a fused arm: its one line says which job, what it reached, and how it stopped
        stopped = f" ({metrics['stopped_early']})" if metrics.get("stopped_early") else ""
        print(f"{place.label} {folder.job_name()}: {result}{stopped}; {progress_note(total, time_left=False)}",
              flush=True)
    elif place:
        print(f"{place.label} {result} in {time.perf_counter() - started:.1f} s; {progress_note(total)}", flush=True)
    else:
        print(f"run folder: {metrics['run_dir']}  {result}  ({metrics['status']})", flush=True)
    return float(objective["value"])


def main(argv: list[str]) -> None:
    run_hydra(argv, train_in, check=False, trains=True)
