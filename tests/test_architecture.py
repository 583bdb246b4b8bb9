"""The package's shape: every module imports, functions are short, the run config holds no defaults, only the
command line and the sweep glue exit, the where-things-live table is true, and each concept has one home."""

import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import modelforge
from modelforge.core.config import schema as config
from modelforge.core.names import HEAD, Status
from modelforge.errors import ConfigError
from tests.helpers import FAST

REPO = Path(__file__).resolve().parents[1]


def every_module():
    return sorted(m.name for m in pkgutil.walk_packages(modelforge.__path__, "modelforge."))


def test_every_module_imports_and_the_api_still_answers(compose, tmp_path):
    for name in every_module():
        importlib.import_module(name)
    assert {"modelforge.cli.plan", "modelforge.core.init.plan", "modelforge.run.lifecycle"} <= set(every_module())
    # Importing `modelforge.cli.plan` (a module) must not replace the API function `modelforge.plan`.
    for name in modelforge.__all__:
        assert importlib.util.find_spec(f"modelforge.{name}") is None, f"a module shadows modelforge.{name}"
    cfg = modelforge.compose([*FAST, "model.depth=1"])
    run = modelforge.run_config(cfg)
    assert isinstance(run, modelforge.RunConfig) and run.trainer.epochs == 1
    assert modelforge.plan(cfg).entries[-1].layer == HEAD
    assert [layer.name for layer in modelforge.build_model(run).layers][-1] == HEAD
    metrics = modelforge.train(cfg, run_dir=tmp_path / "run")
    assert metrics["status"] == Status.COMPLETED == "completed"
    # A run that died before its first checkpoint: resume starts it over, in its own folder, with its config.
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / "config.yaml").write_text((tmp_path / "run" / "config.yaml").read_text())
    (dead / "metrics.json").write_text(json.dumps({"status": "running", "pid": 1}))
    resumed = modelforge.resume(dead)
    assert resumed["status"] == "completed" and resumed["final"] == metrics["final"]
    assert resumed["resumed"][0]["from"] == "dead"
    with pytest.raises(ConfigError):
        modelforge.run_config(compose(["trainer.objective=val_acc"]))


# The guide's bar for a function one can hold in one's head.
MAX_FUNCTION_LINES = 60


def test_every_function_is_short_enough_to_read_at_once():
    """No function or method of the package or its Hydra plugins is longer than the bar (docstring included)."""
    import ast

    long = []
    for path in sorted([*(REPO / "modelforge").rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_run_config_dataclasses_hold_no_defaults():
    # Defaults live in conf/ only; the typed config and Hydra's schemas made from it have none.
    for cls in [*config.SCHEMAS.values(), config.EarlyStopping, *config.LOGGER_CLASSES.values()]:
        defaults = [f.name for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert defaults == [], cls


def test_only_the_command_line_and_the_sweep_glue_end_the_process():
    """Below the sweep glue a stop is raised (`SweepStopped`, `RunInterrupted`) and bad input is a
    `ConfigError`: only the command line and the sweep layer exit, and a sweep's stop is ended in one place."""
    exits = sorted(str(path.relative_to(REPO)) for path in (REPO / "modelforge").rglob("*.py")
                   if "sys.exit(" in path.read_text() or "SystemExit(" in path.read_text())
    assert all(name.startswith(("modelforge/cli/", "modelforge/sweep/")) for name in exits), exits
    stopped = [str(path.relative_to(REPO)) for path in (REPO / "modelforge").rglob("*.py")
               if "sweep stopped by" in path.read_text()]
    assert stopped == ["modelforge/sweep/stops.py"]


def test_the_where_things_live_table_names_real_modules_and_names():
    """Each row of docs/architecture.md's "where things live" table: the module imports and holds the name. (That
    every module is placed somewhere is the module map's test, tests/docs/test_docs.py.)"""
    import re

    text = (REPO / "docs" / "architecture.md").read_text()
    table = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| [^|]+ \| `(modelforge[\w.]*)` \| `(\w+)` \|$", table, re.M)
    assert len(rows) >= 40
    for module, name in rows:
        assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"
    assert len({module for module, _ in rows}) == len(rows), "a module is listed twice"


def test_one_home_for_lsuvs_decisions_and_one_typing_engine():
    """LSUV's keys and words are written in `core/lsuv.py` only; a field's type is read in `core/config/fields.py`
    only (the schema, OmegaConf's twins and the command line's value check all ask it)."""
    def holders(*words):
        return sorted(str(path.relative_to(REPO)) for path in (REPO / "modelforge").rglob("*.py")
                      if any(word in path.read_text() for word in words))

    assert holders('"include_head"', '"target_variance"', "did not converge for") == ["modelforge/core/lsuv.py"]
    assert holders("typing.get_type_hints(", "get_type_hints(") == ["modelforge/core/config/fields.py"]
