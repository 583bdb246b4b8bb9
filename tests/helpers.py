"""Helpers the tests share: small run settings, the run-folder contract, and running the CLI as a user would."""

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

# The checkout's root, for tests that read conf/, docs/ or examples/.
REPO = Path(__file__).resolve().parents[1]
# Small and fast: a 1-epoch run of a narrow model still exercises every code path.
FAST = ["trainer.epochs=1", "model.units=8", "trainer.verbose=0"]
# The run-folder contract: every completed run has these (the CLI adds Hydra's modelforge.log).
RUN_FILES = {"config.yaml", "init_plan.json", "model_summary.txt", "history.csv", "metrics.json", "model.keras"}
CLI_RUN_FILES = RUN_FILES | {"modelforge.log"}


@functools.cache
def composed_plain(*overrides: str) -> dict:
    """modelforge's config as Hydra composes it (a small model, one epoch, then `overrides`), as plain
    containers: for tests and doctests that type a config without a command line. Composed, so conf/ stays the
    one home of the defaults. Cached: copy it before changing it."""
    import modelforge
    from modelforge.front_door import to_plain

    return to_plain(modelforge.compose(FAST[:2] + ["model.depth=1", "trainer.verbose=0", *overrides]))


def history(folder) -> list[dict[str, float]]:
    """A run folder's history.csv: one dict per epoch, every column a number (an empty cell is NaN)."""
    import csv

    with open(Path(folder) / "history.csv") as f:
        return [{k: float(v) if v else float("nan") for k, v in row.items()} for row in csv.DictReader(f)]


def baseline(folder, *overrides) -> list[Path]:
    """The basic launcher's sweep of `overrides`, trained in this process: the jobs expanded as Hydra's basic
    sweeper expands them (a product of the swept values, the first key slowest), each composed and trained into
    `folder/<job number>`. A test comparing another launcher with the basic one pays no second process for it.
    """
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    import modelforge

    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in OverridesParser.create().parse_overrides(list(overrides))]
    folders = []
    for number, job in enumerate(itertools.product(*choices)):
        folders.append(Path(folder) / str(number))
        modelforge.train(modelforge.compose(list(job)), run_dir=folders[-1])
    return folders


def run_module(cwd, *args, timeout=600, env=None, cold=False):
    """Runs `python -m modelforge args` in `cwd` as a user would; returns the CompletedProcess.

    A subcommand, when wanted, is the first of `args` (`run_module(tmp, "plan", "layer=conv")`); `env` adds
    variables to the environment. The command runs warm (a fork of a process that imported TensorFlow already,
    see tests/warm.py) unless `cold`: a test of start-up, import or quiet behaviour asks for a cold interpreter.
    """
    import os

    from tests import warm

    environment = {**os.environ, **(env or {})}
    if not cold:
        try:
            return warm.run(cwd, list(args), environment, timeout=timeout)
        except warm.Cold:
            pass
    return subprocess.run([sys.executable, "-m", "modelforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment)


def start(cwd, *args, output=subprocess.PIPE, ignore_ctrl_c=False, cold=False):
    """Starts `python -m modelforge args` in `cwd` and returns at once (a Popen, or its warm twin), for a test
    that stops it.

    `output=subprocess.DEVNULL` for a chatty run whose output the test never reads (a full pipe would block it).
    `ignore_ctrl_c`: the process starts with SIGINT ignored, as a shell script's background job (`cmd &`) does.
    `cold`: as for `run_module`.
    """
    import os
    import signal

    from tests import warm

    if not cold:
        try:
            return warm.WarmProcess(cwd, list(args), dict(os.environ), stdout=output, stderr=output,
                                    ignore_ctrl_c=ignore_ctrl_c)
        except warm.Cold:
            pass

    def ignored() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, "-m", "modelforge", *args], cwd=cwd, stdout=output, stderr=output,
                            text=True, preexec_fn=ignored if ignore_ctrl_c else None)


def wait_for(condition, timeout=120.0, poll=0.002):
    """Polls `condition` until it holds; fails the test when `timeout` seconds pass first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError("timed out waiting")


def overlay_venv(path, *extra_paths):
    """A fresh venv from the base interpreter that also sees this venv's packages through a .pth file.

    Only the listed paths are added, and .pth files inside them are not processed there, so this venv's
    editable modelforge stays out unless the checkout itself is among `extra_paths`. Returns its python.
    Made without pip of its own (4 s less): `python -m pip` there is this venv's pip, which installs into the
    venv that runs it.
    """
    import sysconfig

    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=300)
    python = Path(path) / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    lines = [sysconfig.get_paths()["purelib"], *map(str, extra_paths)]
    Path(site, "_dev_venv.pth").write_text("\n".join(lines) + "\n")
    return python


def run_dirs(root):
    """Every run folder (one with a metrics.json) under root, in path order."""
    return sorted(p.parent for p in Path(root).rglob("metrics.json"))


# The user's own data, as small files a test writes (data=csv, npz, images) or returns (data=callable).
def write_csv(path, rows=40, seed=0, labels=("no", "yes")):
    """A CSV with a header, three numeric features a, b, c and a `label` column (string classes by default).

    Returns the features and the label strings as written."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((rows, 3)), 4)
    y = [labels[int(v)] for v in (x[:, 0] + x[:, 1] > 0)]
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, y, strict=True)]
    Path(path).write_text("\n".join(lines) + "\n")
    return x.astype(np.float32), y


def write_npz(path, rows=40, seed=0, **extra):
    """An npz with x (rows x 3 floats) and y (0/1 labels), plus any `extra` arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(path, x=x, y=y, **extra)
    return x, y


def write_images(folder, classes=("cat", "dog"), per_class=10, size=(6, 5), seed=0):
    """A folder of tiny RGB PNGs, one subfolder per class; returns {path: pixels} of what was written."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for name in classes:
        (Path(folder) / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            path = Path(folder) / name / f"{i:02d}.png"
            Image.fromarray(pixels).save(path)
            written[str(path.resolve())] = pixels
    return written


def load_arrays(n=60, split=False, dataset=False, fail=False):
    """A data-loading function for data=callable (`tests.helpers.load_arrays`): a regression on 5 features."""
    import numpy as np

    if fail:
        raise OSError("the data server is down")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = x.sum(axis=1)
    if dataset:
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    if split:
        return (x[:40], y[:40]), (x[40:], y[40:])
    return x, y


# A run to kill: small enough to be quick, with epochs long enough (many small batches) to be caught in the middle.
KILLABLE = ["model.units=16", "trainer.verbose=0", "trainer.batch_size=8"]


def said(result):
    """stderr with the 100-column wrapping undone."""
    return " ".join(result.stderr.split())


# What a command writes where it runs: a run's or a sweep's folders.
OUTPUT_DIRS = ("outputs", "multirun")


def assert_refused(refusal, *words, cwd=None):
    """A refusal, as a specification: `refusal` is a callable that must raise `ConfigError`, or a finished command
    (`run_module`'s result) that must exit 2; its message holds every one of `words` (a command's with its
    wrapping undone); and, for a command run in `cwd`, nothing was written there (no run or sweep folder).
    Returns the message, for what a test checks beyond words.
    """
    from modelforge.errors import ConfigError

    if callable(refusal):
        try:
            refusal()
        except ConfigError as err:
            text = str(err)
        else:
            raise AssertionError(f"not refused; expected a ConfigError saying {words}")
    else:
        assert refusal.returncode == 2, (refusal.returncode, refusal.stderr[-2000:])
        text = said(refusal)
    missing = [word for word in words if word not in text]
    assert not missing, f"{missing} not in the refusal: {text}"
    if cwd is not None:
        written = [name for name in OUTPUT_DIRS if (Path(cwd) / name).exists()]
        assert not written, f"the refused command wrote {written} in {cwd}"
    return text


def rows(folder):
    """How many epochs a run folder's history.csv holds (0 before it exists)."""
    path = Path(folder) / "history.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def weights(folder):
    """The weights of a run folder's model.keras, loaded in safe mode."""
    import keras

    model = keras.models.load_model(Path(folder) / "model.keras", safe_mode=True)
    return model.get_weights()


def assert_same_result(a, b):
    """Bit for bit: history, final metrics and every weight."""
    import json

    import numpy as np

    assert (Path(a) / "history.csv").read_text() == (Path(b) / "history.csv").read_text()
    ma, mb = (json.loads((Path(f) / "metrics.json").read_text()) for f in (a, b))
    assert ma["final"] == mb["final"] and ma["best"] == mb["best"] and ma["epochs_run"] == mb["epochs_run"]
    for x, y in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


def on_a_small_disk(folder, size, script, cwd, timeout=600, env=None):
    """Runs the bash `script` with a tmpfs of `size` (`64k`, `1m`) mounted at `folder`, in a mount namespace of
    its own (`unshare`: root is not needed where unprivileged user namespaces are on, and nothing outside sees
    the mount or has to unmount it). `$DISK` in the script is the folder; `$PY` this Python; `env` adds
    variables."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    body = f'mount -t tmpfs -o size={size} tmpfs "$DISK" && {script}'
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-e", "-c", body],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {}), "DISK": str(folder), "PY": sys.executable})


def plan_of(compose, *overrides):
    """The plan of the `compose` fixture's config with FAST and `overrides`."""
    import modelforge
    from modelforge.core.init.plan import make_plan

    return make_plan(modelforge.run_config(compose([*FAST, *overrides])))


def residual_mlp(blocks, width=16, extra=""):
    """A stem, then `blocks` blocks x + f(x), f = dense(relu) -> dense(linear), the names saying nothing."""
    layers = [f"{{type:dense,name:s,units:{width}}}"]
    stream = "s"
    for i in range(blocks):
        layers += [f"{{type:dense,name:p{i},units:{width}}}",
                   f"{{type:dense,name:q{i},units:{width},activation:linear}}{extra}",
                   f"{{type:add,name:r{i},inputs:[{stream},q{i}]}}"]
        stream = f"r{i}"
    return "+model.layers=[" + ",".join(layers) + "]"
