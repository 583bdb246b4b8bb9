"""What modelforge's launchers share: they keep what Hydra's `setup` hands them until `launch`.

A mixin, not a `Launcher`: Hydra's plugin scan registers every Launcher subclass it finds, and this is none.
"""

from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class HeldSetup:
    """Keeps Hydra's context, the task function and the config from `setup`; `held()` returns them."""

    config: DictConfig | None = None
    task_function: TaskFunction | None = None
    hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def held(self) -> tuple[HydraContext, DictConfig, TaskFunction]:
        """What `setup` was given (Hydra calls `setup` before `launch`)."""
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        return self.hydra_context, self.config, self.task_function
