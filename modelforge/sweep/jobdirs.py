"""Job folders a filesystem takes, for every launcher: a sweep job's folder name past 255 bytes is shortened.

`hydra.sweep.subdir=${hydra.job.override_dirname}` with long values (a `model.layers` list) makes a name the
filesystem refuses (OSError 36), which would end the whole sweep. Every launcher composes each job through
Hydra's config loader (`load_sweep_config`), in the driver or in its workers, so modelforge wraps that one
method: each part of the job's subdir over 255 bytes becomes a readable prefix and a hash (`core.names.
fit_name`), the same in every process, and the long name is recorded in the sweep's jobs.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

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


def fit_job_folders() -> bool:
    """Wraps Hydra 1.3's `ConfigLoaderImpl.load_sweep_config` so each job's folder name fits (see the module's
    docstring); True when applied, False when already applied or on a Hydra without that method. A subdir that
    also names `${hydra.job.num}` is resolved only after composing, by the launcher: it is left as it is."""
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
