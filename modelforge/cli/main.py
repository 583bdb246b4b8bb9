"""`python -m modelforge [COMMAND] [overrides]`: one entry for every command; `train` when none is named."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from modelforge.core.names import CONFIG_MODULE
from modelforge.errors import closest

# Each subcommand: its module (with a `main(argv)`) and what it does, as `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("modelforge.cli.train", "train the model and leave a run folder under outputs/ (the default)"),
    "plan": ("modelforge.cli.plan", "print and save the init plan (each weight's initializer), no training"),
    "diagnose": ("modelforge.cli.diagnose", "the init health report: does the signal survive the depth?"),
    "report": ("modelforge.cli.report", "(re)build summary.md, summary.csv and curves.png for FOLDER's runs"),
    "resume": ("modelforge.cli.resume", "continue an unfinished run, or a stopped sweep, in FOLDER"),
}
DEFAULT = "train"
# Each command's own help: what it takes, what that is, and two examples.
USAGE: dict[str, tuple[str, str, tuple[str, str]]] = {
    "train": ("[overrides]", "group=option and group.key=value pairs; -m sweeps over comma-separated values",
              ("python -m modelforge layer=conv initializer=he_normal trainer.epochs=5",
               "python -m modelforge -m 'initializer=glob(*)' seed=0,1,2")),
    "plan": ("[overrides]", "the config, as for train: the plan is the one that config's run would follow",
             ("python -m modelforge plan layer=lstm",
              "python -m modelforge plan initializer=lsuv model.depth=30")),
    "diagnose": ("[overrides]", "the config, as for train: the model diagnosed is the one that run would build",
                 ("python -m modelforge diagnose experiment=he2015 initializer=glorot_uniform",
                  "python -m modelforge diagnose experiment=glorot2010 initializer=standard_uniform")),
    "report": ("FOLDER", "a sweep folder (rebuilt in place), a run folder, or any folder holding run folders "
               "(summaries under outputs/report/)",
               ("python -m modelforge report outputs/multirun/2026-11-30/12-00-00-000000-4242",
                "python -m modelforge report outputs")),
    "resume": ("FOLDER", "an unfinished run folder (continued from its checkpoint) or a stopped sweep folder "
               "(completed jobs kept, the others continued or started)",
               ("python -m modelforge resume outputs/2026-11-30/12-00-00-000000-4242",
                "python -m modelforge resume outputs/multirun/2026-11-30/12-00-00-000000-4242")),
}
# Commands that import TensorFlow, whose start-up noise the terminal is spared (see modelforge.system.quiet).
QUIET = ("train", "diagnose", "resume")


def _options(group: str) -> list[str]:
    """The options modelforge ships in a group: conf/'s files, and what its Hydra plugins store in Hydra's
    ConfigStore (as Hydra's own launchers store theirs: `hydra/launcher=fused`)."""
    from importlib import resources

    folder = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted({p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")} | set(_stored(group)))


def _stored(group: str) -> list[str]:
    """The options modelforge's launcher plugins store in `group` (importing them is cheap, and Hydra's help
    imports every plugin anyway)."""
    import pkgutil

    from hydra.core.config_store import ConfigStore

    import hydra_plugins.modelforge_launcher as plugins

    for found in pkgutil.iter_modules(plugins.__path__):
        importlib.import_module(f"{plugins.__name__}.{found.name}")
    node: Any = ConfigStore.instance().repo
    for part in group.split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return [name.removesuffix(".yaml") for name, entry in node.items()
            if getattr(entry, "provider", None) == "modelforge"]


def usage() -> str:
    """The subcommands, and the launchers and sweepers modelforge ships, above Hydra's own help."""
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m modelforge [COMMAND] [overrides]   (or: modelforge [COMMAND] [overrides])", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "sweeps (-m):",
              f"  hydra/launcher=   {', '.join(_options('hydra/launcher'))}  (and Hydra's basic, joblib, "
              "submitit_local)",
              f"  hparams_search=   {', '.join(_options('hparams_search'))}",
              "  each names the extra it needs when that is missing (pip install 'modelforge[sweeps|slurm|ray]')"]
    lines += ["", f"With no command, `{DEFAULT}`. `python -m modelforge COMMAND --help` for one command's help.", ""]
    return "\n".join(lines)


# Hydra's help template for a command's help: its list of config groups (the app's header, the whole config
# and the footer belong to the bare `--help`).
GROUPS_ONLY = "$APP_CONFIG_GROUPS"


def command_help(command: str) -> str:
    """`python -m modelforge COMMAND --help`: what the command does, its arguments and two examples (the commands
    that take overrides then get Hydra's list of config groups below).

    Example:
        >>> command_help("plan").splitlines()[0]
        'usage: python -m modelforge plan [overrides]'
    """
    takes, meaning, examples = USAGE[command]
    lines = [f"usage: python -m modelforge {command} {takes}", "", f"{command}: {COMMANDS[command][1]}", "",
             "arguments:", f"  {takes}  {meaning}", "", "examples:", *(f"  {e}" for e in examples), ""]
    if takes == "[overrides]":
        lines += ["The config groups and their options (pick one with group=option):", ""]
    return "\n".join(lines)


def version() -> str:
    """`python -m modelforge --version`: modelforge's version, then the Hydra it runs on.

    Example:
        >>> version().startswith("modelforge ")
        True
    """
    from importlib.metadata import version as installed

    return f"modelforge {installed('modelforge')} (hydra-core {installed('hydra-core')})"


def main(argv: list[str] | None = None) -> None:
    """Dispatches to the subcommand named first in `argv` (default: `sys.argv[1:]`)."""
    from modelforge.core.config.targets import freeze_trust

    freeze_trust()  # what the command started with; a config's hydra.job.env_set comes later and is not read
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--version" in argv:  # modelforge's own, not Hydra's (which `--version` would print after composing)
        print(version())
        sys.exit(0)
    command, explicit = DEFAULT, False
    if argv and argv[0] in COMMANDS:
        command, argv, explicit = argv[0], argv[1:], True
    elif argv and not argv[0].startswith("-") and "=" not in argv[0]:
        near = closest(argv[0], COMMANDS)
        print(f"modelforge: error: unknown command {argv[0]!r}" + (f" (did you mean {near!r}?)" if near else "")
              + f"; commands: {', '.join(COMMANDS)}; overrides look like key=value", file=sys.stderr)
        sys.exit(2)
    if any(a in ("--help", "-h") for a in argv):
        print(usage() if command == DEFAULT and not explicit else command_help(command))
        if USAGE[command][0] == "FOLDER":
            sys.exit(0)
        if explicit:  # the command's own help says the rest: Hydra adds the group list alone, not its app help
            argv = [*argv, f"hydra.help.template='{GROUPS_ONLY}'"]
    if command in QUIET:
        from modelforge.system.quiet import ENV, quiet_stderr, wanted

        if wanted(argv):
            quiet_stderr()
        else:  # asked for (hydra.verbose): every later import of TensorFlow, here or in a worker, shows its logs
            os.environ[ENV] = "1"
    module = importlib.import_module(COMMANDS[command][0])
    try:
        status = module.main(argv) or 0
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, int) and done.code is not None:
            print(done.code, file=sys.stderr)
    finish(status)


# Modules whose atexit work must run (a local Ray cluster to stop): with them loaded, the process ends as usual.
_NEEDS_TEARDOWN = ("ray",)


def _workers() -> bool:
    """Whether this process has live multiprocessing (or loky) worker processes."""
    return "multiprocessing" in sys.modules and bool(sys.modules["multiprocessing"].active_children())


def finish(status: int) -> None:
    """Ends the command with `status`. With TensorFlow loaded, the interpreter's teardown takes 1-1.5 s
    (measured), so once every stream and log handler is flushed and closed (runs close their own files and
    trackers before they return) the process exits at once. Not while worker processes live (joblib's loky
    keeps its workers for 300 s): the interpreter's exit stops them; they would otherwise outlive it, holding
    its output pipes open."""
    if "tensorflow" not in sys.modules or any(name in sys.modules for name in _NEEDS_TEARDOWN) or _workers():
        sys.exit(status)
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)
