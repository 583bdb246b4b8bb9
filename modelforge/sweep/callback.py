"""The Hydra callback around a multirun: it records the planned jobs when the sweep starts, prepares shared
stores (MLflow) before any worker runs, and writes the summaries when it ends (or is stopped)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from modelforge.analysis.summary import PLANNED, collect, summarize
from modelforge.core.config.metrics import objective_for, objective_text
from modelforge.core.names import Status
from modelforge.errors import ConfigError
from modelforge.run.folder import RunFolder, writable
from modelforge.run.tracking import quiet_libraries
from modelforge.sweep.jobdirs import REFUSED, refused_jobs

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


def check_direction(config: Any) -> None:
    """Refuses a sweeper told to optimize the objective the wrong way (the summaries' "best" would disagree)."""
    from modelforge.front_door import direction

    given = config.hydra.sweeper.get("direction")
    if not isinstance(given, str):
        return  # the basic sweeper has none; a list is a multi-objective study, modelforge's objective is one
    wanted = direction(config.trainer.objective, config.data)
    if given != wanted:
        task = config.data.get("task", "classification")
        objective = objective_for(config.trainer.objective, task)
        print(f"modelforge: error: hydra.sweeper.direction={given}, but the objective {objective} is to "
              f"{wanted[:-1]}e: the sweeper would call the worst trial best. Leave hydra.sweeper.direction out "
              "(it follows from trainer.objective), or choose another trainer.objective", file=sys.stderr)
        sys.exit(2)


def write_summaries(root: Path, interrupted: bool = False, refused: Sequence[Sequence[str]] = ()) -> None:
    """summary.csv, summary.md and curves.png for the sweep; the sweep fails (exit 1) when a job did not
    complete, or did not run because its folder held another run (`refused`).

    `interrupted`: a signal stopped the sweep; the caller exits with the signal's status.
    """
    try:
        summary = summarize(root)
    except FileNotFoundError:
        return
    table = (root / "summary.md").read_text(encoding="utf-8").split("\n", 2)[-1].strip()
    print(f"\n{table}\n\nsweep summary: {root / 'summary.md'} (and summary.html)\ncurves: {root / 'curves.png'}")
    if interrupted:
        return
    if refused:
        print(f"modelforge: error: {len(refused)} jobs of this sweep did not run, because their folders in {root} "
              f"hold other runs (e.g. {' '.join(refused[0])}); the summaries show the runs those folders hold. "
              "Choose another hydra.sweep.dir, or `python -m modelforge resume` the sweep that is there",
              file=sys.stderr)
    if summary.failed:
        print(f"modelforge: error: {len(summary.failed)} of {len(summary.jobs)} jobs did not complete; "
              f"see {root / 'summary.md'}", file=sys.stderr)
    if refused or summary.failed:
        sys.exit(1)


# Launchers whose jobs print where the terminal cannot see (submitit's job logs, Ray's workers).
_REMOTE_LAUNCHERS = ("submitit", "ray")


class JobWatcher(threading.Thread):
    """Says on the terminal when each job of the sweep starts and ends, from the job folders' metrics.json.

    For launchers whose jobs print elsewhere (submitit writes their output to its own log files).
    """

    def __init__(self, root: Path, total: int | None, every: float = 2.0) -> None:
        super().__init__(daemon=True, name="modelforge-job-watcher")
        self.root, self.total, self.every = root, total, every
        self.stopped = threading.Event()
        self.seen: dict[Path, str] = {}

    def poll(self) -> None:
        for path in sorted(self.root.rglob("metrics.json")):
            folder = RunFolder(path.parent)
            record = folder.record()
            status = str(record.get("status"))
            if self.seen.get(path.parent) == status:
                continue
            self.seen[path.parent] = status
            done = sum(s != Status.RUNNING for s in self.seen.values())
            objective = record.get("objective") or {}
            result = objective_text(objective, record.get("epochs_run")) if objective.get("value") is not None else ""
            where = f"[{done}/{self.total or '?'}]" if status != Status.RUNNING else "[started]"
            print(f"{where} {folder.job_name()} {status} {result}".rstrip(), flush=True)

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.poll()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.poll()


# Watchers by sweep folder. Not kept on the callback: launchers pickle Hydra's callbacks to their workers
# (submitit, Ray), and a thread cannot be pickled.
_WATCHERS: dict[Path, JobWatcher] = {}


def _check_writable(path: str, key: str) -> None:
    """An output folder that cannot be written ends the command with exit 2 before Hydra makes any job folder."""
    try:
        writable(path, key)
    except ConfigError as err:
        print(f"modelforge: error: {err}", file=sys.stderr)
        sys.exit(2)


class SweepSummary(Callback):
    """Records the sweep's plan at its start; summarizes the sweep folder when it ends."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _check_writable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        quiet_libraries(optuna="optuna" in str(config.hydra.sweeper.get("_target_", "")))
        check_direction(config)
        _check_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
        root = RunFolder(config.hydra.sweep.dir)
        record = root.read_json(PLANNED) if (root.path / PLANNED).exists() else None
        if record is None:  # a re-launched sweep keeps the plan it started with
            try:
                jobs = planned_jobs(config)
            except Exception as err:  # the sweep itself will report a bad sweep override
                log.debug("cannot list the sweep's jobs: %s", err)
                jobs = None
            record = {"task_overrides": list(config.hydra.overrides.task),
                      "hydra_overrides": list(config.hydra.overrides.hydra), "jobs": jobs,
                      "launcher": str(config.hydra.launcher.get("_target_", ""))}
        record["launched_at"] = time.time()  # for the jobs' estimate of the time left
        record[REFUSED] = []  # this launch's refusals (`record_refused`)
        root.write_json(PLANNED, record)
        if any(name in str(config.hydra.launcher.get("_target_", "")) for name in _REMOTE_LAUNCHERS):
            watcher = _WATCHERS[root.path] = JobWatcher(root.path, len(record.get("jobs") or []) or None)
            watcher.start()
        if config.get("logger", {}).get("name") == "mlflow":
            from modelforge.run.tracking import start_sweep_run

            start_sweep_run(config.logger.get("tracking_uri"), config.logger.get("experiment_name"),
                            config.logger.get("artifact_location"), Path(config.hydra.sweep.dir).name)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        watcher = _WATCHERS.pop(root, None)
        if watcher is not None:
            watcher.stop()
        if config.get("logger", {}).get("name") == "mlflow":
            from modelforge.run.tracking import end_sweep_run

            end_sweep_run(failed=any(job.status != Status.COMPLETED for job in collect(root)))
        write_summaries(root, refused=refused_jobs(root))
