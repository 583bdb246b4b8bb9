"""One run from start to end: claim the folder, record `metrics.json`, set up, fit, save, finish.

`run_training(run, folder)` is the pure job: a checked run config in, metrics out, run folder written. The
command line and the Python API only add their front doors around it. Steps that belong to layers above
(the init health report of `trainer.diagnose`) come in as hooks, called after set-up and before the fit.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from modelforge.core.config import RunConfig
from modelforge.core.initplan import Plan, format_table, make_plan
from modelforge.core.metrics import lower_is_better
from modelforge.core.names import Status
from modelforge.errors import ConfigError, RunFailed
from modelforge.run.folder import RunFolder, versions
from modelforge.run.setup import Session, prepare

# A step run after set-up and before the fit; what it returns is added to metrics.json.
Hook = Callable[[Session, RunFolder], Mapping[str, Any]]


def config_yaml(run: RunConfig) -> str:
    """The resolved config as YAML, for config.yaml (OmegaConf's layout, as Hydra's own files)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(dict(run.resolved)))


SUMMARY_WIDTH = 120


def _summary_text(model: Any) -> str:
    """Keras' summary with every column.

    Keras draws it with rich, whose console is as wide as $COLUMNS (80 when unset): any wider table is cut at
    the right, "Param #" first. The console gets the table's own width while the summary is drawn.
    """
    lines: list[str] = []
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(SUMMARY_WIDTH)
    try:
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=SUMMARY_WIDTH)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(lines) + "\n"


def _best(history: Mapping[str, list[float]], objective: str) -> dict[str, Any]:
    values = history.get(objective)
    if not values:
        return {}
    pick = min if lower_is_better(objective) else max
    value = pick(values)
    return {"metric": objective, "value": value, "epoch": values.index(value) + 1}


def record_failure(folder: RunFolder, error: Exception) -> None:
    """Records a run refused before it started (bad input) as `failed` with the reason, unless the folder
    already holds a run's record."""
    if not (folder.path / "metrics.json").exists():
        folder.write_json("metrics.json", {"status": Status.FAILED, "error": str(error),
                                           "run_dir": str(folder.path.resolve()), "versions": versions()})


def run_training(run: RunConfig, folder: RunFolder, hooks: Sequence[Hook] = ()) -> dict[str, Any]:
    """Trains the run's model and writes its run folder.

    Args:
        run: the checked run config.
        folder: the run folder (the command line passes Hydra's).
        hooks: steps between set-up and fit (see `Hook`).

    Returns:
        The contents of `metrics.json`.

    Raises:
        ConfigError: bad input; `metrics.json` then says `failed` with the reason.
        RunFailed: training diverged (NaN loss).
    """
    from modelforge.run.tracking import require_packages

    started = time.perf_counter()
    require_packages(run)
    try:
        folder.claim()
    except FileExistsError as err:
        raise ConfigError(str(err)) from None
    record: dict[str, Any] = {"status": Status.RUNNING, "started_at": datetime.now().isoformat(timespec="seconds"),
                              "run_dir": str(folder.path.resolve()), "versions": versions()}
    folder.write_json("metrics.json", record)
    folder.write_text("config.yaml", config_yaml(run))
    timings: dict[str, float] = {}
    trackers: list[Any] = []  # filled by _train once the config is known to be good

    def finish(status: Status, error: str | None) -> dict[str, Any]:
        timings["total_s"] = time.perf_counter() - started
        record.update(status=status, error=error, timings={k: round(v, 4) for k, v in timings.items()},
                      finished_at=datetime.now().isoformat(timespec="seconds"))
        folder.write_json("metrics.json", record)
        for tracker in trackers:
            tracker.finish(record)
        return record

    try:
        record.update(_train(run, folder, timings, trackers, hooks))
    except KeyboardInterrupt:
        finish(Status.INTERRUPTED, "interrupted by the user (Ctrl-C)")
        raise
    except (ConfigError, RunFailed) as err:
        finish(Status.FAILED, str(err))
        raise
    except Exception as err:
        finish(Status.FAILED, f"{type(err).__name__}: {err}")
        raise
    return finish(Status.COMPLETED, None)


def save_plan(run: RunConfig, folder: RunFolder) -> Plan:
    """Works out the plan, writes init_plan.json and prints the table."""
    plan = make_plan(run)
    folder.write_json("init_plan.json", plan.as_json())
    print(format_table(plan), flush=True)
    return plan


def _train(run: RunConfig, folder: RunFolder, timings: dict[str, float], trackers: list[Any],
           hooks: Sequence[Hook]) -> dict[str, Any]:
    from modelforge.run.fit import fit_model
    from modelforge.run.tracking import make_tracker

    tick = time.perf_counter()
    plan = save_plan(run, folder)
    timings["plan_s"] = time.perf_counter() - tick
    session = prepare(run, plan)
    tracker = make_tracker(run, folder)
    if tracker is not None:
        trackers.append(tracker)
    folder.write_text("model_summary.txt", _summary_text(session.model))
    extra: dict[str, Any] = {"diagnosis": None}
    for hook in hooks:
        extra.update(hook(session, folder))
    timings.update(session.timings)

    tick = time.perf_counter()
    history = fit_model(session.model, session.dataset, run, folder, tracker)
    timings["fit_s"] = time.perf_counter() - tick

    final = {k: float(v[-1]) for k, v in history.items()}
    epochs_run = len(history.get("loss", []))
    if any(math.isnan(v) or math.isinf(v) for v in final.values()):
        raise RunFailed(f"the loss became NaN or infinite at epoch {epochs_run}; lower optimizer.learning_rate "
                        "or choose a smaller initializer scale")
    objective = run.objective
    tick = time.perf_counter()
    folder.write_with("model.keras", lambda path: session.model.save(path))
    timings["save_s"] = time.perf_counter() - tick
    return {
        "objective": {"name": objective, "value": final[objective]},
        "final": final,
        "best": _best(history, objective),
        "epochs_run": epochs_run,
        "samples": {"train": len(session.dataset.x_train), "validation": len(session.dataset.x_val)},
        **extra,
    }
