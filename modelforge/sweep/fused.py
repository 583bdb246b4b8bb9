"""The Hydra side of `hydra/launcher=fused`: compose each job, let `modelforge.fused` train the groups, then run
every job through Hydra's `run_job` with its arm handed to its run.

1. Every job's config is composed as Hydra composes it for the job, and checked.
2. `modelforge.fused.groups` groups the jobs by all but what fuses and trains each group as one model.
3. Every job then runs as under Hydra's basic launcher, through the same task function, called with its arm
   (`task_function(cfg, arm=...)`): its run writes its folder, its trackers and its result line as any run does.
   A job that cannot fuse (it is alone in its group, its model or settings are not covered, it is not a
   modelforge training job, or its config is refused) is trained there on its own, as the basic launcher
   would; one line per reason says which jobs and why.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelforge.core.names import counted
from modelforge.errors import ConfigError, SweepStopped
from modelforge.fused.groups import FUSED_DIR, Job, group_key, plan_chunks, train_fused
from modelforge.run.checkpoint import previous
from modelforge.run.folder import FolderState, RunFolder
from modelforge.sweep.stops import ends_cleanly
from modelforge.system.signals import handled

if TYPE_CHECKING:
    from modelforge.fused.executors import Options

log = logging.getLogger("modelforge")


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

    from modelforge.core.config.schema import RunConfig
    from modelforge.front_door import to_plain
    from modelforge.run.lifecycle import sweep_resumed

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


def launch(hydra_context: Any, config: Any, task_function: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int, max_arms: int | None, executor: str = "local",
           options: dict[str, Any] | None = None) -> list[Any]:
    """Runs the sweep's jobs, fused where they can be; returns their JobReturns in the jobs' order.

    `executor`: where the chunks run (`modelforge.fused.executors`): `local` (in this process), `ray` or
    `submitit`, with its `options`.
    """
    from hydra.core.utils import configure_log, setup_globals

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("launching %d jobs, fused where they can be", len(job_overrides))
    jobs = [_describe(hydra_context, config, task_function, overrides, initial_job_idx + i)
            for i, overrides in enumerate(job_overrides)]
    sweep_dir = Path(str(config.hydra.sweep.dir))
    with ends_cleanly(sweep_dir):
        if executor != "local":
            # The launcher config's `options`, as its YAML gives them: the keys `Options` names.
            return _launch_elsewhere(hydra_context, config, task_function, jobs, max_arms, executor,
                                     cast("Options", options or {}))
        checkpoints: list[Path] = []
        if any(job.run is not None and job.alone is None and not job.done for job in jobs):
            checkpoints = train_fused(plan_chunks(jobs, max_arms), sweep_dir)
        _say_alone(jobs)
        results = _run_jobs(hydra_context, config, task_function, jobs)
    drop_checkpoints(checkpoints)
    clear_fused_dir(sweep_dir)
    return results


def drop_checkpoints(checkpoints: Sequence[Path]) -> None:
    """Every job of these chunks is written now, and the runs' folders hold the results: their checkpoints and
    locks go. Nothing else in `.fused/` is touched: a chunk running elsewhere may be writing its own there, or be
    about to make the folder's first file."""
    for path in checkpoints:
        path.unlink(missing_ok=True)
        previous(path).unlink(missing_ok=True)
        path.with_suffix(".lock").unlink(missing_ok=True)  # its trainer let go of it when the chunk trained


def clear_fused_dir(sweep_dir: Path) -> None:
    """What a kill in the middle of a write left in `.fused/`, then the folder when it is empty. Only the process
    that knows every chunk has finished calls this (the in-process launcher, or the driver once every task
    returned): a chunk's temporary file is otherwise a write in flight. A stopped chunk's checkpoint stays."""
    if (sweep_dir / FUSED_DIR).is_dir():
        RunFolder(sweep_dir / FUSED_DIR).clean_temp_files()
    with contextlib.suppress(OSError):
        (sweep_dir / FUSED_DIR).rmdir()  # only when empty


@dataclass
class ChunkTask:
    """One chunk (or one job that trains alone) as a worker runs it, anywhere the sweep folder is shared: compose
    its jobs, train them as one model, and write each job's folder through Hydra's `run_job`. Returns the jobs'
    JobReturns. Picklable (Ray and submitit send it); submitit calls `checkpoint` on preemption or timeout and
    requeues it, and the chunk then resumes from its group checkpoint."""

    hydra_context: Any
    config: Any
    task_function: Any
    jobs: list[tuple[int, list[str]]]
    label: str | None  # None: the jobs train on their own
    singleton: Any
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self) -> list[Any]:
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals

        setup_globals()
        Singleton.set_state(self.singleton)
        os.environ.update(self.env)
        jobs = [_describe(self.hydra_context, self.config, self.task_function, overrides, idx)
                for idx, overrides in self.jobs]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        checkpoints: list[Path] = []
        with ends_cleanly(sweep_dir, summaries=False):  # the driver writes the sweep's summaries
            if self.label is not None and not all(job.done for job in jobs):
                checkpoints = train_fused([(self.label, jobs)], sweep_dir)
            results = _run_jobs(self.hydra_context, self.config, self.task_function, jobs)
        drop_checkpoints(checkpoints)  # the folder is shared with chunks still running: the driver clears it
        return results

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook for a preempted or timed-out job: requeue this chunk, resuming (its group checkpoint,
        its written jobs untouched)."""
        import submitit

        from modelforge.run.lifecycle import resumed_environment

        self.env = {**self.env, **resumed_environment()}
        return submitit.helpers.DelayedSubmission(self)


def _launch_elsewhere(hydra_context: Any, config: Any, task_function: Any, jobs: list[Job], max_arms: int | None,
                      executor: str, options: Options) -> list[Any]:
    """Each chunk, and each job that trains alone, as a task of `executor`; the driver only plans and waits."""
    from hydra.core.singleton import Singleton
    from hydra.types import HydraContext

    from modelforge.fused.executors import run_tasks
    from modelforge.run.lifecycle import resumed_environment, sweep_resumed

    chunks = plan_chunks(jobs, max_arms)
    _say_alone(jobs)
    # The loader without what the fused launcher's wrapper kept (the sweeper's configs, composed again there).
    context = HydraContext(config_loader=getattr(hydra_context.config_loader, "_loader", hydra_context.config_loader),
                           callbacks=hydra_context.callbacks)
    env = resumed_environment() if sweep_resumed() else {}
    chunked = {job.idx for _, chunk in chunks for job in chunk}
    units = [(label, chunk) for label, chunk in chunks] + [(None, [j]) for j in jobs if j.idx not in chunked]
    tasks = [ChunkTask(context, config, task_function, [(j.idx, list(j.overrides)) for j in members], label,
                       Singleton.get_state(), env) for label, members in units]
    for label, members in chunks:
        print(f"{label}: {counted(len(members), 'arm')} as one model, sent to {executor}", flush=True)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    returned = run_tasks(tasks, executor, options)  # a signal: `SweepStopped`, the pending tasks cancelled
    found: dict[int, Any] = {}
    for (_, members), results in zip(units, returned, strict=True):
        found.update({job.idx: ret for job, ret in zip(members, results or [_unfinished(j) for j in members],
                                                      strict=True)})
    clear_fused_dir(sweep_dir)  # every task has returned: no chunk writes there any more
    return [found[job.idx] for job in jobs]


def _unfinished(job: Job) -> Any:
    """What the sweeper gets for a job whose chunk's process ended without a result: NaN (its folder, if any,
    says what it reached; the summaries list it, and `resume` finishes it)."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(overrides=list(job.overrides), cfg=job.sweep_config, status=JobStatus.COMPLETED,
                     _return_value=math.nan)


def _say_alone(jobs: Sequence[Job]) -> None:
    """One line per reason for the jobs that train on their own, naming their numbers."""
    reasons: dict[str, list[int]] = {}
    for job in jobs:
        if job.alone is not None and not job.done:
            reasons.setdefault(job.alone, []).append(job.idx + 1)
    for reason, numbers in reasons.items():
        shown = ", ".join(map(str, numbers[:12])) + (f" and {len(numbers) - 12} more" if len(numbers) > 12 else "")
        print(f"{'job' if len(numbers) == 1 else 'jobs'} {shown}: trained on {'its' if len(numbers) == 1 else 'their'}"
              f" own, as {reason}", flush=True)


def _run_jobs(hydra_context: Any, config: Any, task_function: Any, jobs: Sequence[Job]) -> list[Any]:
    """Each job through Hydra's `run_job`, its arm handed to its run through the task function's call."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log, filter_overrides, run_job

    results = []
    with _stop_between_jobs() as stopped:
        for job in jobs:
            # Hydra's line for each job it launches; a fused arm's one line is its result (see cli.train).
            trains_alone = job.alone is not None and not job.done
            (log.info if trains_alone else log.debug)("\t#%d : %s", job.idx,
                                                      " ".join(filter_overrides(job.overrides)))
            # The job's config as composed above (composing is most of a small job's cost in Hydra 1.3).
            HydraConfig.instance().set_config(job.sweep_config)
            task = functools.partial(task_function, arm=job.arm) if job.arm is not None else task_function
            job.arm = None  # handed over: nothing of the group stays behind once its job is written
            results.append(run_job(hydra_context=hydra_context, task_function=task, config=job.sweep_config,
                                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
            if stopped:
                break
    return results


@contextlib.contextmanager
def _stop_between_jobs() -> Any:
    """While the jobs' folders are written: SIGTERM or Ctrl-C lets the job being written finish, then stops the
    sweep (`SweepStopped`); the group checkpoints stay, and `resume` writes the rest. Yields the list the signals
    land in (empty while none came)."""
    received: list[int] = []
    with handled(lambda signum, frame: received.append(signum)):  # off the main thread: nothing is set
        yield received
    if received:
        raise SweepStopped(received[0], " while its jobs' folders were written", "the rest are written by")
