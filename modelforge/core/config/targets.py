"""Importing what a config's `_target_` names: an initializer class, or a data-loading function.

A config file is code: a `_target_` imports the module it names, and a module runs when it is imported. So the
decision comes first, from the top-level module's spec (where its files lie), without executing anything:

- modelforge's few objects made for configs (`ENTRY_POINTS`), and no other modelforge object;
- the user's own code: a module or package whose files lie outside the standard library and outside every
  site-packages (a script's folder, PYTHONPATH, the current folder, an editable install of the user's project);
- packages the user trusts by name in the environment: `MODELFORGE_TRUSTED_MODULES=sklearn,mf_extra_pack`
  (never in a config, since the config is what is not trusted: the command line freezes it at its start, and a
  config that sets it, or any variable that widens what runs (`widens`), is refused);
- for initializers only, Keras' own initializer modules.

Everything else (the standard library, numpy, tensorflow, Keras' utilities, any installed package not trusted)
is refused before it is imported. After the import the object itself must come from an allowed module too, so a
user's module that re-exports `subprocess.run` does not open a door. Nothing imported is called here. (Hydra
1.3.8's `instantiate` has no such list; this one covers modelforge's `_target_`s, not Hydra's own.)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import site
import sys
import sysconfig
import time
from pathlib import Path

from modelforge.errors import ConfigError

# The environment variable that names trusted top-level packages, comma-separated.
TRUST_ENV = "MODELFORGE_TRUSTED_MODULES"
# Environment variables that widen what code runs: modelforge's own (trust, the config search path, and its
# hand-offs between its processes), and those that change what an interpreter, the dynamic loader or a shell
# loads. Trust comes from the environment a command started with, so a config may set none of them.
WIDENING = ("PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONPLATLIBDIR",
            "PYTHONEXECUTABLE", "PYTHONINSPECT", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONWARNINGS",
            "PYTHONBREAKPOINT", "BASH_ENV", "ENV", "SHELL", "PERL5OPT", "NODE_OPTIONS")
WIDENING_PREFIXES = ("MODELFORGE_", "LD_", "DYLD_", "RAY_", "SUBMITIT_")
# The trust the command started with, once the front door has frozen it (`freeze_trust`): a variable that a
# config's `hydra.job.env_set` put into this process's environment later is not read.
_frozen: dict[str, frozenset[str]] = {}


def widens(variable: str) -> bool:
    """Whether a config setting `variable` could widen what code runs.

    Example:
        >>> widens("MODELFORGE_TRUSTED_MODULES"), widens("LD_PRELOAD"), widens("PYTHONPATH"), widens("OMP_NUM_THREADS")
        (True, True, True, False)
    """
    return variable in WIDENING or variable.startswith(WIDENING_PREFIXES)


# modelforge's own hand-offs from a command to the processes it starts (its workers, a continued sweep's jobs,
# MLflow's parent run, TensorFlow's logs asked for). None carries trust: a config may set none of them (they are
# `MODELFORGE_*`), and none is read as trust.
# Each is owned by the module that reads it: run.lifecycle, run.tracking, system.quiet.
HANDOFFS = ("MODELFORGE_RESUME", "MODELFORGE_MLFLOW_PARENT", "MODELFORGE_TF_LOGS")
# The user's own modules as the command (or the run or sweep it continues) found them at its start.
_USERS = "user modules"


# When the command (or the run or sweep it continues) started: a module file made or changed since, and not
# listed then, is not the user's.
_since: dict[str, float] = {}


def freeze_trust() -> None:
    """Reads the trusted packages from the environment now, at the command's start, for the rest of the process
    (and its forked workers), and lists the user's own modules as they are now: a module file that appears
    later (written by a job) is not the user's."""
    _frozen[TRUST_ENV] = _from_environment()
    _frozen[_USERS] = own_modules()
    _since[_USERS] = time.time()


def narrow_user_modules(recorded: list[str], started: float) -> None:
    """Keeps, of the user's own modules, only those a run or sweep recorded when it first `started`: its jobs in
    other processes and every later `resume` import no module that appeared since."""
    _frozen[_USERS] = _frozen.get(_USERS, own_modules()) & frozenset(recorded)
    _since[_USERS] = min(_since.get(_USERS, started), started)


def started_at() -> float:
    """When the command started (`freeze_trust`), or now in a process no command started."""
    return _since.get(_USERS, time.time())


def _made_since(origin: str | None) -> bool:
    """Whether the module file `origin` was made or changed since the command (or its run or sweep) started
    (its status-change time, which no process can set back)."""
    if origin is None or _USERS not in _since:
        return False
    try:
        return os.stat(origin).st_ctime > _since[_USERS]
    except OSError:
        return True


def _from_environment() -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(TRUST_ENV, "").split(",") if n.strip())


def own_modules() -> frozenset[str]:
    """The top-level modules and packages the user's own folders on `sys.path` hold now (the current folder, a
    script's, PYTHONPATH's): listed, not imported."""
    import pkgutil

    roots = _installed_roots()
    places = [p or "." for p in sys.path if not p or (Path(p).is_dir() and not _is_installed(Path(p), roots))]
    return frozenset(found.name for found in pkgutil.iter_modules(places))


def user_modules() -> frozenset[str] | None:
    """The user's own modules as the command found them at its start (`freeze_trust`), narrowed to its run's or
    sweep's record; None in a process no command started (the Python API), where what is on `sys.path` counts."""
    return _frozen.get(_USERS)
# Keras' initializer modules: what an initializer `_target_` may name in Keras.
KERAS_INITIALIZER_MODULES = ("keras.initializers", "keras.src.initializers")
# The modelforge objects a config may name, by the dotted path the docs give, each mapped to where the object
# lives now, so a documented path keeps working when its module moves. Every other modelforge object is refused
# like any untrusted target: some of modelforge writes files where it is told (a download's cache, a summary).
ENTRY_POINTS: dict[str, str] = {
    "modelforge.sweep.callback.SweepSummary": "modelforge.sweep.callback.SweepSummary",
}


def trusted_names() -> frozenset[str]:
    """The top-level packages the user trusts, from `MODELFORGE_TRUSTED_MODULES` (comma-separated).

    Example:
        >>> import os
        >>> os.environ["MODELFORGE_TRUSTED_MODULES"] = " sklearn, mf_extra_pack "
        >>> sorted(trusted_names())
        ['mf_extra_pack', 'sklearn']
        >>> del os.environ["MODELFORGE_TRUSTED_MODULES"]
    """
    return _frozen[TRUST_ENV] if TRUST_ENV in _frozen else _from_environment()


def _installed_roots() -> list[Path]:
    """Folders whose modules are installed, not the user's: the standard library and every site-packages."""
    paths = sysconfig.get_paths()
    found = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    found += site.getsitepackages() + [site.getusersitepackages()]
    return [Path(p).resolve() for p in found if p]


def _is_installed(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    if any(part in ("site-packages", "dist-packages") for part in resolved.parts):
        return True
    return any(resolved == root or root in resolved.parents for root in roots)


def is_users_own(top: str) -> bool:
    """Whether the top-level module `top` is the user's own code: found on sys.path, its files outside the
    standard library and every site-packages. Found from its spec: nothing is executed.

    Example:
        >>> is_users_own("json"), is_users_own("numpy"), is_users_own("no_such_module_anywhere")
        (False, False, False)
    """
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    if not places or spec.origin in ("built-in", "frozen"):
        return False
    roots = _installed_roots()
    if any(_is_installed(Path(p), roots) for p in places):
        return False
    listed = user_modules()  # found by an import hook (an editable install), not listed: its file must be older
    return listed is None or top in listed or not _made_since(spec.origin)


def _appeared(top: str) -> bool:
    """Whether `top` would be the user's own code but for having appeared (or changed) since the start."""
    listed = user_modules()
    if listed is None or top in listed:
        return False
    saved = _frozen.pop(_USERS)
    try:
        return is_users_own(top)
    finally:
        _frozen[_USERS] = saved


def allowed_module(module_name: str, initializer: bool = False) -> bool:
    """Whether a `_target_` may import `module_name` (see the module's docstring); decided before importing.

    Example:
        >>> allowed_module("modelforge.sweep.callback"), allowed_module("modelforge.data.downloads")
        (True, False)
        >>> allowed_module("os"), allowed_module("timeit")
        (False, False)
        >>> allowed_module("keras.initializers", initializer=True), allowed_module("keras.utils", initializer=True)
        (True, False)
    """
    top = module_name.split(".")[0]
    if top == "modelforge":  # (an editable install of modelforge would pass for the user's own code)
        return any(home.rpartition(".")[0] == module_name for home in ENTRY_POINTS.values())
    if top in trusted_names():
        return True
    if initializer and any(module_name == m or module_name.startswith(m + ".") for m in KERAS_INITIALIZER_MODULES):
        return True
    return top not in ("keras", "tensorflow", "numpy") and is_users_own(top)


def _refusal(where: str, target: str, module: str, kind: str) -> ConfigError:
    top = module.split(".")[0]
    if top == "modelforge":
        return ConfigError(
            f"{where}: _target_={target!r} is refused: a config may name only the modelforge objects made for it "
            f"({', '.join(ENTRY_POINTS)}); name your own {kind}")
    written = str(target).split(".")[0]
    if written != top:  # the object the user's module holds comes from elsewhere: name both
        return ConfigError(
            f"{where}: _target_={target!r} is refused: {written!r} only re-exports it from {module!r}, which is "
            f"neither your own code nor a package you trust; name a function or class defined in your own code")
    try:
        missing = importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        missing = True
    if not missing and _appeared(top):
        return ConfigError(
            f"{where}: _target_={target!r} is refused: {top!r} was written after this run or sweep started, so it "
            "is not your own code as the run found it (a job may have written it); if you wrote it and trust it, "
            f"say so outside the config: {TRUST_ENV}={top} python -m modelforge ...")
    if missing:
        return ConfigError(
            f"{where}: _target_={target!r} is refused: there is no module {top!r} on this Python's path (is it "
            "spelled right, and is its folder the one you run in, or on PYTHONPATH?)")
    return ConfigError(
        f"{where}: _target_={target!r} is refused: modelforge imports a config's _target_ only from your own "
        f"code (modules outside the standard library and site-packages) and the modelforge objects made for "
        f"configs, and {top!r} is neither; name your own {kind}, or, if you trust the installed package {top!r}, "
        f"say so outside the config: {TRUST_ENV}={top} python -m modelforge ...")


def _entry_point(found: object) -> bool:
    """Whether an imported object is one of modelforge's ENTRY_POINTS (wherever it was imported from)."""
    path = f"{getattr(found, '__module__', '')}.{getattr(found, '__qualname__', '')}"
    return path in ENTRY_POINTS.values()


def import_target(target: str, where: str, kind: str, initializer: bool = False) -> object:
    """The object `target` (`package.module.name`) names, imported once it is allowed; `kind` says what it
    should be, for messages. Nothing is called.

    Raises:
        ConfigError: the module is refused (before it is imported), the object comes from a refused module,
            or the name cannot be imported.

    Example:
        >>> import_target("modelforge.sweep.callback.SweepSummary", "hydra.callbacks", "callback").__name__
        'SweepSummary'
        >>> import_target("modelforge.data.downloads.fetch", "data._target_", "function")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data._target_: _target_='modelforge.data.downloads.fetch' is refused: a...
        >>> import_target("timeit.timeit", "data._target_", "function")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data._target_: _target_='timeit.timeit' is refused: modelforge imports...
    """
    target = ENTRY_POINTS.get(str(target), str(target))
    module_name, _, name = target.rpartition(".")
    if not module_name or not allowed_module(module_name, initializer) or (
            module_name.startswith("modelforge.") and target not in ENTRY_POINTS.values()):
        raise _refusal(where, target, module_name or target, kind)
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{where}: cannot import the {kind} _target_={target!r} ({err}); give the full dotted "
                          "path of one importable from this Python (is its package installed, or on PYTHONPATH?)"
                          ) from None
    origin = getattr(found, "__module__", None) if inspect.isfunction(found) or inspect.isclass(found) or \
        inspect.isbuiltin(found) else module_name
    from_modelforge = isinstance(origin, str) and origin.split(".")[0] == "modelforge"
    if not isinstance(origin, str) or not allowed_module(origin, initializer) or (from_modelforge and
                                                                                  not _entry_point(found)):
        raise _refusal(where, target, str(origin), kind)
    return found
