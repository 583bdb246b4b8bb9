"""The Hydra callback around a multirun: it records the planned jobs when the sweep starts, prepares shared
stores (MLflow) before any worker runs, and writes the summaries when it ends (or is stopped)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from modelforge.analysis.summary import PLANNED, summarize
from modelforge.run.folder import RunFolder

log = logging.getLogger("modelforge")


def planned_jobs(config: Any) -> list[list[str]] | None:
    """Every job's overrides, as Hydra's basic sweeper will launch them; None for other sweepers."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides([*params, *config.hydra.overrides.task])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def write_summaries(root: Path, interrupted: bool = False) -> None:
    """summary.csv, summary.md and curves.png for the sweep; a sweep with a job that did not complete fails."""
    try:
        summary = summarize(root)
    except FileNotFoundError:
        return
    print(f"sweep summary: {root / 'summary.md'}")
    if interrupted:
        return  # the caller exits with the signal's status
    if summary.failed:
        print(f"modelforge: error: {len(summary.failed)} of {len(summary.jobs)} jobs did not complete; "
              f"see {root / 'summary.md'}", file=sys.stderr)
        sys.exit(1)


class SweepSummary(Callback):
    """Records the sweep's plan at its start; summarizes the sweep folder when it ends."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        root = RunFolder(config.hydra.sweep.dir)
        if not (root.path / PLANNED).exists():  # a re-launched sweep keeps the plan it started with
            try:
                jobs = planned_jobs(config)
            except Exception as err:  # the sweep itself will report a bad sweep override
                log.debug("cannot list the sweep's jobs: %s", err)
                jobs = None
            root.write_json(PLANNED, {"task_overrides": list(config.hydra.overrides.task),
                                      "hydra_overrides": list(config.hydra.overrides.hydra), "jobs": jobs})
        if config.get("logger", {}).get("name") == "mlflow":
            from modelforge.run.tracking import prepare_store

            prepare_store(config.logger.get("tracking_uri"), config.logger.get("experiment_name"),
                          config.logger.get("artifact_location"))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        write_summaries(Path(config.hydra.sweep.dir))
