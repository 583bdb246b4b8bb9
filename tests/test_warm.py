"""The warm runner (tests/warm.py) is faithful: what a test sees of a warm command is what a cold one does."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests import warm
from tests.helpers import FAST, assert_same_result, run_module, start, wait_for

# Under `make test-cold` there is no warm runner to check.
pytestmark = pytest.mark.skipif(os.environ.get(warm.COLD_SUITE) == "1", reason="make test-cold runs every command cold")


@pytest.mark.slow
def test_a_warm_run_equals_a_cold_one_bit_for_bit(tmp_path):
    args = [*FAST, "seed=3"]
    cold = run_module(tmp_path, *args, "hydra.run.dir=run_c", cold=True)
    hot = run_module(tmp_path, *args, "hydra.run.dir=run_w")
    assert cold.returncode == hot.returncode == 0, cold.stderr + hot.stderr
    assert_same_result(tmp_path / "run_c", tmp_path / "run_w")
    assert cold.stdout.replace("run_c", "run_w") == hot.stdout and cold.stderr == hot.stderr == ""
    pids = {json.loads((tmp_path / f / "metrics.json").read_text())["pid"] for f in ("run_c", "run_w")}
    assert len(pids) == 2 and os.getpid() not in pids
    refused = [run_module(tmp_path, "trainer.epoch=3", cold=c) for c in (True, False)]
    assert refused[0].returncode == refused[1].returncode == 2 and refused[0].stderr == refused[1].stderr


@pytest.mark.slow
def test_signals_reach_a_warm_command_and_its_status_is_the_interpreters(tmp_path):
    proc = start(tmp_path, *FAST, "trainer.epochs=50", "trainer.batch_size=8", "hydra.run.dir=run")
    assert isinstance(proc, warm.WarmProcess)
    wait_for(lambda: (tmp_path / "run" / "history.csv").exists())
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "stopped by SIGTERM" in stderr
    crashed = start(tmp_path, *FAST, "trainer.epochs=50", "hydra.run.dir=killed", output=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / "killed" / "history.csv").exists())
    crashed.kill()
    assert crashed.wait(timeout=30) == -signal.SIGKILL


def test_an_import_time_variable_runs_cold(tmp_path):
    loud = run_module(tmp_path, "--help", env={"MODELFORGE_TF_LOGS": "1"})  # declined by the server, run cold
    assert loud.returncode == 0 and "python -m modelforge" in loud.stdout
    with pytest.raises(warm.Cold, match="MODELFORGE_TF_LOGS"):
        warm.run(tmp_path, ["--help"], {**os.environ, "MODELFORGE_TF_LOGS": "1"})


@pytest.mark.slow
def test_kill_9_of_the_shim_ends_its_command_before_the_next_starts(tmp_path):
    """The README's recipe through the docs test's `python`: the run is gone when `resume` looks at its folder."""
    env = {**os.environ, "PATH": f"{warm.shim_folder()}{os.pathsep}{os.environ['PATH']}"}
    script = ("python -m modelforge trainer.epochs=3 model.units=16 trainer.batch_size=8 hydra.run.dir=run &\n"
              "until [ -f run/history.csv ]; do sleep 0.05; done; kill -9 $!\n"
              "python -m modelforge resume run\n"
              "python -c 'import sys; print(sys.executable)'\n")
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip().endswith(sys.executable)  # anything else runs as the venv's python
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs_run"] == 3 and record["resumed"]


def test_a_script_runs_warm_as_python_would_run_it(tmp_path):
    """`python SCRIPT.py ARGS` through the shim (the docs' scripts and Python blocks): the same argv, name,
    import path, streams and exit status as the venv's python gives it."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.py").write_text("WHERE = 'beside the script'\n")
    (tmp_path / "lib" / "app.py").write_text(
        "import os, sys\nimport helper\n"
        "print(sys.argv, __name__, helper.WHERE, os.getcwd(), 'keras' in sys.modules)\n"
        "print('to stderr', file=sys.stderr)\n"
        "raise SystemExit(int(sys.argv[1]))\n")
    shim = str(warm.shim_folder() / "python")
    done = {python: subprocess.run([python, "lib/app.py", "3", "x=1"], cwd=tmp_path, capture_output=True, text=True,
                                   timeout=60) for python in (sys.executable, shim)}
    cold, hot = done[sys.executable], done[shim]
    assert cold.returncode == hot.returncode == 3
    assert cold.stderr == hot.stderr == "to stderr\n"
    # The same line but for the modules loaded before the script ran: the warm one has Keras already.
    assert cold.stdout.replace("False", "True") == hot.stdout
    assert hot.stdout.startswith("['lib/app.py', '3', 'x=1'] __main__ beside the script") and "True" in hot.stdout
