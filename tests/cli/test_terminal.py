"""What a person sees: no TensorFlow start-up noise, but every other line of stderr, even from a hard crash."""

import re
import subprocess
import sys

import pytest

from modelforge.system.quiet import NOISE
from tests.helpers import run_module

pytestmark = pytest.mark.slow

# The noise as TensorFlow 2.21 prints it on a CPU machine (each must match one of NOISE).
SAMPLES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795976739.831151    4565 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1795976739.831525    4565 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "E0000 00:00:1795976742.612098    4565 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1795976743.957064    4565 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool "
    "which is not in the op definition",
]


# One of NOISE, as TensorFlow prints it where it turns oneDNN on; the tests print it themselves, so that what they
# check (filtered unless asked for) holds on every CPU.
NOISE_LINE = SAMPLES[1]
# A run whose data loader (the user's own module, in the run's folder) prints NOISE_LINE to fd 2 and the log level
# TensorFlow was started with, after modelforge has imported TensorFlow.
NOISY_RUN = ("data=callable", "data._target_=noisy_data.load", "model.depth=1", "model.units=4", "trainer.epochs=1",
             "trainer.verbose=0")


def write_noisy_loader(folder):
    (folder / "noisy_data.py").write_text(
        "import os\nimport numpy as np\n\n\ndef load():\n"
        f"    os.write(2, {(NOISE_LINE + chr(10)).encode()!r})\n"
        "    print(f\"TF_CPP_MIN_LOG_LEVEL={os.environ.get('TF_CPP_MIN_LOG_LEVEL')}\", flush=True)\n"
        "    rng = np.random.default_rng(0)\n"
        "    return rng.normal(size=(200, 4)).astype('float32'), rng.integers(0, 2, size=200)\n")


def quiet_python(code, **env):
    """Runs `code` after routing stderr through modelforge's filter, as the CLI does."""
    prelude = "from modelforge.system.quiet import quiet_stderr; quiet_stderr()\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, **env})


def test_every_sample_is_known_noise_and_nothing_else_is():
    for line in SAMPLES:
        assert any(re.search(p, line) for p in NOISE), line
    others = ["E0000 00:00:1.0    1 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_OUT_OF_MEMORY",
              "W0000 00:00:1.0    1 op_kernel.cc:1857] OP_REQUIRES failed at reshape_op.h:65",
              "Traceback (most recent call last):", "modelforge: error: model.depth=0 must be a positive integer"]
    for line in others:
        assert not any(re.search(p, line) for p in NOISE), line


def test_a_default_run_shows_no_noise_but_says_what_it_computes_on(tmp_path):
    # Cold: the start-up lines come while TensorFlow is imported, which a warm command has done already.
    result = run_module(tmp_path, "trainer.epochs=1", "model.units=8", "trainer.verbose=0", cold=True)
    assert result.returncode == 0, result.stderr
    for line in result.stderr.splitlines():
        assert not any(re.search(p, line) for p in NOISE), line
    assert re.search(r"^TensorFlow \d+\.\d+ on CPU \(\d+ threads\), no GPU$", result.stdout, re.M)
    # Asked for (hydra.verbose): nothing is filtered. The noise line
    # comes from the run's own data loader, so the check holds on every CPU (TensorFlow prints its oneDNN notice
    # only where it turns oneDNN on).
    write_noisy_loader(tmp_path)
    quiet = run_module(tmp_path, *NOISY_RUN, cold=True)
    noisy = run_module(tmp_path, *NOISY_RUN, "hydra.verbose=true", cold=True)
    assert quiet.returncode == 0 and noisy.returncode == 0, quiet.stderr + noisy.stderr
    assert NOISE_LINE not in quiet.stderr and "TF_CPP_MIN_LOG_LEVEL=" in quiet.stdout  # not asked for: filtered
    assert NOISE_LINE in noisy.stderr  # asked for: shown


def test_the_last_line_before_a_native_crash_still_shows():
    segfault = quiet_python("import sys, ctypes\nprint('last words before the crash', file=sys.stderr, flush=True)\n"
                            "ctypes.string_at(0)")
    assert segfault.returncode == -11
    assert "last words before the crash" in segfault.stderr
    hard_exit = quiet_python("import os\nos.write(2, b'written, then os._exit')\nos._exit(3)")
    assert hard_exit.returncode == 3 and "written, then os._exit" in hard_exit.stderr


def test_a_real_tensorflow_error_still_shows():
    # The noise line printed first, as TensorFlow does on CPUs where it turns oneDNN on: dropped, on every CPU.
    noisy = f"import os\nos.write(2, {(NOISE_LINE + chr(10)).encode()!r})\n"
    result = quiet_python(noisy + "import tensorflow as tf\ntf.reshape(tf.zeros(3), (2,))")
    assert result.returncode == 1
    assert "InvalidArgumentError" in result.stderr and "Traceback" in result.stderr
    assert not any(re.search(p, line) for p in NOISE for line in result.stderr.splitlines())


def test_tf_logs_on_request(tmp_path):
    write_noisy_loader(tmp_path)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [sys.executable, "-m", "modelforge", "diagnose", *NOISY_RUN[:-1]]
    shown = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**env, "MODELFORGE_TF_LOGS": "1"})
    assert shown.returncode == 0, shown.stderr
    assert NOISE_LINE in shown.stderr and "TF_CPP_MIN_LOG_LEVEL=None" in shown.stdout
    hidden = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert hidden.returncode == 0, hidden.stderr
    assert NOISE_LINE not in hidden.stderr and "TF_CPP_MIN_LOG_LEVEL=" in hidden.stdout


def test_a_script_that_trains_through_the_api_prints_nothing_on_stderr(tmp_path):
    """No filter installed by hand: modelforge sets TensorFlow's logging up before it imports TensorFlow."""
    script = ("import modelforge\n"
              "cfg = modelforge.compose(['trainer.epochs=1', 'model.units=8', 'trainer.verbose=0'])\n"
              "result = modelforge.train(cfg, 'run')\n"
              "print('objective', result['objective']['value'])\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MODELFORGE_TF_LOGS")}
    quiet = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=env)
    assert quiet.returncode == 0 and "objective" in quiet.stdout, quiet.stderr
    assert quiet.stderr == ""
    # A TensorFlow error raised while running still shows, and the logs show when asked for.
    failing = script.replace("trainer.verbose=0", "trainer.verbose=0', 'data=npz', 'data.path=/nonexistent.npz")
    failing = failing.replace("'run'", "'run3'")
    broken = subprocess.run([sys.executable, "-c", failing], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=env)
    assert broken.returncode == 1 and "Traceback" in broken.stderr and "nonexistent.npz" in broken.stderr
    # The filter is on in the quiet run and off when asked for: a noise line the script prints after modelforge
    # imported TensorFlow is dropped, then shown (a line every CPU prints, unlike TensorFlow's oneDNN notice).
    noisy = script.replace("print('objective'", f"import os; os.write(2, {(NOISE_LINE + chr(10)).encode()!r}); "
                           "print('level', os.environ.get('TF_CPP_MIN_LOG_LEVEL')); print('objective'")
    filtered = subprocess.run([sys.executable, "-c", noisy.replace("'run'", "'run4'")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, env=env)
    assert filtered.returncode == 0 and filtered.stderr == "" and "level 2" in filtered.stdout, filtered.stderr
    loud = subprocess.run([sys.executable, "-c", noisy.replace("'run'", "'run2'")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**env, "MODELFORGE_TF_LOGS": "1"})
    assert loud.returncode == 0 and NOISE_LINE in loud.stderr and "level None" in loud.stdout, loud.stderr
