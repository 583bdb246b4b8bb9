"""Importing what a config's `_target_` names: an initializer class, or a data-loading function.

A config file is code: a `_target_` imports the module it names. Modules that run programs, touch files or
the network, or load code are refused before anything is imported. (Hydra 1.3.8's `instantiate` has no such
list; this is modelforge's.) Nothing imported is called here.
"""

from __future__ import annotations

import importlib

from modelforge.errors import ConfigError

FORBIDDEN_TARGET_MODULES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "pathlib", "io", "tempfile", "importlib",
    "runpy", "code", "codeop", "pickle", "marshal", "shelve", "ctypes", "multiprocessing", "threading",
    "asyncio", "signal", "pty", "socket", "http", "urllib", "ftplib", "smtplib", "webbrowser",
})


def import_target(target: str, where: str, kind: str) -> object:
    """The object `target` (`package.module.name`) names, imported; `kind` says what it should be, for messages.

    Raises:
        ConfigError: the module is refused, or the name cannot be imported.

    Example:
        >>> import_target("math.sqrt", "data._target_", "function")
        <built-in function sqrt>
        >>> import_target("os.system", "data._target_", "function")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data._target_: _target_='os.system' is refused: modelforge never imports...
    """
    module_name, _, name = str(target).rpartition(".")
    top = module_name.split(".")[0]
    if top in FORBIDDEN_TARGET_MODULES:
        raise ConfigError(f"{where}: _target_={target!r} is refused: modelforge never imports from {top!r} for a "
                          f"config; name your own {kind}")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{where}: cannot import the {kind} _target_={target!r} ({err}); give the full dotted "
                          "path of one importable from this Python (is its package installed, or on PYTHONPATH?)"
                          ) from None
