"""The package's shape: every module imports, no module hides an API name, the front door checks everything
that can be known before TensorFlow, and each convention has one home."""

import dataclasses
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelforge
from modelforge.core.config import schema as config
from modelforge.core.names import HEAD, Status
from modelforge.errors import ConfigError
from tests.helpers import FAST, run_dirs, run_module

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


@pytest.mark.parametrize(("overrides", "words"), [
    (["trainer.objective=val_acc"], ["trainer.objective='val_acc'", "did you mean 'val_accuracy'"]),
    (["trainer.early_stopping.enabled=true", "trainer.early_stopping.monitor=val_acc"],
     ["trainer.early_stopping.monitor='val_acc'", "did you mean 'val_accuracy'"]),
    (["data=synthetic", "data.task=regression", "trainer.objective=val_accuracy"],
     ["regression run", "val_mae"]),
    (["+model.layers=[{type:dense,unit:32}]"], ["needs units", "'unit'"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", "positive integer"]),
    (["logger.experiment_name=7", "logger=mlflow"], ["logger.experiment_name=7", "string"]),
])
def test_front_door_checks_before_tensorflow(compose, overrides, words):
    with pytest.raises(ConfigError) as err:
        modelforge.plan(compose(overrides))
    for word in words:
        assert word in str(err.value)


def test_objective_direction_follows_its_name(compose):
    run = modelforge.run_config(compose(["trainer.objective=val_loss", "trainer.early_stopping.monitor=val_accuracy"]))
    assert run.objective == "val_loss" and run.trainer.early_stopping.mode == "max"
    assert modelforge.run_config(compose()).objective == "val_accuracy"


def test_open_tables_take_keys_without_plus(compose):
    cfg = compose(["initializer.rules.gelu=lecun_uniform", "+model.layers=[{type:dense,units:4,activation:gelu}]"])
    (kernel, *_) = modelforge.plan(cfg).entries
    assert (kernel.choice.name, kernel.choice.source) == ("lecun_uniform", "policy:gelu")


@pytest.mark.parametrize(("overrides", "words"), [
    (["+model.layers=[{type:dense,units:8,kernel_regulariser:l2}]"], ["kernel_regulariser", "kernel_regularizer"]),
    (["layer.kernel_sise=3", "layer=conv"], ["kernel_sise", "kernel_size"]),
])
def test_layer_arguments_are_checked_against_keras_before_building(compose, overrides, words):
    from modelforge.build import build

    with pytest.raises(ConfigError) as err:
        build(modelforge.plan(compose(overrides)))
    for word in words:
        assert word in str(err.value)


def test_optimizer_arguments_are_checked_against_keras(compose):
    from modelforge.run.fit import make_optimizer

    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        make_optimizer(modelforge.run_config(compose(["optimizer.lr=0.01"])).optimizer)
    with pytest.raises(ConfigError, match="did you mean 'momentum'"):
        make_optimizer(modelforge.run_config(compose(["optimizer=sgd", "optimizer.momentun=0.5"])).optimizer)


def test_model_summary_keeps_every_column(compose, tmp_path):
    modelforge.train(compose([*FAST, "model.depth=1"]), run_dir=tmp_path)
    summary = (tmp_path / "model_summary.txt").read_text()
    assert "Param #" in summary and "Output Shape" in summary and "Layer (type)" in summary
    assert " 520 │" in summary  # block1_dense: 64 x 8 + 8


@pytest.mark.slow
def test_bad_objective_exits_2_without_importing_tensorflow(tmp_path):
    code = ("import atexit, sys; atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules "
            "else 'TF_NOT_LOADED')); sys.argv = ['modelforge', 'trainer.objective=val_acc']; "
            "from modelforge.cli.main import main; main()")
    # Fast means refused before TensorFlow is imported: that is checked, not the seconds (make bench times it).
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "TF_NOT_LOADED" in result.stdout
    assert "did you mean 'val_accuracy'" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    (folder,) = run_dirs(tmp_path)
    assert json.loads((folder / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize(("args", "words"), [
    (["+model.layers=[{type:dense,unit:32}]"], ["needs units", "'unit'"]),
    (["optimizer.lr=0.01"], ["takes no argument 'lr'", "did you mean 'learning_rate'"]),
])
def test_bad_keys_exit_2_before_any_model_is_built(tmp_path, args, words):
    result = run_module(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    for word in words:
        assert word in message
    assert "Traceback" not in result.stderr and "Epoch 1" not in result.stdout
    (folder,) = run_dirs(tmp_path)
    assert not (folder / "model_summary.txt").exists() and not (folder / "model.keras").exists()


@pytest.mark.slow
def test_console_script_and_subcommands(tmp_path):
    script = Path(sys.executable).parent / "modelforge"
    result = subprocess.run([str(script), "plan", "layer=conv", "model.units=4"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "block1_conv2d  kernel" in result.stdout
    wrong = run_module(tmp_path, "pln", "layer=conv")
    assert wrong.returncode == 2 and "did you mean 'plan'" in wrong.stderr


@pytest.mark.parametrize(("overrides", "words"), [
    (["data.validation_split=0.9999"], ["leaves 1 of 1797 samples to train on and 1796 to validate on"]),
    (["trainer.batch_size=2000"], ["trainer.batch_size=2000", "1438 of 1797"]),
    (["data=synthetic", "data.num_samples=40"], ["leaves 32 of 40", "8 to validate on", "at least 10"]),
])
def test_splits_that_leave_too_little_are_refused(compose, overrides, words):
    with pytest.raises(ConfigError) as err:
        modelforge.run_config(compose(overrides))
    for word in words:
        assert word in str(err.value)


def test_a_model_too_big_for_the_machine_is_refused_before_building(compose, tmp_path):
    from modelforge.core.init.memory import estimate

    cfg = compose(["model.units=200000", "model.depth=40"])
    needed = estimate(modelforge.plan(cfg), 32, "adam")
    # Weights, their gradients and Adam's two slots: four float32 values per weight.
    assert needed.training_state == 3 * needed.weights and needed.weights == 4 * 1_560_022_800_010
    code = ("import sys, modelforge\ncfg = modelforge.compose(['model.units=200000', 'model.depth=40'])\n"
            f"try:\n    modelforge.train(cfg, run_dir={str(tmp_path / 'run')!r})\n"
            "except modelforge.ConfigError as err:\n    print(err)\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "more than the" in result.stdout and "shrink model.units or model.depth" in result.stdout
    assert "TF_NOT_LOADED" in result.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


def test_train_returns_the_model_the_history_and_the_folder(compose, tmp_path):
    result = modelforge.train(compose([*FAST, "model.depth=1", "trainer.epochs=2"]), run_dir=tmp_path / "run")
    assert isinstance(result, modelforge.TrainResult) and isinstance(result, dict)
    assert result["objective"]["name"] == "val_accuracy"  # the metrics.json dict, as before
    assert result.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.run_dir == tmp_path / "run"
    assert list(result.history["val_accuracy"]) == [row["val_accuracy"] for row in csv_rows(tmp_path / "run")]
    assert len(result.history["loss"]) == 2
    x = np.zeros((3, 64), np.float32)
    np.testing.assert_allclose(result.model.predict(x, verbose=0), result.model(x).numpy(), rtol=1e-6)


def test_build_model_for_an_explicit_input_shape(compose):
    model = modelforge.build_model(compose(["layer=conv", "model.units=4"]), input_shape=(12, 10, 3))
    assert model.input_shape == (None, 12, 10, 3) and model.output_shape == (None, 10)
    with pytest.raises(ConfigError, match="input_shape"):
        modelforge.plan(compose(), input_shape=(0, 3))


def csv_rows(folder):
    from tests.helpers import history

    return history(folder)


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
