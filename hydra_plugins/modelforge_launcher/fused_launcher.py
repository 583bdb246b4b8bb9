"""`hydra/launcher=fused`: the jobs of a sweep that differ only in what fuses (initializer, seed, the optimizer's
per-arm scalars) trained as one model, each job's folder written as from a separate run.

Hydra imports every plugin at start-up, so this module imports nothing heavy; the work is in
`modelforge.sweep.fused`. The launcher's config is stored here, as Hydra's own launcher plugins store theirs.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

from hydra_plugins.modelforge_launcher.held import HeldSetup


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.modelforge_launcher.fused_launcher.FusedLauncher"
    # Most arms trained as one model; null: as many as half the free memory holds, by the plan's estimate.
    max_arms: Any = None


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="modelforge")


class FusedLauncher(HeldSetup, Launcher):
    def __init__(self, max_arms: int | None = None, **kwargs: Any) -> None:
        self.max_arms = max_arms

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from modelforge.sweep.fused import launch

        hydra_context, config, task_function = self.held()
        return launch(hydra_context, config, task_function, job_overrides, initial_job_idx, self.max_arms)
