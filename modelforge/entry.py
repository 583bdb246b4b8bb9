"""What every command-line entry shares: Hydra's run folder, and bad input as a clean one-paragraph error."""

from __future__ import annotations

import logging
import math
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from modelforge.errors import ConfigError, RunFailed

T = TypeVar("T")
log = logging.getLogger("modelforge")


def hydra_run_dir() -> Path:
    """The folder Hydra made for this job (Hydra 1.3 does not change the working directory)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def _exit_with(err: Exception) -> NoReturn:
    """Bad input's way out: one paragraph on stderr, exit status 2, no traceback."""
    print(textwrap.fill(f"modelforge: error: {err}", width=100, subsequent_indent="  "), file=sys.stderr)
    sys.exit(2)


def report_errors(job: Callable[[], T]) -> T | float:
    """Runs `job`; bad input ends the process with its message (no traceback) and exit status 2.

    In a multirun a failed job returns NaN instead (its metrics.json already says `failed` and why): Hydra
    1.3 raises the first failure only after the batch and then skips its end-of-sweep callbacks, which
    would lose the summary. The summary callback makes the sweep exit non-zero when any job failed.
    """
    try:
        return job()
    except (ConfigError, RunFailed) as err:
        if in_multirun():
            log.error("job failed: %s", err)
            return math.nan
        _exit_with(err)
    except KeyboardInterrupt:
        print("modelforge: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception:
        if not in_multirun():
            raise
        log.exception("job failed")
        return math.nan


def before_hydra(argv: list[str]) -> None:
    """What every modelforge command line does before Hydra starts.

    Catches misspelled config keys (Hydra's own error has no suggestion), and applies the Hydra backport
    that keeps `--help` and composition from copying the whole ConfigStore on every lookup.
    """
    from modelforge.hydra_compat import share_config_store
    from modelforge.schema import check_override_keys

    try:
        check_override_keys([a for a in argv if not a.startswith("-")])
    except ConfigError as err:
        _exit_with(err)
    share_config_store()


def run_job(cfg: Any) -> Any:
    """The body of `python -m modelforge`: train in Hydra's run folder, return the objective."""
    from modelforge.runlog import RunFolder
    from modelforge.training import run_training

    def job() -> Any:
        metrics = run_training(cfg, folder=RunFolder(hydra_run_dir()))
        print(f"run folder: {metrics['run_dir']}  {metrics['objective']['name']}="
              f"{metrics['objective']['value']:.4f}  ({metrics['status']})")
        return metrics["objective"]["value"]

    return report_errors(job)
