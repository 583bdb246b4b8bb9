"""Where a fused sweep's chunks run: in this process, as Ray tasks, or as submitit jobs (SLURM or local).

A task is a callable that trains one chunk and writes its jobs' folders (`modelforge.sweep.fused.ChunkTask`);
it returns what its jobs returned. The sweep folder must be on a filesystem every worker shares, as Hydra's
own submitit and Ray launchers assume: each chunk keeps its group checkpoint under the sweep's `.fused/` and
writes its jobs' folders there; the driver writes the summaries.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, TypedDict, TypeVar

from modelforge.errors import SweepStopped, invalid
from modelforge.system.signals import handled

if TYPE_CHECKING:
    import submitit


class Options(TypedDict, total=False):
    """`hydra.launcher.options`: what `run_tasks` reads for Ray and submitit."""

    address: str | None  # Ray's: None starts a local one
    cpus_per_chunk: int | None  # Ray's, per task
    folder: str  # submitit's logs
    cluster: str | None  # submitit's: local, slurm, or None for its own choice
    timeout_min: int | None
    parameters: dict[str, object] | None  # passed to submitit's update_parameters

T = TypeVar("T")
EXECUTORS = ("local", "ray", "submitit")
# How long a stopped driver waits for its cancelled submitit jobs to end their epoch and exit.
STOP_WAIT_S = 120.0


class TasksStopped(SweepStopped):
    """SIGTERM or Ctrl-C reached the driver while it waited: the tasks not yet done were cancelled (each keeps
    its group checkpoint, so `resume` continues it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum, continues="its chunks' checkpoints continue it")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While the driver waits: SIGTERM or SIGINT ends the wait with `TasksStopped`."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise TasksStopped(signum)

    with handled(stop):
        yield


def run_tasks(tasks: Sequence[Callable[[], T]], executor: str, options: Options) -> list[T | None]:
    """Runs every task where `executor` says and returns their results in the tasks' order (None for a submitit
    task whose process ended without one).

    Args:
        executor: `local` (one after another, in this process), `ray` (`ray.init(address=options["address"])`:
            a local Ray when None, a cluster's address otherwise), or `submitit` (`options["cluster"]`: `local`,
            `slurm`, or None for submitit's own choice; `options["folder"]` for its logs; `timeout_min`, and
            `parameters` passed to `update_parameters`).

    Raises:
        ConfigError: an unknown executor, naming the nearest.
        TasksStopped: a signal arrived while the driver waited (Ray and submitit: the pending tasks cancelled).
    """
    if executor == "local":
        return [task() for task in tasks]
    if executor == "ray":
        return _ray(tasks, options)
    if executor == "submitit":
        return _submitit(tasks, options)
    raise invalid("hydra.launcher.executor", executor, EXECUTORS)


def _call(task: Callable[[], T]) -> T:
    return task()


def _ray(tasks: Sequence[Callable[[], T]], options: Options) -> list[T]:
    import ray

    if not ray.is_initialized():
        ray.init(address=options.get("address"), log_to_driver=True, include_dashboard=False)
    remote = ray.remote(num_cpus=options.get("cpus_per_chunk") or 1)(_call)
    refs = [remote.remote(task) for task in tasks]
    try:
        with _stop_on_signals():
            return list(ray.get(refs))
    except TasksStopped:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise


def _result(job: submitit.Job[T]) -> T | None:
    """A submitit job's result; None, said in one line, when its process ended without one (killed, out of
    memory, or its task raised): its sweep jobs are left unfinished for `resume`, and the others go on."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return job.result()
    except (UncompletedJobError, FailedJobError) as err:
        detail = f"{type(err).__name__}: {(str(err).strip().splitlines() or ['no detail'])[0]}"
        with contextlib.suppress(Exception):  # the chunk's own refusal, where it said one, is the reason
            said = [line for line in (job.stderr() or "").splitlines() if line.startswith(_REFUSAL)]
            detail = said[-1].removeprefix(_REFUSAL) if said else detail
        print(f"modelforge: a chunk's process (submitit job {job.job_id}) ended without its result ({detail}); its "
              "jobs are left unfinished, for resume", file=sys.stderr, flush=True)
        return None


# How a chunk's process says why it refused to train (its stderr, kept by submitit).
_REFUSAL = "modelforge: error: "


def _cancel(job: submitit.Job[T]) -> None:
    """Stops a submitit job: a local one by SIGTERM to its controller, which hands it to the chunk (submitit's own
    cancel is a SIGINT, on which the controller prints its KeyboardInterrupt traceback on this terminal); a
    cluster's by submitit's cancel. Either way the chunk ends its epoch and writes its checkpoint."""
    from submitit.local.local import LocalJob

    if isinstance(job, LocalJob):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(job.job_id), signal.SIGTERM)
    else:
        job.cancel(check=False)


def _submitit(tasks: Sequence[Callable[[], T]], options: Options) -> list[T | None]:
    import submitit

    executor = submitit.AutoExecutor(folder=str(options["folder"]), cluster=options.get("cluster"))
    executor.update_parameters(timeout_min=int(options.get("timeout_min") or 60), **dict(options.get("parameters")
                                                                                          or {}))
    jobs: list[submitit.Job[T]] = []
    try:
        # Submitted inside the handler: a signal while submitting cancels what was sent, and the jobs' processes
        # start with Ctrl-C's default action even when this process ignores it (a script's background job):
        # submitit's local cancel is a SIGINT, which an inherited SIG_IGN would swallow, the chunk training on.
        with _stop_on_signals():
            for task in tasks:
                jobs.append(executor.submit(task))
            return [_result(job) for job in jobs]
    except TasksStopped:
        for job in jobs:
            if not job.done():
                _cancel(job)
        # A cancelled chunk ends its epoch and writes its checkpoint before it exits: wait for that, so that a
        # resume never finds a worker still writing.
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and not all(job.done() for job in jobs):
            time.sleep(0.2)
        raise
