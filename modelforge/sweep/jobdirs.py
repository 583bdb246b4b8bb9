"""Job folders a filesystem takes, for every launcher: a sweep job's folder name past 255 bytes is shortened.

`hydra.sweep.subdir=${hydra.job.override_dirname}` with long values (a `model.layers` list) makes a name the
filesystem refuses (OSError 36), which would end the whole sweep. Every launcher composes each job through
Hydra's config loader (`load_sweep_config`), in the driver or in its workers, so modelforge's Hydra app makes
its loader a subclass whose `load_sweep_config` fits the folder: each part of the job's subdir over 255 bytes
becomes a readable prefix and a hash (`core.names.fit_name`), the same in every process, and the long name is
recorded in the sweep's jobs.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl

from modelforge.analysis.summary import PLANNED
from modelforge.core.names import fit_path
from modelforge.run.folder import RunFolder

# Where the shortened job folders of a sweep are recorded in its jobs.json: {long name: folder name}.
SHORTENED = "shortened_folders"


def _fit_subdir(config: Any) -> Any:
    """The composed job's config with `hydra.sweep.subdir` made to fit the filesystem, and recorded."""
    from omegaconf import OmegaConf, read_write
    from omegaconf.errors import OmegaConfBaseException

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
        record_shortened(Path(str(config.hydra.sweep.dir)), str(subdir), fitted)
    return config


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Any:
    """Workers side by side may record at once: one at a time, by a lock file beside jobs.json."""
    fd = os.open(sweep_dir / f".{PLANNED}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_shortened(sweep_dir: Path, full: str, short: str) -> None:
    """Adds `full -> short` to the sweep's jobs.json (written by the sweep callback), so the long name is kept."""
    folder = RunFolder(sweep_dir)
    with _locked(folder.path):
        try:
            record = json.loads((folder.path / PLANNED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict) or record.get(SHORTENED, {}).get(full) == short:
            return
        record.setdefault(SHORTENED, {})[full] = short
        folder.write_json(PLANNED, record)
    print(f"modelforge: the job folder name {full[:60]}... is longer than the filesystem allows; it is {short} "
          f"(recorded in {folder.path / PLANNED})", flush=True)


# This launch's jobs that did not run because their folder held another run, recorded in the sweep's jobs.json.
REFUSED = "refused"


def record_refused(sweep_dir: Path, overrides: list[str]) -> None:
    """Adds a job refused its folder to the sweep's jobs.json, for the summaries (from any worker)."""
    folder = RunFolder(sweep_dir)
    with _locked(folder.path):
        try:
            record = json.loads((folder.path / PLANNED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(record, dict):
            record.setdefault(REFUSED, []).append(list(overrides))
            folder.write_json(PLANNED, record)


def refused_jobs(sweep_dir: Path) -> list[list[str]]:
    """The jobs of the sweep's latest launch that were refused their folder (`record_refused`)."""
    try:
        record = json.loads((sweep_dir / PLANNED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = record.get(REFUSED) if isinstance(record, dict) else None
    return [[str(o) for o in job] for job in found or [] if isinstance(job, list)]


class FittingConfigLoader(ConfigLoaderImpl):  # type: ignore[misc]
    """Hydra's config loader, each job's folder name made to fit as it composes the job (see the module's
    docstring). Launchers pickle the loader to their workers (joblib, submitit, Ray, modelforge's parallel
    launcher), and a pickle names this class, so the workers compose through it too."""

    def load_sweep_config(self, master_config: Any, sweep_overrides: list[str]) -> Any:
        return _fit_subdir(super().load_sweep_config(master_config, sweep_overrides))


def fit_job_folders() -> bool:
    """Makes the Hydra app of this process make its config loader a `FittingConfigLoader`; True when applied,
    False when already applied or on a Hydra that makes its loader elsewhere. A subdir that also names
    `${hydra.job.num}` is resolved only after composing, by the launcher: it is left as it is."""
    try:
        import hydra._internal.hydra as hydra_module
    except ImportError:
        return False
    if getattr(hydra_module, "ConfigLoaderImpl", None) is not ConfigLoaderImpl:
        return False
    hydra_module.ConfigLoaderImpl = FittingConfigLoader  # type: ignore[misc]
    return True
