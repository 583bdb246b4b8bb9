"""`python -m modelforge diagnose [overrides]`: the init health report of a freshly built model, no training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.analysis.diagnose import diagnose_session
from modelforge.api import run_config
from modelforge.cli.app import claim_job_folder, run_hydra, write_hydra_files
from modelforge.run.folder import RunFolder
from modelforge.run.lifecycle import record_measured, save_plan
from modelforge.run.owned import Kind
from modelforge.run.setup import prepare


def diagnose_in(cfg: Any, run_dir: Path) -> None:
    """Plans, builds and probes the model; writes init_plan.json, init_report.json and init_report.png."""
    folder = RunFolder(run_dir)
    claim_job_folder(folder, Kind.DIAGNOSE)
    write_hydra_files(cfg, folder)
    run = run_config(cfg)
    session = prepare(run, save_plan(run, folder))
    record_measured(session.plan, folder)
    diagnose_session(session, folder)
    folder.unlock()
    print(f"report saved: {folder.path / 'init_report.json'} and init_report.png")


def main(argv: list[str]) -> None:
    run_hydra(argv, diagnose_in, check=False, kind=Kind.DIAGNOSE)
