"""`hydra/launcher=fused`: the jobs of a sweep that differ only in what fuses (initializer, seed, the optimizer's
per-arm scalars) trained as one model, each job's folder written as from a separate run.

Hydra imports every plugin at start-up, so this module imports nothing heavy; the work is in
`modelforge.sweep.fused`. The launcher's config is stored here, as Hydra's own launcher plugins store theirs.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.modelforge_launcher.held import HeldSetup


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.modelforge_launcher.fused_launcher.FusedLauncher"
    # Most arms trained as one model; null: as many as half the free memory holds, by the plan's estimate.
    max_arms: Any = None
    # Where each chunk trains: local (this process), ray (a Ray task; `address` reaches a cluster, null starts a
    # local one) or submitit (a submitit job: `cluster` slurm, local, or null for submitit's own choice). The
    # sweep folder must be on a filesystem the workers share.
    executor: str = "local"
    address: Any = None
    cluster: Any = None
    timeout_min: int = 60
    folder: str = "${hydra.sweep.dir}/.submitit/%j"
    # Passed to submitit's update_parameters (e.g. slurm_partition), or Ray's CPUs per chunk (cpus_per_chunk).
    parameters: Any = field(default_factory=dict)
    cpus_per_chunk: Any = None


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="modelforge")


class RememberingLoader:
    """Hydra's config loader, keeping the sweep configs the sweeper composes for the launcher to `take`.

    Hydra's sweepers compose every job of a batch to check it (`validate_batch_is_legal`) and throw the
    configs away; a launcher then composes each again. Composing is ~0.13 s a job here, the largest cost of a
    fused sweep after TensorFlow's import, so the fused launcher takes the sweeper's configs instead. Every
    other call goes to Hydra's loader.
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._kept: dict[tuple[int, tuple[str, ...]], list[DictConfig]] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        composed = self._loader.load_sweep_config(master_config, list(sweep_overrides))
        self._kept.setdefault((id(master_config), tuple(sweep_overrides)), []).append(composed)
        return composed

    def take(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """A config the sweeper composed for these overrides and let go (each once), or a new one."""
        kept = self._kept.get((id(master_config), tuple(sweep_overrides)))
        if kept:
            return kept.pop(0)
        return self._loader.load_sweep_config(master_config, list(sweep_overrides))

    def forget(self) -> None:
        self._kept.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class FusedLauncher(HeldSetup, Launcher):
    def __init__(self, max_arms: int | None, executor: str, **options: Any) -> None:
        # No defaults here: FusedLauncherConf above is their one home, and Hydra always passes them.
        self.max_arms, self.executor, self.options = max_arms, executor, options

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # The sweeper holds this same context: from here on its checks compose through the remembering loader.
        if not isinstance(hydra_context.config_loader, RememberingLoader):
            hydra_context.config_loader = RememberingLoader(hydra_context.config_loader)  # type: ignore[assignment]
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from modelforge.sweep.fused import launch

        hydra_context, config, task_function = self.held()
        try:
            return launch(hydra_context, config, task_function, job_overrides, initial_job_idx, self.max_arms,
                          self.executor, self.options)
        finally:
            if isinstance(hydra_context.config_loader, RememberingLoader):
                hydra_context.config_loader.forget()
