"""Experiment trackers beyond history.csv: MLflow runs, and TensorBoard's HParams view.

`logger=mlflow` logs the flattened resolved config as params, every epoch's metrics, and the init plan,
config, history, metrics and model as artifacts, into an SQLite store (`outputs/mlflow.db` by default, an
absolute path, so `mlflow ui --backend-store-uri sqlite:////ABS/PATH/outputs/mlflow.db` opens it). The
jobs of a sweep are runs of one experiment. `logger=tensorboard` adds each run's hyperparameters to its
event files, so TensorBoard's HParams tab compares the runs of a folder.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelforge.core.config.schema import MlflowLogger, RunConfig
from modelforge.core.names import Status
from modelforge.run.folder import RunFolder

_STATUS = {Status.COMPLETED: "FINISHED", Status.FAILED: "FAILED", Status.INTERRUPTED: "KILLED"}
_ARTIFACTS = ("config.yaml", "init_plan.json", "history.csv", "model_summary.txt", "model.keras",
              "init_report.json", "init_report.png", "metrics.json")


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """The resolved config as dotted keys with scalar values (lists and nulls as text).

    Example:
        >>> flatten({"model": {"depth": 2, "layers": None}, "seed": 0})
        {'model.depth': 2, 'model.layers': 'None', 'seed': 0}
    """
    found: dict[str, bool | int | float | str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            found[name] = value
        else:
            found[name] = str(value)
    return found


def default_tracking_uri() -> str:
    """sqlite:///<absolute path of ./outputs>/mlflow.db: MLflow 3 resolves a relative one against the cwd."""
    outputs = Path("outputs").resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{outputs / 'mlflow.db'}"


# The sweep's MLflow run, the parent of its jobs' runs: set by the sweep callback before any job starts, and
# inherited by launcher workers with the environment.
PARENT_ENV = "MODELFORGE_MLFLOW_PARENT"


def start_sweep_run(tracking_uri: str | None, experiment_name: str, artifact_location: str | None,
                    name: str) -> str:
    """Creates the sweep's parent run and names it in the environment for the jobs; returns its id."""
    import mlflow

    experiment_id = prepare_store(tracking_uri, experiment_name, artifact_location)
    run = mlflow.MlflowClient().create_run(experiment_id, run_name=name, tags={"modelforge.sweep": name})
    os.environ[PARENT_ENV] = run.info.run_id
    return str(run.info.run_id)


def end_sweep_run(failed: bool) -> None:
    """Closes the sweep's parent run."""
    run_id = os.environ.pop(PARENT_ENV, None)
    if run_id:
        import mlflow

        mlflow.MlflowClient().set_terminated(run_id, status="FAILED" if failed else "FINISHED")


def prepare_store(tracking_uri: str | None, experiment_name: str, artifact_location: str | None) -> str:
    """Creates the MLflow store and the experiment if they are not there yet; returns the experiment's id.

    A sweep calls it once before its workers start. MLflow creates an SQLite store's schema on first use, and
    two processes doing that at once race (`table ... already exists`); so do two creating one experiment.
    Each step is retried a few times, which lets two sweeps started together both get through.
    """
    import random
    import time

    import mlflow

    quiet_libraries()  # after the import: MLflow sets its logger's level to INFO when it is first imported
    mlflow.set_tracking_uri(tracking_uri or default_tracking_uri())
    attempts = 6
    for attempt in range(attempts):
        try:
            experiment = mlflow.get_experiment_by_name(experiment_name)
            if experiment is not None:
                return str(experiment.experiment_id)
            artifacts = Path(artifact_location or Path("outputs", "mlartifacts")).resolve()
            return str(mlflow.create_experiment(experiment_name, artifact_location=artifacts.as_uri()))
        except Exception:  # sqlalchemy's OperationalError/IntegrityError, MlflowException: all mean "raced"
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    raise AssertionError("unreachable")


class MlflowTracker:
    """One MLflow run for one modelforge run."""

    def __init__(self, run: RunConfig, logger: MlflowLogger, folder: RunFolder) -> None:
        import mlflow

        self.mlflow = mlflow
        self.folder = folder
        experiment_id = prepare_store(logger.tracking_uri, logger.experiment_name, logger.artifact_location)
        if mlflow.active_run() is not None:  # a previous job in this process that died mid-run
            mlflow.end_run(status="KILLED")
        tags = {"modelforge.run_dir": str(folder.path.resolve())}
        parent = os.environ.get(PARENT_ENV)
        if parent:  # a job of a sweep: a nested run under the sweep's own
            tags["mlflow.parentRunId"] = parent
        self.run = mlflow.start_run(experiment_id=experiment_id, run_name=logger.run_name or folder.job_name(),
                                    tags=tags)
        mlflow.log_params(flatten(run.resolved))

    def callback(self) -> Any:
        import keras

        mlflow = self.mlflow

        class EpochMetrics(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

        return EpochMetrics()

    def finish(self, record: Mapping[str, Any]) -> None:
        """Logs the final metrics and the run folder's files, and closes the run with the run's status."""
        mlflow = self.mlflow
        for name, value in (record.get("final") or {}).items():
            mlflow.log_metric(f"final_{name}", value)
        objective = record.get("objective") or {}
        if objective.get("value") is not None:  # the saved model's number, under its own name
            mlflow.log_metric(f"objective_{objective['name']}", objective["value"])
            mlflow.log_metric("objective_epoch", objective.get("epoch") or record.get("epochs_run") or 0)
        for name in _ARTIFACTS:
            path = self.folder.path / name
            if path.exists():
                mlflow.log_artifact(str(path))
        mlflow.end_run(status=_STATUS.get(Status(record["status"]), "FAILED"))


def write_tensorboard_hparams(log_dir: Path, run: RunConfig, run_name: str) -> None:
    """Writes the run's hyperparameters where TensorBoard's HParams plugin finds them."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    log_dir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams(flatten(run.resolved), trial_id=run_name)
    writer.close()  # on disk now: the command line's process ends without the interpreter's teardown


# The package each logger needs beyond the core dependencies, and the extra that installs it.
_NEEDS = {"tensorboard": ("tensorboard", "modelforge[tensorboard]"), "mlflow": ("mlflow", "modelforge[mlflow]")}


def require_packages(run: RunConfig) -> None:
    """Refuses, before anything runs, a logger whose package is not installed; says what installs it."""
    import importlib.util

    from modelforge.errors import ConfigError

    if run.logger.name in _NEEDS:
        module, extra = _NEEDS[run.logger.name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"logger={run.logger.name} needs the {module} package, which is not installed; "
                              f"install it with: pip install '{extra}'")


def make_tracker(run: RunConfig, folder: RunFolder) -> MlflowTracker | None:
    """The tracker for `logger=mlflow`, else None (csv and tensorboard need none)."""
    if not isinstance(run.logger, MlflowLogger):
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    return MlflowTracker(run, run.logger, folder)  # its store quiets MLflow's loggers once MLflow is imported


# Libraries whose INFO lines (a new store's table creation, a study's start) are not the user's business; their
# warnings and errors still show. MODELFORGE_TF_LOGS=1 or hydra.verbose keeps them all.
CHATTY = ("mlflow", "alembic", "optuna")


def quiet_libraries(optuna: bool = False) -> None:
    """Raises MLflow's, Alembic's and Optuna's loggers to WARNING, unless the user asked for every log.

    Optuna and MLflow set their own loggers' levels when they are first imported: with `optuna` Optuna is imported
    here and told; MLflow's store calls this again once it has imported MLflow (`prepare_store`).
    """
    import logging

    from modelforge.system.quiet import wanted

    if not wanted([]) or logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if optuna and importlib.util.find_spec("optuna") is not None:
        import optuna as library

        library.logging.set_verbosity(library.logging.WARNING)
