"""`python -m modelforge [train] [overrides]`: compose, check, train, and leave a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.api import train
from modelforge.cli.app import run_hydra


def train_in(cfg: Any, run_dir: Path) -> float:
    """Checks and trains the composed config in Hydra's run folder; returns the objective for sweepers.

    A config refused by the checks leaves `metrics.json` saying `failed` and why, so a sweep's summary
    accounts for the job.
    """
    metrics = train(cfg, run_dir=run_dir)
    objective = metrics["objective"]
    print(f"run folder: {metrics['run_dir']}  {objective['name']}={objective['value']:.4f}  ({metrics['status']})")
    return float(objective["value"])


def main(argv: list[str]) -> None:
    run_hydra(argv, train_in, check=False)
