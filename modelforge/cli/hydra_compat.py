"""A backport of one Hydra 1.4 fix that every modelforge command line benefits from.

Hydra 1.3's `StructuredConfigSource` keeps a reference to the ConfigStore, and every
`CachingConfigRepository` deep-copies its sources, so each config lookup copies the whole store: Hydra's
own configs, every installed plugin's (launchers, sweepers) and modelforge's schemas. `--help` makes over a
hundred such lookups, which was most of its time. Hydra PR 2928 (merged for 1.4) stops storing the
singleton; copying the source without the store is the same behaviour, since `ConfigStore.load` already
hands out a fresh copy of each node.
"""

from __future__ import annotations

import copy
from typing import Any


def share_config_store() -> bool:
    """Makes copies of Hydra 1.3's structured config source share the ConfigStore; True when applied.

    Does nothing on a Hydra whose source no longer holds the store, or when already applied.
    """
    try:  # an optimization only: on any Hydra it does not recognise, leave Hydra as it is
        from hydra._internal.sources_registry import SourcesRegistry
        from hydra.core.plugins import Plugins

        # Hydra's plugin scan re-executes its core plugin modules, making new classes: patch the one it uses.
        Plugins.instance()
        source_class = SourcesRegistry.instance().resolve("structured")
        if "__deepcopy__" in vars(source_class):
            return False
        probe = source_class(provider="modelforge", path="structured://")
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    if "store" not in vars(probe):  # Hydra >= 1.4 fetches the singleton on each call: nothing to fix
        return False

    def __deepcopy__(self: Any, memo: dict[int, Any]) -> Any:
        clone = copy.copy(self)  # provider and path are strings; the store is the process-wide singleton
        memo[id(self)] = clone
        return clone

    source_class.__deepcopy__ = __deepcopy__  # type: ignore[attr-defined]
    return True


# Where the shortened job folders of a sweep are recorded in its jobs.json (see `fit_job_folders`).
SHORTENED = "shortened_folders"


def _fit_subdir(config: Any) -> Any:
    """The composed job's config with `hydra.sweep.subdir` made to fit the filesystem, and recorded."""
    from omegaconf import OmegaConf, read_write
    from omegaconf.errors import OmegaConfBaseException

    from modelforge.core.names import fit_path

    try:
        subdir = OmegaConf.select(config, "hydra.sweep.subdir", default=None)
    except OmegaConfBaseException:  # names the job's number, set only once the launcher numbers the job
        return config
    if subdir is None:
        return config
    fitted = fit_path(str(subdir))
    if fitted != str(subdir):
        with read_write(config.hydra.sweep):
            config.hydra.sweep.subdir = fitted
        _record_shortened(str(config.hydra.sweep.dir), str(subdir), fitted)
    return config


def _record_shortened(sweep_dir: str, full: str, short: str) -> None:
    """Adds `full -> short` to the sweep's jobs.json (written by the sweep callback), so the long name is kept."""
    import json
    from pathlib import Path

    from modelforge.analysis.summary import PLANNED
    from modelforge.run.folder import RunFolder

    folder = RunFolder(sweep_dir)
    try:
        record = json.loads((folder.path / PLANNED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or record.get(SHORTENED, {}).get(full) == short:
        return
    record.setdefault(SHORTENED, {})[full] = short
    folder.write_json(PLANNED, record)
    print(f"modelforge: the job folder name {Path(full).name[:60]}... is longer than the filesystem allows; "
          f"it is {short} (recorded in {folder.path / PLANNED})", flush=True)


def fit_job_folders() -> bool:
    """Makes Hydra 1.3's config loader give each sweep job a folder name the filesystem takes: a part of
    `hydra.sweep.subdir` over 255 bytes (`${hydra.job.override_dirname}` with long values) becomes a readable
    prefix and a hash instead of failing the whole sweep with OSError 36. (A subdir that also names
    `${hydra.job.num}` is resolved only after this, by the launcher: it is left as it is.) Every launcher composes its jobs
    through this loader in the driver, so it holds for the basic, parallel, fused, joblib, submitit and Ray
    launchers alike. True when applied (once)."""
    try:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
    except ImportError:
        return False
    original = ConfigLoaderImpl.load_sweep_config
    if getattr(original, "modelforge_fits", False):
        return False

    def load_sweep_config(self: Any, master_config: Any, sweep_overrides: list[str]) -> Any:
        return _fit_subdir(original(self, master_config, sweep_overrides))

    load_sweep_config.modelforge_fits = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign]
    return True
