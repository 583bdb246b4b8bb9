"""The work of `hydra/launcher=fused`: a sweep's jobs grouped by what they share, each group trained as one model.

1. Every job's config is composed as Hydra composes it for the job, and checked.
2. Jobs whose configs are equal but for what fuses (the initializer, the seed, the optimizer's per-arm
   scalars) form a group; a group is trained as one model (`modelforge.run.fused`), in chunks of at most
   `max_arms` arms (null: as many as the machine's free memory holds, by the plan's estimate).
3. Every job then runs as under Hydra's basic launcher, through the same task function: its run finds its
   arm's outcome waiting (`modelforge.run.replay`) and writes its folder, its trackers and its result line as
   any run does. A job that cannot fuse (it is alone in its group, its model or settings are not covered, it
   is not a modelforge training job, or its config is refused) is trained there on its own, as the basic
   launcher would; one line says why.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.errors import ConfigError
from modelforge.run.checkpoint import previous
from modelforge.run.folder import FolderState, RunFolder
from modelforge.run.replay import offer

log = logging.getLogger("modelforge")
# Keys whose values may differ between the arms of one group (the rest of the config must be equal).
FUSED_KEYS = ("seed", "initializer", "logger", "optimizer.learning_rate", "optimizer.beta_1", "optimizer.beta_2",
              "optimizer.epsilon", "optimizer.momentum", "optimizer.weight_decay", "trainer.verbose",
              "trainer.diagnose", "trainer.objective")
# The sweep folder's subfolder for the fused groups' checkpoints (removed once every job is written).
FUSED_DIR = ".fused"
# Without max_arms, a chunk may take this share of the memory free when the sweep starts.
MEMORY_SHARE = 0.5


@dataclass
class Job:
    """One job of the sweep: its index, overrides, Hydra config, and (if it is modelforge's) its run config."""

    idx: int
    overrides: list[str]
    sweep_config: Any
    run: Any = None
    alone: str | None = None  # why it trains on its own
    # It completed before this resumed sweep: it keeps its place in its chunk (so the chunk's checkpoint is
    # found under its name) but gets no arm; its run reports its result untouched.
    done: bool = False
    key: str = ""
    folder: Path = field(default_factory=Path)


def group_key(resolved: Any) -> str:
    """The config without the keys that fuse: jobs with equal keys train as one model.

    Example:
        >>> a = group_key({"seed": 0, "optimizer": {"name": "adam", "learning_rate": 0.1}, "model": {"units": 8}})
        >>> b = group_key({"seed": 1, "optimizer": {"name": "adam", "learning_rate": 0.2}, "model": {"units": 8}})
        >>> a == b, a == group_key({"seed": 0, "optimizer": {"name": "sgd"}, "model": {"units": 8}})
        (True, False)
    """
    plain = copy.deepcopy(dict(resolved))
    for key in FUSED_KEYS:
        *parents, last = key.split(".")
        node = plain
        for parent in parents:
            node = node.get(parent, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(plain, sort_keys=True, default=str)


def _compose(hydra_context: Any, config: Any, overrides: Sequence[str], idx: int) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    loader = hydra_context.config_loader
    # The fused launcher's loader hands back what the sweeper composed to check the batch (see its plugin).
    compose = getattr(loader, "take", loader.load_sweep_config)
    sweep_config = compose(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return sweep_config


def _describe(hydra_context: Any, config: Any, task_function: Any, overrides: Sequence[str], idx: int) -> Job:
    """The job, composed and checked; `alone` says why it cannot fuse, when that is known before building."""
    from omegaconf import open_dict, read_write

    from modelforge.core.config import RunConfig
    from modelforge.run.lifecycle import sweep_resumed
    from modelforge.sweep.store import to_plain

    sweep_config = _compose(hydra_context, config, overrides, idx)
    job = Job(idx, list(overrides), sweep_config,
              folder=Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir))
    if not getattr(task_function, "modelforge_trains", False):
        job.alone = "it is not a modelforge training job"
        return job
    # Read without making the folder: nothing is made before the group's checkpoint has been read and checked.
    job.done = (sweep_resumed() and (job.folder / "metrics.json").is_file()
                and RunFolder(job.folder).state() == FolderState.COMPLETED)
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    try:
        job.run = RunConfig.from_mapping(to_plain(task_cfg))
    except ConfigError:
        job.alone = "its config is refused (its own run says why)"
        return job
    job.key = group_key(job.run.resolved)
    return job


def _chunk_size(max_arms: int | None, sessions_plan: Any, run: Any) -> int:
    if max_arms:
        return max(1, int(max_arms))
    from modelforge.core.memory import estimate
    from modelforge.run.setup import available_memory

    per_arm = estimate(sessions_plan, run.trainer.batch_size, run.optimizer.name).total
    free = available_memory()
    return max(1, int(MEMORY_SHARE * free // max(per_arm, 1))) if free else 64


def _progress(label: str, epochs: int) -> Any:
    """One line per group on a terminal, rewritten after each epoch (nothing extra in a log file)."""
    import sys

    def show(epoch: int) -> None:
        if sys.stdout.isatty():
            print(f"\r{label}: epoch {epoch}/{epochs}", end="\n" if epoch == epochs else "", flush=True)

    return show


def chunk_checkpoint(sweep_dir: Path, members: Sequence[Job]) -> Path:
    """Where a chunk's checkpoint lives: named by its config and its jobs, so a resumed sweep finds it."""
    import hashlib

    name = hashlib.sha1(f"{members[0].key}|{[m.idx for m in members]}".encode()).hexdigest()[:16]
    return sweep_dir / FUSED_DIR / f"{name}.npz"


def _train_groups(jobs: list[Job], max_arms: int | None, sweep_dir: Path, stop: Any) -> list[Path]:
    """Trains every group of two or more jobs as fused chunks and leaves each arm for its job's run; returns
    the chunks' checkpoints."""
    from modelforge.run import fused
    from modelforge.run.setup import plan_for, prepare

    checkpoints: list[Path] = []
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if job.run is not None and job.alone is None:
            groups.setdefault(job.key, []).append(job)
    for number, members in enumerate(groups.values(), start=1):
        if len(members) == 1:
            members[0].alone = "no other job shares its config but for what fuses"
            continue
        plan = plan_for(members[0].run)
        size = _chunk_size(max_arms, plan, members[0].run)
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            if all(job.done for job in chunk):  # a resumed sweep's chunk whose jobs were all written
                continue
            label = f"fused group {number}" + (f", chunk {start // size + 1}" if len(members) > size else "")
            with contextlib.redirect_stdout(io.StringIO()):  # each arm's set-up would print its device line
                sessions = [prepare(job.run) for job in chunk]
            reason = fused.why_not(sessions[0])
            if reason is not None:
                for job in chunk:
                    job.alone = reason
                continue
            epochs = members[0].run.trainer.epochs
            print(f"{label}: {len(chunk)} arms as one model ({epochs} epochs)", flush=True)
            tick = time.perf_counter()
            checkpoints.append(chunk_checkpoint(sweep_dir, chunk))
            arms = fused.train_group(sessions, on_epoch=_progress(label, epochs), checkpoint=checkpoints[-1],
                                     stop=stop)
            for job, arm, session in zip(chunk, arms, sessions, strict=True):
                arm.fused["group"] = label
                arm.session = session
                if not job.done:
                    offer(job.folder, arm)
            print(f"{label}: trained in {time.perf_counter() - tick:.1f} s; writing each job's folder", flush=True)
    return checkpoints


def launch(hydra_context: Any, config: Any, task_function: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int, max_arms: int | None) -> list[Any]:
    """Runs the sweep's jobs, fused where they can be; returns their JobReturns in the jobs' order."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log, filter_overrides, run_job, setup_globals

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("launching %d jobs, fused where they can be", len(job_overrides))
    jobs = [_describe(hydra_context, config, task_function, overrides, initial_job_idx + i)
            for i, overrides in enumerate(job_overrides)]
    sweep_dir = Path(str(config.hydra.sweep.dir))
    checkpoints: list[Path] = []
    if any(job.run is not None and job.alone is None and not job.done for job in jobs):
        checkpoints = _train_fused(jobs, max_arms, sweep_dir)
    results = []
    with _stop_between_jobs(sweep_dir) as stopped:
        for job in jobs:
            # Hydra's line for each job it launches; a fused arm's one line is its result (see cli.train).
            trains_alone = job.alone is not None and not job.done
            (log.info if trains_alone else log.debug)("\t#%d : %s", job.idx,
                                                      " ".join(filter_overrides(job.overrides)))
            if trains_alone:
                print(f"[{job.idx + 1}] {' '.join(filter_overrides(job.overrides))}: trained on its own, as "
                      f"{job.alone}", flush=True)
            # The job's config as composed above (composing is most of a small job's cost in Hydra 1.3).
            HydraConfig.instance().set_config(job.sweep_config)
            results.append(run_job(hydra_context=hydra_context, task_function=task_function,
                                   config=job.sweep_config, job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
            if stopped:
                break
    for path in checkpoints:  # every job of the chunk is written now: the runs' folders hold the results
        path.unlink(missing_ok=True)
        previous(path).unlink(missing_ok=True)
    if checkpoints and (sweep_dir / FUSED_DIR).is_dir():
        RunFolder(sweep_dir / FUSED_DIR).clean_temp_files()  # what a kill in the middle of a write left
    with contextlib.suppress(OSError):
        (sweep_dir / FUSED_DIR).rmdir()  # only when empty: another chunk's checkpoint is never removed here
    return results


@contextlib.contextmanager
def _stop_between_jobs(sweep_dir: Path) -> Any:
    """While the jobs' folders are written: SIGTERM or Ctrl-C lets the job being written finish, then the
    summaries are written and the process exits 143 or 130; the group checkpoints stay, and `resume` writes the
    rest. Yields the list the signals land in (empty while none came)."""
    import signal
    import sys

    received: list[int] = []
    saved = {s: signal.signal(s, lambda signum, frame: received.append(signum))
             for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    if received:
        from modelforge.sweep.callback import write_summaries

        write_summaries(sweep_dir, interrupted=True)
        print(f"modelforge: sweep stopped by {signal.Signals(received[0]).name} while its jobs' folders were "
              f"written; the rest are written by: python -m modelforge resume {sweep_dir}", file=sys.stderr)
        sys.exit(128 + received[0])


def _train_fused(jobs: list[Job], max_arms: int | None, sweep_dir: Path) -> list[Path]:
    """The fused groups' training, stopped cleanly by SIGTERM or Ctrl-C: the checkpoint of the last complete
    epoch stays, the summaries say so, and the process exits with the signal's status."""
    import signal
    import sys

    from modelforge.run.fused import GroupStopped

    received: list[int] = []
    saved = {s: signal.signal(s, lambda signum, frame: received.append(signum))
             for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        checkpoints = _train_groups(jobs, max_arms, sweep_dir, stop=lambda: received[0] if received else None)
        if received:
            raise GroupStopped(received[0], -1)
    except ConfigError as err:  # a group checkpoint this modelforge cannot read: nothing was trained
        print(f"modelforge: error: {err}", file=sys.stderr)
        sys.exit(2)
    except GroupStopped as err:
        from modelforge.sweep.callback import write_summaries

        write_summaries(sweep_dir, interrupted=True)
        print(f"modelforge: sweep stopped by {signal.Signals(err.signum).name} while a fused group trained; its "
              f"checkpoint continues it: python -m modelforge resume {sweep_dir}", file=sys.stderr)
        sys.exit(128 + err.signum)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    return checkpoints
