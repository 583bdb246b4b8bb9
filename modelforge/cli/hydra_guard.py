"""What Hydra itself takes from a config and runs, held to modelforge's allowlist before Hydra runs it.

A config file is code, and not only through modelforge's `_target_`s: Hydra instantiates `hydra.callbacks`,
configures Python's logging from `hydra.job_logging` and `hydra.hydra_logging` (whose `()` factories and handler
classes are imported and called, and whose `filename`s are opened for writing), and a sweeper takes a sampler
`_target_`. Hydra 1.3 has no allowlist, so modelforge's command lines check these where Hydra reads them, on every
path (run, sweep, plan, resume from jobs.json, a config pack), before anything is imported or opened:

- a callable must come from modelforge, the user's own code, a package trusted in the environment, or the few
  that Hydra and its bundled plugins name themselves (`BUNDLED`);
- a log file must lie inside the run's or the sweep's folder;
- a handler class must be one of the standard library's logging handlers.

A refusal ends the command with exit 2 and one paragraph, as any bad input does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from modelforge.core.config.targets import ENTRY_POINTS, allowed_module
from modelforge.core.names import inside
from modelforge.errors import ConfigError

# What Hydra, its logging and its bundled plugins name in their own configs: allowed by name.
BUNDLED = (
    "hydra.experimental.callbacks.LogJobReturnCallback",
    "hydra.experimental.callbacks.PickleJobInfoCallback",
    "colorlog.ColoredFormatter",
)
# Modules whose every callable a config may name: the Optuna sweeper's samplers.
BUNDLED_MODULES = ("optuna.samplers",)
# The standard library's modules whose classes a logging config may name as `class`.
LOGGING_MODULES = ("logging", "logging.handlers")


def _targets(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every `_target_` (or logging's `()`) in a config node, nested ones too, with where it sits."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("_target_", "()") and isinstance(value, str):
                yield value, f"{where}.{key}"
            else:
                yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def check_callable(target: str, where: str) -> None:
    """Refuses a callable Hydra would import and call, unless it is allowed (see the module's docstring).

    Example:
        >>> check_callable("modelforge.sweep.callback.SweepSummary", "hydra.callbacks.summary._target_")
        >>> check_callable("builtins.open", "hydra.callbacks.x._target_")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: hydra.callbacks.x._target_='builtins.open' is refused: Hydra would import...
    """
    module = target.rpartition(".")[0]
    if target in BUNDLED or module in BUNDLED_MODULES or target in ENTRY_POINTS or (
            module and module.split(".")[0] != "modelforge" and allowed_module(module)):
        return
    raise ConfigError(
        f"{where}={target!r} is refused: Hydra would import and call it, and modelforge lets a config name only "
        f"your own code, packages you trust in the environment (MODELFORGE_TRUSTED_MODULES={target.split('.')[0]} "
        f"python -m modelforge ...), and what Hydra and modelforge name themselves "
        f"({', '.join([*ENTRY_POINTS, *BUNDLED])})")


def check_config(config: Any) -> None:
    """What a composed config hands Hydra to run: its callbacks, its two logging configs, its sweeper's sampler and
    storage; checked once Hydra has composed it, before it instantiates anything."""
    from omegaconf import OmegaConf

    if config is None:
        return
    for key in ("hydra.callbacks", "hydra.job_logging", "hydra.hydra_logging", "hydra.sweeper.sampler"):
        node = OmegaConf.select(config, key)
        if node is not None and OmegaConf.is_config(node):
            for target, where in _targets(OmegaConf.to_container(node, resolve=False), key):
                check_callable(target, where)
    for key in ("hydra.job_logging", "hydra.hydra_logging"):
        node = OmegaConf.select(config, key)
        if node is not None:
            check_handlers(OmegaConf.to_container(node, resolve=False), key, _config_folders(config))
    storage = OmegaConf.select(config, "hydra.sweeper.storage", throw_on_resolution_failure=False)
    if storage is not None:
        check_storage(str(storage), _config_folders(config))


def _config_folders(config: Any) -> list[str]:
    """The run's and the sweep's folder as the config names them (resolved where they resolve)."""
    from omegaconf import OmegaConf

    found = []
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        value = OmegaConf.select(config, key, throw_on_resolution_failure=False)
        if value:
            found.append(str(Path(str(value)).resolve()))
    return found


# How a log file's name may start when it is written before the job's folder is known (a sweep's jobs): inside the
# job's, the run's or the sweep's folder, whatever they resolve to.
_FOLDER_REFERENCES = ("${hydra.runtime.output_dir}/", "${hydra.run.dir}/", "${hydra.sweep.dir}/")


def _inside(filename: str, folders: list[str]) -> bool:
    if filename.startswith(_FOLDER_REFERENCES) and ".." not in Path(filename).parts:
        return True
    if "${" in filename:
        return False
    path = Path(filename).resolve()
    return any(inside(path, Path(f)) for f in folders)


def check_handlers(config: Any, where: str, folders: list[str]) -> None:
    """A logging config's handlers: each class one of the standard library's, each file inside the run's or the
    sweep's folder (see `_inside`).

    Example:
        >>> check_handlers({"handlers": {"f": {"class": "logging.FileHandler",
        ...                 "filename": "${hydra.runtime.output_dir}/job.log"}}}, "hydra.job_logging", [])
        >>> check_handlers({"handlers": {"f": {"class": "logging.FileHandler", "filename": "/etc/passwd"}}},
        ...                "hydra.job_logging", ["/tmp/run"])
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: hydra.job_logging.handlers.f.filename='/etc/passwd' is refused: ...
    """
    handlers = config.get("handlers") if isinstance(config, Mapping) else None
    for name, handler in dict(handlers or {}).items():
        at = f"{where}.handlers.{name}"
        cls = str(handler.get("class") or "")
        if cls and cls.rpartition(".")[0] not in LOGGING_MODULES:
            raise ConfigError(f"{at}.class={cls!r} is refused: a logging handler's class must be one of the "
                              f"standard library's ({', '.join(LOGGING_MODULES)}), e.g. logging.FileHandler")
        filename = handler.get("filename")
        if filename is not None and not _inside(str(filename), folders):
            raise ConfigError(f"{at}.filename={str(filename)!r} is refused: modelforge writes log files only "
                              "inside the run's or the sweep's folder")


def check_storage(storage: str, folders: list[str]) -> None:
    """The sweeper's study storage: none, or an SQLite file inside the sweep's folder (any other URL would write
    or connect where the config says)."""
    path = storage.removeprefix("sqlite:///")
    if storage.startswith("sqlite:///") and _inside(path, folders):
        return
    raise ConfigError(f"hydra.sweeper.storage={storage!r} is refused: a sweep's study is kept in memory (null) or in "
                      "an SQLite file inside the sweep's folder, e.g. sqlite:///${hydra.sweep.dir}/study.db")


def _logging_node(log_config: Any, where: str) -> None:
    """Hydra's own logging config, checked before Hydra configures logging from it while it composes."""
    from omegaconf import OmegaConf

    if log_config is None or not OmegaConf.is_config(log_config):
        return
    plain = OmegaConf.to_container(log_config, resolve=False)
    for target, at in _targets(plain, where):
        check_callable(target, at)
    check_handlers(plain, where, [])


# Checks of the composed config that the command adds (its output folders), run after `check_config`.
_also: list[Callable[[Any], None]] = []


def install(refuse: Callable[[ConfigError], NoReturn], also: Callable[[Any], None] | None = None) -> None:
    """Puts the checks where Hydra first holds what it would run, for this process's Hydra (modelforge's command
    lines): `check_config` where it constructs the callbacks (every run and sweep, right after composing, before
    it instantiates anything or writes a file), then `also` (the command's own check of the composed config),
    and the logging check where it configures its own logging while composing. `refuse` ends the command on a
    refusal (the front door's exit 2)."""
    import hydra._internal.callbacks as callbacks
    import hydra._internal.hydra as internal

    _also[:] = [also] if also is not None else []
    if getattr(callbacks.Callbacks.__init__, "modelforge_guarded", False):
        return
    original, configure_log = callbacks.Callbacks.__init__, internal.configure_log

    def guarded(self: Any, config: Any = None, *args: Any, **kwargs: Any) -> None:
        try:
            check_config(config)
            for check in _also:
                check(config)
        except ConfigError as err:
            refuse(err)
        original(self, config, *args, **kwargs)

    def guarded_log(log_config: Any, *args: Any, **kwargs: Any) -> None:
        try:
            _logging_node(log_config, "hydra.hydra_logging")
        except ConfigError as err:
            refuse(err)
        configure_log(log_config, *args, **kwargs)

    guarded.modelforge_guarded = True  # type: ignore[attr-defined]
    callbacks.Callbacks.__init__ = guarded  # type: ignore[method-assign]
    internal.configure_log = guarded_log  # type: ignore[attr-defined]
