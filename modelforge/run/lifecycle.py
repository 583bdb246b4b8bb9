"""One run from start to end: lock the folder, record `metrics.json`, set up, fit with checkpoints, save, finish.

`run_training(run, folder)` is the pure job: a checked run config in, metrics out, run folder written. The
command line and the Python API only add their front doors around it. Steps that belong to layers above
(the init health report of `trainer.diagnose`) come in as hooks, called after set-up and before the fit.

A folder holds one run. It is locked while the run lives; `metrics.json` records pid, host and a heartbeat
every epoch. A completed or live run's folder is refused; an unfinished one (dead, or interrupted by a signal)
is continued only by `resume=True`, from its checkpoint, to the same end as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelforge.core import lsuv
from modelforge.core.config import digest
from modelforge.core.config.metrics import lower_is_better
from modelforge.core.config.schema import RunConfig
from modelforge.core.init.memory import estimate
from modelforge.core.init.plan import Plan, format_table, plan_digest, plan_line
from modelforge.core.names import Status, counted
from modelforge.errors import ConfigError, RunFailed, RunInterrupted
from modelforge.run import checkpoint
from modelforge.run.checkpoint import Progress
from modelforge.run.console import Place, log, run_log, say
from modelforge.run.folder import FolderState, FolderTaken, RunFolder, identity, now, versions
from modelforge.run.owned import Kind, check_ours, mark
from modelforge.run.setup import Session, plan_for, prepare
from modelforge.system.signals import handled

if TYPE_CHECKING:
    from modelforge.run.fit import StopSignal


class TrainResult(dict[str, Any]):
    """What a training run returns: `metrics.json`'s contents (it is that dict), and what Python users want.

    Attributes:
        model: the trained `keras.Model`.
        history: Keras' form of history.csv: metric name -> one value per epoch.
        run_dir: the run folder.
    """

    def __init__(self, record: Mapping[str, Any], model: Any, history: Mapping[str, list[float]],
                 run_dir: Path) -> None:
        super().__init__(record)
        self.model, self.history, self.run_dir = model, dict(history), run_dir

    @property
    def metrics(self) -> dict[str, Any]:
        """The contents of metrics.json, as a plain dict."""
        return dict(self)


# A step run after set-up and before the fit; what it returns is added to metrics.json.
Hook = Callable[[Session, RunFolder], Mapping[str, Any]]


class Trained(Protocol):
    """A run trained elsewhere, handed to this run to be written (an arm of a fused group,
    `modelforge.fused.handoff.Arm`): its set-up session, what metrics.json says of where it trained, and its
    epochs, played through the run's callbacks instead of a fit."""

    session: Any
    fused: dict[str, Any]

    def play(self, model: Any, callbacks: list[Any], epochs: int) -> None: ...


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


def _best(rows: Sequence[Mapping[str, Any]], objective: str) -> dict[str, Any]:
    values = [row[objective] for row in rows if objective in row]
    if not values:
        return {}
    pick = min if lower_is_better(objective) else max
    value = pick(values)
    return {"metric": objective, "value": value, "epoch": values.index(value) + 1}


def saved_epoch(run: RunConfig, progress: Progress) -> int:
    """The epoch (1-based) whose weights model.keras holds: the best one early stopping restored, else the last.

    Keras 3's EarlyStopping with `restore_best_weights` restores the best epoch when training ends, whether it
    stopped early or ran every epoch, once its monitor has been seen.
    """
    es = run.trainer.early_stopping
    best = progress.stopping.get("best_epoch")
    if es.enabled and es.restore_best_weights and best is not None and 0 <= int(best) < len(progress.history):
        return int(best) + 1
    return len(progress.history)


def outcome(run: RunConfig, progress: Progress) -> dict[str, Any]:
    """metrics.json's numbers: `objective` (the saved model's, with its epoch), `final` (the last epoch's) and
    `best` (what early stopping's monitor saw, when it is on; else the objective's best epoch)."""
    rows = progress.history
    final = {k: float(v) for k, v in rows[-1].items() if k != "epoch"} if rows else {}
    epoch = saved_epoch(run, progress)
    saved = rows[epoch - 1] if rows else {}
    objective = {"name": run.objective, "value": float(saved[run.objective]) if run.objective in saved else None,
                 "epoch": epoch}
    es, state = run.trainer.early_stopping, progress.stopping
    if es.enabled and state.get("best_epoch") is not None:
        best = {"metric": es.monitor, "value": state.get("best"), "epoch": int(state["best_epoch"]) + 1}
    else:
        best = _best(rows, run.objective)
    return {"objective": objective, "final": final, "best": best}


# States a run may be continued from: died without a word, stopped by a signal, or lost with its worker.
RESUMABLE = (FolderState.DEAD, FolderState.INTERRUPTED)


def claim(folder: RunFolder, resume: bool = False, kind: Kind = Kind.RUN, key: str = "hydra.run.dir",
          allow: tuple[str, ...] = ()) -> FolderState:
    """Locks the folder for a command of `kind` and returns what it held; refuses what it may not touch. A
    folder it finds empty is recorded as modelforge's, of that kind. `key` chooses another folder, for messages;
    `allow`: what the job's folder may hold before the job starts (Hydra's job log).

    Raises:
        FolderTaken: the folder is not modelforge's or of another kind (`NotOurs`), a live run holds it, or it
            holds a completed run, or (without `resume`) an unfinished or failed one. Nothing in the folder has
            been changed.
    """
    check_ours(folder.path, kind, key, allow)
    if kind == Kind.RUN:
        checkpoint.check_files(folder)
    folder.lock()
    state = folder.claimed
    if state == FolderState.EMPTY:
        mark(folder.path, kind)
    if kind != Kind.RUN:
        return state
    refusal = None
    record = folder.record()
    if state == FolderState.COMPLETED:
        refusal = "a completed run, which is never changed"
    elif state in RESUMABLE or (state == FolderState.FAILED and (record.get("worker_died")
                                                                 or checkpoint.exists(folder))):
        if not resume:
            refusal = (f"an unfinished run ({state}, last seen {record.get('heartbeat', '?')}); continue it with: "
                       f"python -m modelforge resume {folder.path}")
    elif state == FolderState.FAILED:
        refusal = f"a failed run ({record.get('error') or 'no reason recorded'})"
    if refusal:
        folder.unlock()
        raise FolderTaken(f"{folder.path} already holds {refusal}; choose another run folder (hydra.run.dir=...)")
    return state


def record_failure(folder: RunFolder, error: Exception) -> None:
    """Records a run refused before it started (bad input) as `failed` with the reason, unless the folder
    already holds a run's record."""
    if not (folder.path / "metrics.json").exists():
        folder.write_json("metrics.json", {"status": Status.FAILED, "error": str(error),
                                           "run_dir": str(folder.path.resolve()), "versions": versions()})


@contextlib.contextmanager
def stop_on_signals(stop: Any, forward: bool = False) -> Iterator[None]:
    """While the run fits, SIGTERM and SIGINT only mark `stop`; the fit ends at the next batch's end.

    With `forward` (a fused arm's epochs played back, which has no batch to stop at), a signal that arrived is
    raised again once the handlers are back, for the launcher's own handler: the run is finished and written,
    and the launcher stops after it.
    """
    def mark(signum: int, frame: Any) -> None:
        stop.signum = signum

    with handled(mark) as saved:  # off the main thread nothing is set: the launcher's handling applies
        yield
    if forward and saved is not None and stop.signum is not None and callable(saved.get(stop.signum)):
        signal.raise_signal(stop.signum)


# Set by `resume` and by the same sweep command again, for every job of the sweep (in this process, a
# launcher's workers, a requeued chunk): one of modelforge's hand-offs (`core.config.targets.HANDOFFS`).
RESUME_ENV = "MODELFORGE_RESUME"


def sweep_resumed() -> bool:
    """Whether this job belongs to a sweep that `resume` (or the same command again) re-launched: completed jobs
    report their recorded objective, unfinished ones continue from their checkpoints."""
    return os.environ.get(RESUME_ENV) == "1"


def resumed_environment() -> dict[str, str]:
    """What a process sets, or hands to the processes it starts, to say the sweep was re-launched."""
    return {RESUME_ENV: "1"}


class ConfigChanged(FolderTaken):
    """A resume whose config differs from the run's own in a key that can change results."""


def check_same_config(folder: RunFolder, record: Mapping[str, Any], run: RunConfig) -> None:
    """Refuses to continue a run with a config other than the one it started with (nothing in the folder is
    changed); a folder written before runs kept their config's digest resumes with one line saying so.

    Raises:
        ConfigChanged: a result-affecting key changed; each is named with its old and new value.
    """
    if not isinstance(record.get("config"), Mapping):
        say(f"{folder.path} carries no config digest (written by an older modelforge): it resumes with its "
            "config.yaml as it is, unchecked")
        return
    changed = digest.changes(record["config"], run.resolved)
    if changed:
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changed)
        raise ConfigChanged(f"{folder.path} started with another config, and a run continues only with its own "
                          f"({listed}); start a new run for the new config (python -m modelforge ... with "
                          "another hydra.run.dir), or put the old values back to resume this one")


def run_training(run: RunConfig, folder: RunFolder, hooks: Sequence[Hook] = (), resume: bool = False,
                 place: Place | None = None, trained: Trained | None = None) -> TrainResult:
    """Trains the run's model and writes its run folder.

    Args:
        run: the checked run config.
        folder: the run folder (the command line passes Hydra's, already claimed).
        hooks: steps between set-up and fit (see `Hook`).
        resume: continue an unfinished run in the folder from its checkpoint.
        place: where the run sits in a sweep, for what it prints (see `Place`).
        trained: the run's epochs, trained elsewhere (a fused arm): written through this run's callbacks.

    Returns:
        The contents of `metrics.json`, with the trained model and its history (a `TrainResult`).

    Raises:
        ConfigError: bad input; `metrics.json` then says `failed` with the reason.
        FolderTaken: the folder holds another run (nothing changed).
        RunFailed: training diverged (NaN loss).
        RunInterrupted: SIGTERM or SIGINT; `metrics.json` says `interrupted`, the checkpoint is kept.
    """
    from modelforge.run.tracking import require_packages

    started = time.perf_counter()
    require_packages(run)
    state = folder.claimed if folder.locked else claim(folder, resume)
    resuming = state != FolderState.EMPTY
    try:
        record: dict[str, Any] = folder.record() if resuming else {"config": digest.record(run.resolved)}
        if resuming:
            check_same_config(folder, record, run)
        cleaned = folder.clean_temp_files() if resuming else []
        record.update(status=Status.RUNNING, run_dir=str(folder.path.resolve()), versions=versions(),
                      **identity(), heartbeat=now(), error=None, temp_token=folder.token)
        record.setdefault("started_at", now())
        if resuming:
            record.setdefault("resumed", []).append({"at": now(), "from": str(state), "cleaned": cleaned})
            record.pop("worker_died", None)
        folder.write_json("metrics.json", record)
        if not resuming:
            folder.write_text("config.yaml", config_yaml(run))
        with run_log(folder.path, (place or Place()).label) as log:
            log.info("run %s in %s (pid %s on %s)", f"resumed from {state}" if resuming else "started", folder.path,
                     record["pid"], record["host"])
            return _run(run, folder, record, hooks, started, resuming, place or Place(), trained)
    finally:
        folder.unlock()


def _run(run: RunConfig, folder: RunFolder, record: dict[str, Any], hooks: Sequence[Hook], started: float,
         resuming: bool, place: Place, arm: Trained | None) -> TrainResult:
    timings: dict[str, float] = {}
    trained: dict[str, Any] = {}  # the model and the history, once _train has them
    trackers: list[Any] = []  # filled by _train once the config is known to be good

    def finish(status: Status, error: str | None) -> dict[str, Any]:
        timings["total_s"] = time.perf_counter() - started
        record.update(status=status, error=error, timings={k: round(v, 4) for k, v in timings.items()},
                      finished_at=now(), heartbeat=now())
        folder.write_json("metrics.json", record)
        for tracker in trackers:
            tracker.finish(record)
        (log.info if status == Status.COMPLETED else log.error)("run %s%s", status, f": {error}" if error else "")
        return record

    try:
        record.update(_train(run, folder, record, timings, trackers, hooks, resuming, place, trained, arm))
    except RunInterrupted as err:
        finish(Status.INTERRUPTED, str(err))
        raise
    except KeyboardInterrupt:
        finish(Status.INTERRUPTED, "interrupted by the user (Ctrl-C)")
        raise
    except OSError as err:
        if err.errno not in DISK_FULL:
            _failed(finish, trained, resuming, err)
            raise
        written = Path(err.filename).name if err.filename else "its files"
        message = (f"the disk filled while the run wrote {written} in {folder.path} ({err.strerror}); the "
                   "previous checkpoint is kept: free some space, then continue with: "
                   f"python -m modelforge resume {folder.path}")
        with contextlib.suppress(OSError):  # metrics.json may not fit either: the run then reads as dead
            finish(Status.INTERRUPTED, message)
        raise ConfigError(message) from None
    except (ConfigError, RunFailed, Exception) as err:
        _failed(finish, trained, resuming, err)
        raise
    with deferred(trained, arm):
        finish(Status.COMPLETED, None)
    if "signal" in trained:  # it came while the result was written: the run is whole, then the signal is obeyed
        name = signal.Signals(trained["signal"]).name
        raise RunInterrupted(trained["signal"], f"stopped by {name} as the run completed: model.keras and "
                                                f"metrics.json are written ({folder.path})")
    rows = trained["history"]
    names = dict.fromkeys(k for row in rows for k in row if k != "epoch")
    history = {k: [row[k] for row in rows if k in row] for k in names}
    return TrainResult(record, trained["model"], history, folder.path)


# The errors of a write that found the disk (or the user's quota) full.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _failed(finish: Callable[[Status, str | None], Any], trained: Mapping[str, Any], resuming: bool,
            err: Exception) -> None:
    """Records why the run stopped. A resume that could not start stays resumable."""
    reason = str(err) if isinstance(err, (ConfigError, RunFailed)) else f"{type(err).__name__}: {err}"
    if resuming and "fitting" not in trained:
        finish(Status.INTERRUPTED, f"a resume could not start ({reason}); fix that and resume again")
    else:
        finish(Status.FAILED, reason)


def save_plan(run: RunConfig, folder: RunFolder, place: Place | None = None, write: bool = True) -> Plan:
    """Works out the plan, writes init_plan.json (unless `write` is False), and prints the table (in a sweep, once
    per distinct plan; the other jobs print one line) with the memory the run needs."""
    plan = plan_for(run)
    if write:
        folder.write_json("init_plan.json", plan.as_json())
    digest = plan_digest(plan)
    memory = f"memory: {estimate(plan, run.trainer.batch_size, run.optimizer.name).describe()}"
    if place is not None and place.compact:
        log.info(memory)
    else:
        if place is None or place.first_of_plan(digest):
            print(format_table(plan), flush=True)
        else:
            say(plan_line(plan))
        say(memory)
    log.info("plan %s: %d weights; init_plan.json", digest, len(plan.entries))
    return plan


def record_measured(plan: Plan, folder: RunFolder, place: Place | None = None) -> None:
    """After LSUV measured its scales: init_plan.json is rewritten once with them, the log gets one line per
    kernel, the terminal one summary line and one warning line for each kernel that did not converge."""
    if not plan.measured:
        return
    folder.write_json("init_plan.json", plan.as_json())
    for path, m in plan.measured.items():
        log.info("%s", lsuv.log_line(path, m))
    (log.info if place is not None and place.compact else say)(lsuv.summary(plan.measured, plan.measured_s))
    target = {e.path: e.computed or {} for e in plan.computed("lsuv")}
    for path, m in plan.measured.items():
        if not m["converged"]:
            warning = lsuv.not_converged(path, m, target[path])
            say(warning)
            log.warning(warning)


def early_stopping_note(run: RunConfig, progress: Progress) -> str:
    """`early stopping at epoch 12: val_loss has not improved for 5 epochs; best epoch 7 restored`."""
    es, state = run.trainer.early_stopping, progress.stopping
    text = (f"early stopping at epoch {progress.epochs_done}: {es.monitor} has not improved for "
            f"{counted(es.patience, 'epoch')}")
    if state.get("best_epoch") is not None:
        text += f"; best epoch {int(state['best_epoch']) + 1}" + (" restored" if es.restore_best_weights else "")
    return text


def _set_up(run: RunConfig, folder: RunFolder, record: dict[str, Any], timings: dict[str, float],
            trackers: list[Any], hooks: Sequence[Hook], resuming: bool, place: Place, arm: Trained | None
            ) -> tuple[Session, Progress, list[Any] | None, Any]:
    """The run's session (its plan, model and data), where training starts (a checkpoint's progress and best
    weights on a resume) and its tracker; the hooks (LSUV, diagnose) run before the first epoch only."""
    from modelforge.run.tracking import make_tracker

    tick = time.perf_counter()
    restoring = resuming and checkpoint.exists(folder)
    # A resume from a checkpoint keeps init_plan.json as it is: LSUV's scales were measured by the first start.
    plan = save_plan(run, folder, place, write=not restoring)
    timings["plan_s"] = time.perf_counter() - tick
    # A fused arm brings the session the launcher set up for it (its model as first built, its data).
    session = arm.session if arm is not None and arm.session is not None else prepare(run, plan, fresh=not restoring)
    record_measured(session.plan, folder, place)
    progress, best_weights = Progress(), None
    if restoring:
        progress, best_weights = checkpoint.load(folder, session.model)
    tracker = make_tracker(run, folder)
    if tracker is not None:
        trackers.append(tracker)  # before the hooks: a run that fails in one is ended as failed in the store
    folder.write_text("model_summary.txt", _summary_text(session.model))
    record.setdefault("diagnosis", None)
    if progress.epochs_done == 0:
        for hook in hooks:
            record.update(hook(session, folder))
    timings.update(session.timings)
    return session, progress, best_weights, tracker


def _heartbeat(run: RunConfig, folder: RunFolder, record: dict[str, Any], place: Place) -> Callable[[Progress], None]:
    """After each epoch: metrics.json's heartbeat, the log's line, and the terminal's where the job shows them."""

    def beat(done: Progress) -> None:
        record.update(heartbeat=now(), epochs_run=done.epochs_done)
        folder.write_json("metrics.json", record)
        row = done.history[-1]
        metrics = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch")
        log.info("epoch %d/%d: %s", row["epoch"], run.trainer.epochs, metrics)
        if place.epoch_lines and not place.compact:
            say(f"epoch {row['epoch']}/{run.trainer.epochs}: {metrics}")

    return beat


def _fit(run: RunConfig, folder: RunFolder, session: Session, progress: Progress, record: dict[str, Any],
         stop: StopSignal, callbacks: list[Any], place: Place, arm: Trained | None) -> None:
    """Trains (a fused arm: plays its epochs back) until done, or until a signal stops it: the run is then
    interrupted, and the message says how to continue it."""
    from modelforge.run.fit import Interrupted, fit_model

    try:
        with stop_on_signals(stop, forward=arm is not None):
            if arm is not None:  # trained in a fused group: its epochs are played through this run's callbacks
                arm.play(session.model, callbacks, run.trainer.epochs)
                record["fused"] = arm.fused
            else:
                fit_model(session.model, session.dataset, run, callbacks, progress, quiet=place.epoch_lines)
    except Interrupted as err:
        name = signal.Signals(err.signum).name
        done = counted(progress.epochs_done, "epoch")
        raise RunInterrupted(err.signum, f"stopped by {name} after {done}; the checkpoint continues it: "
                                         f"python -m modelforge resume {folder.path}") from None


def _saved(run: RunConfig, folder: RunFolder, session: Session, progress: Progress, timings: dict[str, float],
           trained: dict[str, Any]) -> dict[str, Any]:
    """The run's numbers, once they are known to be finite, and its model saved (the checkpoint then goes)."""
    rows = progress.history
    trained.update(model=session.model, history=rows)
    numbers = outcome(run, progress)
    if any(math.isnan(v) or math.isinf(v) for v in numbers["final"].values()):
        raise RunFailed(f"the loss became NaN or infinite at epoch {len(rows)}; lower optimizer.learning_rate "
                        "or choose a smaller initializer scale")
    tick = time.perf_counter()
    folder.write_with("model.keras", lambda path: session.model.save(path))
    checkpoint.remove(folder)  # model.keras is the result now; the checkpoint's work is done
    timings["save_s"] = time.perf_counter() - tick
    return {
        **numbers,
        "epochs_run": len(rows),
        "samples": {"train": len(session.dataset.x_train), "validation": len(session.dataset.x_val)},
    }


def _train(run: RunConfig, folder: RunFolder, record: dict[str, Any], timings: dict[str, float],
           trackers: list[Any], hooks: Sequence[Hook], resuming: bool, place: Place,
           trained: dict[str, Any], arm: Trained | None) -> dict[str, Any]:
    from modelforge.run.fit import StopSignal, make_callbacks

    session, progress, best_weights, tracker = _set_up(run, folder, record, timings, trackers, hooks, resuming,
                                                       place, arm)
    stop = StopSignal()
    callbacks = make_callbacks(run, folder, progress, best_weights, stop, _heartbeat(run, folder, record, place),
                               tracker, checkpoints=arm is None)
    tick = time.perf_counter()
    trained["fitting"] = True
    _fit(run, folder, session, progress, record, stop, callbacks, place, arm)
    timings["fit_s"] = time.perf_counter() - tick
    if arm is not None:  # its share of the group's fit; the playback itself is bookkeeping, kept apart
        timings["replay_s"] = timings["fit_s"]
        timings["fit_s"] = float(arm.fused.get("fit_s", 0.0)) / max(int(arm.fused.get("size", 1)), 1)
    last = progress.history[-1] if progress.history else {}
    finite = all(not isinstance(v, float) or math.isfinite(v) for v in last.values())
    # Keras' TerminateOnNaN stops a fit as early stopping does: that stop is the NaN's (`_saved` says so).
    if progress.stopped and run.trainer.early_stopping.enabled and finite:
        record["stopped_early"] = stopped = early_stopping_note(run, progress)
        (log.info if place.compact else say)(stopped)  # a compact job's result line carries it
    with deferred(trained, arm):
        return _saved(run, folder, session, progress, timings, trained)


@contextlib.contextmanager
def deferred(into: dict[str, Any], arm: Trained | None) -> Iterator[None]:
    """SIGTERM and SIGINT wait while the run's result is written (model.keras, then metrics.json), as they wait
    for a batch's end in the fit: the signal is noted in `into["signal"]`, and obeyed once the run is whole. A
    fused arm's run leaves them to its launcher, which stops once the job being written is whole."""
    def mark(signum: int, frame: Any) -> None:
        into["signal"] = signum

    if arm is not None:
        yield
        return
    with handled(mark):
        yield
