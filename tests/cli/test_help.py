"""Each command's own help: what it does, its arguments, two examples; then, for commands that take overrides,
the config groups."""

import pytest

from modelforge.cli.main import COMMANDS, USAGE
from tests.helpers import run_module


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_has_its_own_help(tmp_path, command):
    result = run_module(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    takes, _, examples = USAGE[command]
    assert result.stdout.startswith(f"usage: python -m modelforge {command} {takes}\n")
    assert COMMANDS[command][1] in result.stdout
    assert all(example in result.stdout for example in examples) and len(examples) == 2
    groups = "initializer: auto, delta_orthogonal" in result.stdout
    assert groups == (takes == "[overrides]")
    # The command's own help, then the groups alone: not the app's header, the whole config or the footer.
    assert "== Config ==" not in result.stdout and "modelforge: Keras models from config" not in result.stdout
    assert not list(tmp_path.rglob("metrics.json"))  # help runs nothing


def test_plan_help_differs_from_train_help_and_the_bare_help_lists_commands(tmp_path):
    helps = {c: run_module(tmp_path, *c.split(), "--help").stdout for c in ("plan", "train", "")}
    assert helps["plan"] != helps["train"]
    assert helps[""].startswith("usage: python -m modelforge [COMMAND] [overrides]")
    assert all(f"  {c}" in helps[""] for c in COMMANDS)
    assert "== Config ==" in helps[""] and "modelforge: Keras models from config" in helps[""]  # the whole help


def test_version_is_modelforges_own(tmp_path):
    from importlib.metadata import version

    result = run_module(tmp_path, "--version")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"modelforge {version('modelforge')} (hydra-core {version('hydra-core')})\n"
    assert not list(tmp_path.rglob("*"))  # nothing composed, nothing written
