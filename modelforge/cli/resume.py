"""`python -m modelforge resume FOLDER`: continue an unfinished run, or re-launch a sweep, where it stopped.

A run folder (dead, or stopped by a signal) continues from its last checkpoint with the config recorded in
it. A sweep folder is launched again with its recorded overrides: completed jobs are skipped (their files
untouched, their objective reported to the sweeper), unfinished ones continue from their checkpoints, and
jobs that never started run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from modelforge.analysis.summary import PLANNED
from modelforge.cli.app import exit_with, run_hydra
from modelforge.core.config.metrics import objective_text
from modelforge.errors import ConfigError, RunFailed, RunInterrupted
from modelforge.front_door import quoted
from modelforge.run.lifecycle import resumed_environment
from modelforge.run.owned import keep_recorded_modules


def resume_run(path: Path) -> int:
    from modelforge.api import resume

    try:
        metrics = resume(path)
    except (ConfigError, RunFailed) as err:
        exit_with(err)
    except RunInterrupted as err:
        print(f"modelforge: {err}", file=sys.stderr)
        return err.exit_status
    objective = metrics["objective"]
    print(f"run folder: {metrics['run_dir']}  {objective_text(objective, metrics.get('epochs_run'))}  "
          f"({metrics['status']})")
    return 0


def resume_sweep(path: Path) -> int:
    from modelforge.cli.train import train_in

    plan = json.loads((path / PLANNED).read_text(encoding="utf-8"))
    hydra_overrides = [o for o in plan["hydra_overrides"] if not o.startswith("hydra.sweep.dir=")]
    os.environ.update(resumed_environment())  # read by each job, in this process or a launcher's workers
    sweep = f"hydra.sweep.dir={quoted(str(path.resolve()))}"  # any path: quoted for Hydra's override grammar
    run_hydra(["-m", *plan["task_overrides"], *hydra_overrides, sweep], train_in, check=False, trains=True)
    return 0


def main(argv: list[str]) -> int:
    """Continues the run or sweep in FOLDER."""
    parser = argparse.ArgumentParser(prog="python -m modelforge resume", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a run folder, or a sweep folder")
    path = parser.parse_args(argv).folder
    keep_recorded_modules(path)  # a module file written since the run or sweep started is not the user's code
    if (path / "metrics.json").is_file() and (path / "config.yaml").is_file():
        return resume_run(path)
    if (path / PLANNED).is_file():
        return resume_sweep(path)
    exit_with(f"{path} holds no run (metrics.json and config.yaml) and no sweep ({PLANNED}) to resume")
