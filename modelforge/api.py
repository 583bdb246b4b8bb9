"""What other code imports: compose a config, plan it, build its model, train it. No CLI needed.

Example:
    >>> import modelforge
    >>> cfg = modelforge.compose(["layer=conv", "initializer=he_normal", "trainer.epochs=1"])
    >>> modelforge.plan(cfg).entries[0].choice.source
    'override'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    from omegaconf import DictConfig

    from modelforge.initplan import Plan


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Composes modelforge's config with command-line style overrides, outside any Hydra app.

    Args:
        overrides: e.g. `["layer=conv", "model.units=16"]`.
        config_name: the primary config in `modelforge.conf`.

    Raises:
        ConfigError: an unknown group option, a misspelled key, or a value of the wrong type.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from modelforge.errors import ConfigError
    from modelforge.schema import check_override_keys

    check_override_keys(overrides)
    try:
        if GlobalHydra.instance().is_initialized():
            return hydra_compose(config_name=config_name, overrides=list(overrides))
        with initialize_config_module("modelforge.conf", version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        detail = " ".join(f"{err}: {err.__cause__ or ''}".split())
        raise ConfigError(f"cannot compose the config with {list(overrides)}: {detail}") from None


def plan(cfg: Any) -> Plan:
    """The init plan of a composed config: one entry per weight, without building anything."""
    from modelforge.initplan import make_plan

    return make_plan(cfg)


def build_model(cfg: Any) -> keras.Model:
    """Builds the config's model, every kernel initialized as the plan says."""
    from modelforge.builder import build

    return build(plan(cfg))


def train(cfg: Any, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Trains the config's model and writes a run folder; returns the contents of `metrics.json`.

    Args:
        cfg: a composed config.
        run_dir: where the run folder goes; a new folder under `outputs/` when None.
    """
    from modelforge.training import run_training

    return run_training(cfg, run_dir)
