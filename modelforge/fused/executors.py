"""Where a fused sweep's chunks run: in this process, as Ray tasks, or as submitit jobs (SLURM or local).

A task is a callable that trains one chunk and writes its jobs' folders (`modelforge.sweep.fused.ChunkTask`);
it returns what its jobs returned. The sweep folder must be on a filesystem every worker shares, as Hydra's
own submitit and Ray launchers assume: each chunk keeps its group checkpoint under the sweep's `.fused/` and
writes its jobs' folders there; the driver writes the summaries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from modelforge.errors import invalid

T = TypeVar("T")
EXECUTORS = ("local", "ray", "submitit")


def run_tasks(tasks: Sequence[Callable[[], T]], executor: str, options: Mapping[str, Any]) -> list[T]:
    """Runs every task where `executor` says and returns their results in the tasks' order.

    Args:
        executor: `local` (one after another, in this process), `ray` (`ray.init(address=options["address"])`:
            a local Ray when None, a cluster's address otherwise), or `submitit` (`options["cluster"]`: `local`,
            `slurm`, or None for submitit's own choice; `options["folder"]` for its logs; `timeout_min`, and
            `parameters` passed to `update_parameters`).

    Raises:
        ConfigError: an unknown executor, naming the nearest.
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


def _ray(tasks: Sequence[Callable[[], T]], options: Mapping[str, Any]) -> list[T]:
    import ray

    if not ray.is_initialized():
        ray.init(address=options.get("address"), log_to_driver=True, include_dashboard=False)
    remote = ray.remote(num_cpus=options.get("cpus_per_chunk") or 1)(_call)
    return list(ray.get([remote.remote(task) for task in tasks]))


def _submitit(tasks: Sequence[Callable[[], T]], options: Mapping[str, Any]) -> list[T]:
    import submitit

    executor = submitit.AutoExecutor(folder=str(options["folder"]), cluster=options.get("cluster"))
    executor.update_parameters(timeout_min=int(options.get("timeout_min") or 60), **dict(options.get("parameters")
                                                                                          or {}))
    jobs = [executor.submit(task) for task in tasks]
    return [job.result() for job in jobs]
