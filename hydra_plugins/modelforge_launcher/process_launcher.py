"""`hydra/launcher=parallel`: the jobs on `n_jobs` worker processes of modelforge's own.

Unlike joblib's loky pool, a worker that dies (killed for memory, a segfault) takes only its own job with it:
the job is recorded as `failed` with the cause, a new worker takes over, and the other jobs run on. Hydra
imports every plugin at start-up, so this module imports nothing heavy; the work is in
`modelforge.sweep.launcher`. The launcher's config is stored here, as Hydra's own launcher plugins store theirs,
so `hydra/launcher=parallel` also works in another Hydra app where modelforge is installed.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

from hydra_plugins.modelforge_launcher.held import HeldSetup


@dataclass
class ProcessLauncherConf:
    """Parallel jobs on this machine in n_jobs worker processes (modelforge's own launcher):
    `python -m modelforge -m hydra/launcher=parallel hydra.launcher.n_jobs=4 seed=0,1,2,3`. A job whose process
    dies (killed for memory) is recorded as failed, and the other jobs run on."""

    _target_: str = "hydra_plugins.modelforge_launcher.process_launcher.ProcessLauncher"
    n_jobs: int = 2


class ProcessLauncher(HeldSetup, Launcher):
    def __init__(self, n_jobs: int, **kwargs: Any) -> None:
        # No default here: ProcessLauncherConf is n_jobs' one home, and Hydra always passes it.
        self.n_jobs = n_jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from modelforge.sweep.launcher import launch

        hydra_context, config, task_function = self.held()
        return launch(hydra_context, config, task_function, job_overrides, initial_job_idx, self.n_jobs)


ConfigStore.instance().store(group="hydra/launcher", name="parallel", node=ProcessLauncherConf, provider="modelforge")
