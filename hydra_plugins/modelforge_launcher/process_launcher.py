"""`hydra/launcher=parallel`: the jobs on `n_jobs` worker processes of modelforge's own.

Unlike joblib's loky pool, a worker that dies (killed for memory, a segfault) takes only its own job with it:
the job is recorded as `failed` with the cause, a new worker takes over, and the other jobs run on. Hydra
imports every plugin at start-up, so this module imports nothing heavy; the work is in
`modelforge.sweep.launcher`.
"""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ProcessLauncher(Launcher):
    def __init__(self, n_jobs: int = 2, **kwargs: Any) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from modelforge.sweep.launcher import launch

        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        return launch(self.hydra_context, self.config, self.task_function, job_overrides, initial_job_idx,
                      self.n_jobs)
