"""The command line, end to end in subprocesses, as a user types it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CLI_RUN_FILES, assert_refused, history, run_dirs
from tests.helpers import run_module as run

# Prints whether TensorFlow got imported, whatever way the entry point exits.
PROBE = ("import atexit, sys; atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules "
         "else 'TF_NOT_LOADED')); sys.argv = ['modelforge', *sys.argv[1:]]; from {module} import main; main()")


def probe(cwd, module, *args):
    return subprocess.run([sys.executable, "-c", PROBE.format(module=module), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_conv_he_normal_run_end_to_end_and_repeats(tmp_path):
    args = ["layer=conv", "initializer=he_normal", "model.units=8", "trainer.epochs=2"]
    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    second = run(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    a, b = run_dirs(tmp_path)
    assert a != b
    for folder in (a, b):
        assert CLI_RUN_FILES <= {p.name for p in folder.iterdir()}, folder
        assert (folder / ".hydra" / "overrides.yaml").exists()
    metrics = json.loads((a / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 2
    plan = json.loads((a / "init_plan.json").read_text())
    kernels = [e for e in plan if e["weight"] == "kernel"]
    assert [e["layer"] for e in kernels] == ["block1_conv2d", "block2_conv2d", "head"]
    assert all(e["initializer"] == "he_normal" and e["source"] == "override" for e in kernels)
    assert kernels[0]["shape"] == [3, 3, 1, 8]
    # The plan table opens the run, and Keras' progress bar follows.
    assert "block1_conv2d  kernel" in first.stdout and "override" in first.stdout
    assert "Epoch 1/2" in first.stdout
    # modelforge.log holds the run's own story: start, plan, every epoch, the end.
    story = (a / "modelforge.log").read_text()
    for line in ("run started in", "plan ", "epoch 1/2: ", "epoch 2/2: ", "run completed"):
        assert line in story, line
    # Two processes, one config: the same numbers.
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    assert history(a)[0].keys() >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["model.depth=0"],
    ["+model.layers=[{type:dense,units:8,activation:relu7}]"],
    ["layer=conv", "data=synthetic"],
    ["trainer.batch_size=0"],
    ["initializer=variance_scaling", "initializer.distribution=cauchy"],
])
def test_bad_input_exits_cleanly(tmp_path, args):
    result = run(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("modelforge: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    (folder,) = run_dirs(tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert not (folder / "model.keras").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["--cfg", "job", "layer=conv"]])
def test_help_and_cfg_do_not_import_tensorflow(tmp_path, args):
    result = probe(tmp_path, "modelforge.cli.main", *args)
    assert result.returncode == 0, result.stderr
    assert "TF_NOT_LOADED" in result.stdout
    assert ("initializer" in result.stdout) and not Path(tmp_path, "outputs").exists()
    if args == ["--help"]:
        # The subcommands first, then Hydra's own help with modelforge's header and every group.
        usage, _, hydra_help = result.stdout.partition("modelforge: Keras models from config")
        assert usage.startswith("usage: python -m modelforge [COMMAND]") and hydra_help
        for command in ("train", "plan", "diagnose", "report"):
            assert f"\n  {command} " in usage
        # conf/'s launchers and the one modelforge's plugin stores in Hydra's ConfigStore.
        assert "hydra/launcher=   fused, parallel, ray_cluster, slurm" in usage
        assert "data: callable, csv, digits, images, mnist, npz, synthetic" in hydra_help


@pytest.mark.slow
def test_plan_command_prints_and_saves_without_tensorflow(tmp_path):
    result = probe(tmp_path, "modelforge.cli.main", "plan", "layer=conv", "initializer=he_normal")
    assert result.returncode == 0, result.stderr
    assert "TF_NOT_LOADED" in result.stdout
    assert "block2_conv2d  kernel" in result.stdout
    (plan_file,) = Path(tmp_path, "outputs").rglob("init_plan.json")
    plan = json.loads(plan_file.read_text())
    assert {e["source"] for e in plan if e["weight"] == "kernel"} == {"override"}
    assert not (plan_file.parent / "metrics.json").exists()


@pytest.mark.slow
def test_import_modelforge_is_cheap():
    code = "import sys, modelforge; print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_diagnose_command_writes_report(tmp_path):
    result = run(tmp_path, "diagnose", "model.depth=12", "initializer=glorot_uniform")
    assert result.returncode == 0, result.stderr
    assert "verdict: signal shrinks" in result.stdout and "vanishing" in result.stdout
    (report,) = Path(tmp_path, "outputs").rglob("init_report.json")
    assert (report.parent / "init_report.png").exists()
    assert len(json.loads(report.read_text())["block_second_moments"]) == 12


@pytest.mark.slow
def test_help_with_the_hydra_backport_matches_plain_hydra(tmp_path):
    patched = run(tmp_path, "--help")
    # With the backport turned off: Hydra 1.3 exactly as shipped.
    plain = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'modelforge'; "
                            "import modelforge.cli.hydra_compat as compat; compat.share_config_store = lambda: False; "
                            "from modelforge.cli.main import main; main()", "--help"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert patched.returncode == plain.returncode == 0, plain.stderr
    assert patched.stdout == plain.stdout
    assert "data: callable, csv, digits, images, mnist, npz, synthetic" in patched.stdout


@pytest.mark.slow
def test_a_launcher_without_its_extra_names_the_install_line(tmp_path):
    import importlib.util

    assert importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None  # not in the test extra
    result = run(tmp_path, "-m", "hydra/launcher=ray_cluster", "seed=0,1")
    assert_refused(result, "pip install 'modelforge[ray]'")
    assert not Path(tmp_path, "outputs").exists()


@pytest.mark.slow
def test_plan_and_diagnose_folders_stay_apart_from_training_runs(tmp_path):
    assert run(tmp_path, "plan", "model.depth=1").returncode == 0
    assert run(tmp_path, "diagnose", "model.depth=1", "model.units=4").returncode == 0
    assert sorted(p.name for p in Path(tmp_path, "outputs").iterdir()) == ["diagnoses", "plans"]
    assert run(tmp_path, "report", "outputs").returncode == 2  # no training run there to summarize


@pytest.mark.slow
def test_console_script_and_subcommands(tmp_path):
    script = Path(sys.executable).parent / "modelforge"
    result = subprocess.run([str(script), "plan", "layer=conv", "model.units=4"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "block1_conv2d  kernel" in result.stdout
    wrong = run(tmp_path, "pln", "layer=conv")
    assert_refused(wrong, "did you mean 'plan'")

