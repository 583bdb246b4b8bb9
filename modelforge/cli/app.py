"""What every Hydra subcommand shares: the app itself, checks before Hydra starts, and clean exits.

Bad input ends the process with one paragraph on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import logging
import math
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from modelforge.core.names import CONFIG_MODULE, inside
from modelforge.errors import ConfigError, RunFailed, RunInterrupted
from modelforge.run.folder import FolderTaken, RunFolder
from modelforge.run.owned import HYDRA_SUBDIR, Kind, NotOurs, keep_recorded_modules

log = logging.getLogger("modelforge")


def hydra_run_dir() -> Path:
    """The folder Hydra made for this job (Hydra 1.3 does not change the working directory)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def claim_job_folder(folder: RunFolder, kind: Kind, resume: bool = False) -> Any:
    """Claims Hydra's folder for this job (`lifecycle.claim`): Hydra has already written the job's log there
    (conf/config.yaml sets hydra.output_subdir to null, so Hydra writes nothing else into a folder another run
    holds)."""
    from hydra.core.hydra_config import HydraConfig

    from modelforge.run.lifecycle import claim

    key = "hydra.sweep.subdir" if in_multirun() else "hydra.run.dir"
    if in_multirun() and not inside(folder.path.resolve(), sweep_dir().resolve(), strictly=True):
        raise NotOurs(f"hydra.sweep.subdir: the job's folder {folder.path} is not inside the sweep's folder "
                      f"{sweep_dir()}; each job writes a run folder of its own below it (hydra.sweep.subdir="
                      "${hydra.job.num}, the default)")
    return claim(folder, resume, kind, key, allow=(f"{HydraConfig.get().job.name}.log",))


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def say_error(err: Exception | str) -> None:
    """One paragraph on stderr, wrapped at 100 columns."""
    # Paths and names are never broken across lines, so a user can copy them.
    print(textwrap.fill(f"modelforge: error: {err}", width=100, subsequent_indent="  ", break_on_hyphens=False,
                        break_long_words=False), file=sys.stderr)


def exit_with(err: Exception | str) -> NoReturn:
    """Bad input's way out: one paragraph on stderr, exit status 2, no traceback."""
    say_error(err)
    sys.exit(2)


def report_errors(job: Callable[[], Any]) -> Any:
    """Runs `job`; bad input ends the process with its message (no traceback) and exit status 2.

    In a multirun a failed job returns NaN instead (its metrics.json already says `failed` and why): Hydra
    1.3 raises the first failure only after the batch and then skips its end-of-sweep callbacks, which
    would lose the summary. The summary callback makes the sweep exit non-zero when any job failed.
    """
    try:
        return job()
    except RunInterrupted as err:
        if in_multirun():
            from modelforge.sweep.stops import end

            end(sweep_dir(), err)
        print(f"modelforge: {err}", file=sys.stderr)
        sys.exit(err.exit_status)
    except FolderTaken as err:
        # Not logged: the job's log file is in the folder another run holds, which must not change.
        if in_multirun():
            from hydra.core.hydra_config import HydraConfig

            from modelforge.sweep.jobdirs import record_refused

            say_error(err)
            record_refused(sweep_dir(), list(HydraConfig.get().overrides.task))
            return math.nan
        exit_with(err)
    except (ConfigError, RunFailed) as err:
        if in_multirun():
            log.error("job failed: %s", err)
            return math.nan
        exit_with(err)
    except KeyboardInterrupt:
        print("modelforge: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception:
        if not in_multirun():
            raise
        log.exception("job failed")
        return math.nan


def sweep_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().sweep.dir)


def write_hydra_files(cfg: Any, folder: RunFolder) -> None:
    """Hydra's record of the job (config, its own settings, the overrides), as Hydra itself writes it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.instance().cfg
    assert hydra_cfg is not None
    out = RunFolder(folder.path / HYDRA_SUBDIR)
    out.write_text("config.yaml", OmegaConf.to_yaml(cfg))
    out.write_text("hydra.yaml", OmegaConf.to_yaml(hydra_cfg))
    out.write_text("overrides.yaml", OmegaConf.to_yaml(HydraConfig.get().overrides.task))


# Launcher and sweeper options, the Hydra plugin each needs, and the extra that installs it.
PLUGINS = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "sweeps"),
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=ray_cluster": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "hparams_search=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweeps"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweeps"),
}


def check_plugins(argv: list[str]) -> None:
    """A launcher or sweeper whose extra is not installed: say which `pip install` brings it."""
    import importlib.util

    for arg in argv:
        if arg in PLUGINS and importlib.util.find_spec(PLUGINS[arg][0]) is None:
            extra = PLUGINS[arg][1]
            exit_with(f"{arg} needs the {extra!r} extra, which is not installed; install it with: "
                      f"pip install 'modelforge[{extra}]' (in a checkout: make extras EXTRAS={extra})")


# Where commands other than training put their folders when the user chose none: outputs/<name>/.
OUTPUTS = {Kind.PLAN: "plans", Kind.DIAGNOSE: "diagnoses"}


def folder_kind(argv: list[str], kind: Kind) -> list[str]:
    """Overrides that put a command's folders under outputs/<name>/ (plans, diagnoses), apart from training
    runs, unless the user chose the folder."""
    if kind not in OUTPUTS:
        return []
    found = ["~hydra.callbacks.summary"]  # these commands leave no training runs to summarize
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        found.append(f"hydra.run.dir=outputs/{OUTPUTS[kind]}/${{now:%Y-%m-%d}}/${{now:%H-%M-%S-%f}}-${{mf.pid:}}")
    if not any(a.startswith("hydra.sweep.dir=") for a in argv):
        found.append(f"hydra.sweep.dir=outputs/{OUTPUTS[kind]}/multirun/${{now:%Y-%m-%d}}/"
                     "${now:%H-%M-%S-%f}-${mf.pid:}")
    return found


def before_hydra(argv: list[str], kind: Kind = Kind.RUN) -> list[str]:
    """What every modelforge command line does before Hydra starts; returns the overrides Hydra should read.

    Catches misspelled config keys and values of the wrong type (Hydra's own errors exit 1 with no
    suggestion), lets open tables take new keys without `+`, stores the typed schemas, and applies the Hydra
    backport that keeps `--help` and composition from copying the whole ConfigStore on every lookup.
    """
    from modelforge.cli import hydra_guard
    from modelforge.cli.folders import check_folders
    from modelforge.cli.hydra_compat import share_config_store
    from modelforge.front_door import check_overrides, normalize_overrides, register
    from modelforge.sweep.jobdirs import fit_job_folders

    try:
        check_overrides(argv)
    except ConfigError as err:
        exit_with(err)
    check_plugins(argv)
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan runs the plugins' own registrations: before modelforge's, not after
    share_config_store()
    # What Hydra itself would run from the config, held to the allowlist; the folders it would write into.
    hydra_guard.install(exit_with, also=lambda config: check_folders(config, kind))
    fit_job_folders()
    register()
    return normalize_overrides(argv)


def check_job_environment() -> None:
    """Refuses a composed config (a YAML file, a config pack, an experiment) whose `hydra.job.env_set` or
    `env_copy` names a variable that widens what code runs, before the job imports anything it names. Hydra has
    set the variable by then; the trust the command started with was frozen before (`freeze_trust`)."""
    from hydra.core.hydra_config import HydraConfig

    from modelforge.front_door import refuse_widening

    job = HydraConfig.get().job
    refuse_widening(list(job.env_set or {}), "hydra.job.env_set")
    refuse_widening(list(job.env_copy or []), "hydra.job.env_copy")


def run_hydra(argv: list[str], body: Callable[..., Any], check: bool = True, kind: Kind = Kind.RUN,
              trains: bool = False) -> None:
    """Runs modelforge's Hydra app on `argv`: `body` gets the run config and Hydra's run folder.

    With `check`, the config is checked as a whole (`RunConfig.from_mapping`) before `body` starts, so bad
    input exits 2 before anything heavy is imported; without, `body` gets the composed config and checks it
    itself. `kind`: what the command's folders hold (plans and diagnoses go under outputs/<name>/). `body`'s
    return value goes back to sweepers.
    """
    import hydra
    from omegaconf import DictConfig

    from modelforge.api import run_config

    def task(cfg: DictConfig, **handed: Any) -> Any:
        # `handed`: what a launcher gives this job beyond its config (the fused launcher: `arm=`).
        def job() -> Any:
            check_job_environment()
            if in_multirun():  # a worker of the sweep's imports only the user modules the sweep started with
                keep_recorded_modules(sweep_dir())
            return body(run_config(cfg) if check else cfg, hydra_run_dir(), **handed)

        return report_errors(job)

    # Launchers get `task` itself: the fused launcher trains together only the jobs of the command that trains.
    task.modelforge_trains = trains  # type: ignore[attr-defined]
    main = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name="config", version_base="1.3")(task)

    sys.argv = [sys.argv[0], *before_hydra([*argv, *folder_kind(argv, kind)], kind)]
    main()
