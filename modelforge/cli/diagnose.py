"""`python -m modelforge diagnose [overrides]`: the init health report of a freshly built model, no training."""

from __future__ import annotations

from pathlib import Path

from modelforge.analysis.diagnose import diagnose_session
from modelforge.cli.app import run_hydra
from modelforge.core.config import RunConfig
from modelforge.run.folder import RunFolder
from modelforge.run.lifecycle import save_plan
from modelforge.run.setup import prepare


def diagnose_in(run: RunConfig, run_dir: Path) -> None:
    """Plans, builds and probes the model; writes init_plan.json, init_report.json and init_report.png."""
    folder = RunFolder(run_dir)
    session = prepare(run, save_plan(run, folder))
    diagnose_session(session, folder)
    print(f"report saved: {folder.path / 'init_report.json'} and init_report.png")


def main(argv: list[str]) -> None:
    run_hydra(argv, diagnose_in)
