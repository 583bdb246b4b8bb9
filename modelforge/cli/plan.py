"""`python -m modelforge plan [overrides]`: print the init plan and save it, without training or TensorFlow.

In Python, use `modelforge.plan(cfg)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.api import run_config
from modelforge.cli.app import claim_job_folder, run_hydra, write_hydra_files
from modelforge.run.folder import RunFolder
from modelforge.run.lifecycle import config_yaml, save_plan
from modelforge.run.owned import Kind


def plan_in(cfg: Any, run_dir: Path) -> None:
    """Writes config.yaml and init_plan.json into Hydra's run folder and prints the plan table."""
    folder = RunFolder(run_dir)
    claim_job_folder(folder, Kind.PLAN)
    write_hydra_files(cfg, folder)
    run = run_config(cfg)
    folder.write_text("config.yaml", config_yaml(run))
    save_plan(run, folder)
    folder.unlock()
    print(f"plan saved: {folder.path / 'init_plan.json'}")


def main(argv: list[str]) -> None:
    run_hydra(argv, plan_in, check=False, kind=Kind.PLAN)
