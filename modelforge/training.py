"""Compile, fit and record one run. TensorFlow is imported here, inside the functions, never at import.

`run_training(cfg)` is the pure job: config in, metrics out, run folder written. The Hydra entry in
`__main__` only adds the CLI around it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from modelforge import data as data_mod
from modelforge.errors import ConfigError, RunFailed, invalid, positive_int
from modelforge.initplan import Plan, format_table, make_plan, run_seed
from modelforge.registry import get_optimizer_class
from modelforge.runlog import RunFolder, default_run_dir, lower_is_better, versions
from modelforge.specs import to_plain

LOGGERS = ("csv", "tensorboard", "mlflow")
VERBOSITY = ("auto", 0, 1, 2)


def check_training(cfg: Mapping[str, Any]) -> None:
    """Checks the trainer, optimizer and logger configs; raises `ConfigError` naming the bad key."""
    trainer = to_plain(cfg["trainer"])
    positive_int(trainer.get("epochs"), "trainer.epochs")
    positive_int(trainer.get("batch_size"), "trainer.batch_size")
    if trainer.get("verbose", "auto") not in VERBOSITY:
        raise invalid("trainer.verbose", trainer.get("verbose"), VERBOSITY)
    stopping = trainer.get("early_stopping") or {}
    if stopping.get("enabled"):
        positive_int(stopping.get("patience"), "trainer.early_stopping.patience")
    optimizer = to_plain(cfg["optimizer"])
    get_optimizer_class(optimizer.get("name"))
    rate = optimizer.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ConfigError(f"optimizer.learning_rate={rate!r} must be a positive number, e.g. 0.001")
    logger = to_plain(cfg["logger"]).get("name")
    if logger not in LOGGERS:
        raise invalid("logger", logger, LOGGERS)
    if logger == "tensorboard":
        _require("tensorboard", "logger=tensorboard", "modelforge[tensorboard]")
    if logger == "mlflow":
        _require("mlflow", "logger=mlflow", "modelforge[mlflow]")


def objective_name(cfg: Mapping[str, Any], task: str) -> str:
    """The metric the entry point returns to sweepers."""
    name = cfg["trainer"].get("objective", "auto")
    if name == "auto":
        return "val_accuracy" if task == "classification" else "val_loss"
    return name


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy and the backend; with `deterministic`, asks TensorFlow for deterministic ops."""
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def compile_model(model: Any, cfg: Mapping[str, Any], task: str) -> None:
    """Compiles with the configured optimizer and the loss and metrics the task calls for."""
    import keras

    params = {k: v for k, v in to_plain(cfg["optimizer"]).items() if k != "name"}
    cls = getattr(keras.optimizers, get_optimizer_class(cfg["optimizer"]["name"]))
    try:
        optimizer = cls(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer={cfg['optimizer']['name']} rejects {params}: {err}") from None
    if task == "classification":
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])


def _history_writer(folder: RunFolder) -> Any:
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        """Rewrites history.csv after every epoch, so an interrupted run keeps what it learned."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict[str, Any]] = []

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
            folder.write_csv("history.csv", self.rows)

    return HistoryWriter()


def make_callbacks(cfg: Mapping[str, Any], folder: RunFolder, tracker: Any = None) -> list[Any]:
    """History writer, NaN guard, and the optional early stopping, TensorBoard and MLflow callbacks."""
    import keras

    callbacks = [_history_writer(folder), keras.callbacks.TerminateOnNaN()]
    if tracker is not None:
        callbacks.append(tracker.callback())
    stopping = to_plain(cfg["trainer"]).get("early_stopping") or {}
    if stopping.get("enabled"):
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=stopping.get("monitor", "val_loss"),
            patience=stopping["patience"],
            min_delta=stopping.get("min_delta", 0.0),
            restore_best_weights=stopping.get("restore_best_weights", True),
        ))
    logger = to_plain(cfg["logger"])
    if logger["name"] == "tensorboard":
        from modelforge.tracking import write_tensorboard_hparams

        log_dir = folder.path / logger.get("log_dir", "tensorboard")
        write_tensorboard_hparams(log_dir, cfg, folder.path.name)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir),
                                                     histogram_freq=logger.get("histogram_freq", 0)))
    return callbacks


def _require(module: str, feature: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{feature} needs the {module} package, which is not installed; "
                          f"install it with: pip install '{extra}'")


def fit_model(model: Any, dataset: data_mod.Dataset, cfg: Mapping[str, Any], folder: RunFolder,
              tracker: Any = None) -> dict[str, list]:
    """Fits with the trainer settings and modelforge's callbacks; returns Keras' history dict."""
    from modelforge.batches import train_batches

    trainer = to_plain(cfg["trainer"])
    batches = train_batches(dataset.x_train, dataset.y_train, trainer["batch_size"], run_seed(cfg),
                            trainer.get("shuffle", True))
    return model.fit(
        batches, shuffle=False, validation_data=(dataset.x_val, dataset.y_val),
        validation_batch_size=trainer["batch_size"],
        epochs=trainer["epochs"], verbose=trainer.get("verbose", "auto"),
        callbacks=make_callbacks(cfg, folder, tracker),
    ).history


def _summary_text(model: Any) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"


def _best(history: Mapping[str, list[float]], objective: str) -> dict[str, Any]:
    values = history.get(objective)
    if not values:
        return {}
    pick = min if lower_is_better(objective) else max
    value = pick(values)
    return {"metric": objective, "value": value, "epoch": values.index(value) + 1}


def _config_yaml(cfg: Any) -> str:
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException:  # an unresolvable interpolation is itself worth keeping on record
        return OmegaConf.to_yaml(cfg, resolve=False)


def prepare(cfg: Any, folder: RunFolder, timings: dict[str, float] | None = None) -> tuple[Plan, Any, Any]:
    """Checks the config, saves and prints the plan, seeds, loads the data, builds and compiles the model."""
    timings = {} if timings is None else timings
    tick = time.perf_counter()
    check_training(cfg)
    plan = make_plan(cfg)
    folder.write_json("init_plan.json", plan.as_json())
    print(format_table(plan), flush=True)
    timings["plan_s"] = time.perf_counter() - tick

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tick = time.perf_counter()
    from modelforge.builder import build

    seed = run_seed(cfg)
    import keras

    # A fresh session per job: sweeps run jobs one after another in one process (and loky reuses workers).
    # free_memory=False skips a full gc.collect() that costs ~0.2 s a job; Python's own gc still runs.
    keras.backend.clear_session(free_memory=False)
    seed_everything(seed, bool(cfg["trainer"].get("deterministic", True)))
    dataset = data_mod.load(to_plain(cfg["data"]), plan.info, seed)
    timings["import_and_data_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model = build(plan)
    compile_model(model, cfg, plan.info.task)
    timings["build_s"] = time.perf_counter() - tick
    return plan, dataset, model


def run_training(cfg: Any, run_dir: str | Path | None = None, folder: RunFolder | None = None) -> dict[str, Any]:
    """Trains the config's model and writes its run folder.

    Args:
        cfg: a composed config.
        run_dir: the run folder; a new one under `outputs/` when None.
        folder: an already open `RunFolder` (the CLI passes Hydra's).

    Returns:
        The contents of `metrics.json`.

    Raises:
        ConfigError: bad input; `metrics.json` then says `failed` with the reason.
        RunFailed: training diverged (NaN loss).
    """
    started = time.perf_counter()
    folder = folder or RunFolder(run_dir or default_run_dir())
    try:
        folder.claim()
    except FileExistsError as err:
        raise ConfigError(str(err)) from None
    record: dict[str, Any] = {"status": "running", "started_at": datetime.now().isoformat(timespec="seconds"),
                              "run_dir": str(folder.path.resolve()), "versions": versions()}
    folder.write_json("metrics.json", record)
    folder.write_text("config.yaml", _config_yaml(cfg))
    timings: dict[str, float] = {}
    trackers: list[Any] = []  # filled by _train once the config is known to be good

    def finish(status: str, error: str | None) -> dict[str, Any]:
        timings["total_s"] = time.perf_counter() - started
        record.update(status=status, error=error, timings={k: round(v, 4) for k, v in timings.items()},
                      finished_at=datetime.now().isoformat(timespec="seconds"))
        folder.write_json("metrics.json", record)
        for tracker in trackers:
            tracker.finish(record)
        return record

    try:
        record.update(_train(cfg, folder, timings, trackers))
    except KeyboardInterrupt:
        finish("interrupted", "interrupted by the user (Ctrl-C)")
        raise
    except (ConfigError, RunFailed) as err:
        finish("failed", str(err))
        raise
    except Exception as err:
        finish("failed", f"{type(err).__name__}: {err}")
        raise
    return finish("completed", None)


def _train(cfg: Any, folder: RunFolder, timings: dict[str, float], trackers: list[Any]) -> dict[str, Any]:
    from modelforge.tracking import make_tracker

    plan, dataset, model = prepare(cfg, folder, timings)
    tracker = make_tracker(cfg, folder)
    if tracker is not None:
        trackers.append(tracker)
    folder.write_text("model_summary.txt", _summary_text(model))
    diagnosis = None
    if cfg["trainer"].get("diagnose", False):
        from modelforge.diagnose import format_report, run_diagnosis

        tick = time.perf_counter()
        report = run_diagnosis(model, plan, dataset, folder)
        print(format_report(report), flush=True)
        diagnosis = report["verdict"]
        timings["diagnose_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    history = fit_model(model, dataset, cfg, folder, tracker)
    timings["fit_s"] = time.perf_counter() - tick

    final = {k: float(v[-1]) for k, v in history.items()}
    epochs_run = len(history.get("loss", []))
    if any(math.isnan(v) or math.isinf(v) for v in final.values()):
        raise RunFailed(f"the loss became NaN or infinite at epoch {epochs_run}; lower optimizer.learning_rate "
                        "or choose a smaller initializer scale")
    objective = objective_name(cfg, plan.info.task)
    if objective not in final:
        raise ConfigError(f"trainer.objective={objective!r} is not a metric of this run; valid: {', '.join(final)}")
    tick = time.perf_counter()
    folder.write_with("model.keras", lambda path: model.save(path))
    timings["save_s"] = time.perf_counter() - tick
    return {
        "objective": {"name": objective, "value": final[objective]},
        "final": final,
        "best": _best(history, objective),
        "epochs_run": epochs_run,
        "samples": {"train": len(dataset.x_train), "validation": len(dataset.x_val)},
        "diagnosis": diagnosis,
    }
