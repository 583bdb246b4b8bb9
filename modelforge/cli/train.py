"""`python -m modelforge [train] [overrides]`: compose, check, train, and leave a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.api import train
from modelforge.cli.app import resuming, run_hydra, write_hydra_files
from modelforge.run.folder import FolderState, RunFolder
from modelforge.run.lifecycle import claim


def train_in(cfg: Any, run_dir: Path) -> float:
    """Checks and trains the composed config in Hydra's run folder; returns the objective for sweepers.

    The folder is claimed (locked, and refused if another run holds it) before anything is written, Hydra's
    `.hydra/` record included. A config refused by the checks leaves `metrics.json` saying `failed` and why,
    so a sweep's summary accounts for the job. In a sweep that `resume` re-launched, a completed job reports
    its recorded objective untouched, and an unfinished one continues from its checkpoint.
    """
    folder = RunFolder(run_dir)
    resume = resuming()
    if resume and folder.state() == FolderState.COMPLETED:
        objective = folder.record()["objective"]
        print(f"run folder: {folder.path.resolve()}  {objective['name']}={objective['value']:.4f}  (completed before)")
        return float(objective["value"])
    if claim(folder, resume) == FolderState.EMPTY:
        write_hydra_files(cfg, folder)
    metrics = train(cfg, run_dir=folder, resume=resume)
    objective = metrics["objective"]
    print(f"run folder: {metrics['run_dir']}  {objective['name']}={objective['value']:.4f}  ({metrics['status']})")
    return float(objective["value"])


def main(argv: list[str]) -> None:
    run_hydra(argv, train_in, check=False)
