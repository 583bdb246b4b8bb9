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

from hydra_plugins.modelforge_launcher.held import HeldSetup


class ProcessLauncher(HeldSetup, Launcher):
    def __init__(self, n_jobs: int, **kwargs: Any) -> None:
        # No default here: conf/hydra/launcher/parallel.yaml is n_jobs' one home, and Hydra always passes it.
        self.n_jobs = n_jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from modelforge.sweep.launcher import launch

        hydra_context, config, task_function = self.held()
        return launch(hydra_context, config, task_function, job_overrides, initial_job_idx, self.n_jobs)
