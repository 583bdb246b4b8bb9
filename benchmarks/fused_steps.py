"""The fused launcher against the basic one, step by step, beside a twin pair of basic runs.

For a config, the same first arm is trained on the same batches two ways in one process: Keras' own train step
(`train_on_batch`, what `fit` runs) and the fused group's step. After steps 1, 2, 5 and 20 each compares the
weights (their relative L2 difference, all weights as one vector) and the batch loss. The twin pair is two
basic runs that differ only in TensorFlow's kernels (`TF_ENABLE_ONEDNN_OPTS=0` and `=1`, in two processes);
where both give identical weights, the twin instead starts from initial weights one ulp apart (every nonzero
weight). If the fused run
parts from the basic one no faster than the twins part from each other, what remains is rounding amplified by
the net, not a defect of a fused op.

Run: .venv/bin/python benchmarks/fused_steps.py [experiment=he2015 ...]
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

STEPS = (1, 2, 5, 20)
CASES = {
    "he2015": ["experiment=he2015", "trainer.diagnose=false"],
    "lsuv_depth glorot": ["experiment=lsuv_depth", "initializer=glorot_uniform"],
    "lsuv_depth lsuv": ["experiment=lsuv_depth", "initializer=lsuv"],
}


def _session(overrides: Sequence[str]) -> Any:
    import modelforge
    from modelforge.run.setup import prepare

    with contextlib.redirect_stdout(io.StringIO()):
        return prepare(modelforge.run_config(modelforge.compose([*overrides, "trainer.verbose=0"])))


def _batches(session: Any, steps: int) -> list[Any]:
    """The first `steps` batches' sample indices, in the order the run's fit takes them."""
    import numpy as np

    from modelforge.data.batches import epoch_order

    n, size = len(session.dataset.x_train), session.run.trainer.batch_size
    found: list[Any] = []
    epoch = 0
    while len(found) < steps:
        order = epoch_order(n, session.run.seed, epoch, session.run.trainer.shuffle)
        found.extend(order[i:i + size] for i in range(0, n, size))
        epoch += 1
    return [np.asarray(b) for b in found[:steps]]


def basic_steps(overrides: Sequence[str], steps: int = max(STEPS), nudge: bool = False) -> dict[int, Any]:
    """Keras' train step on the run's first `steps` batches: after each step in STEPS, the weights and the
    batch's loss. `nudge`: every nonzero initial weight moved by one ulp first."""
    import numpy as np

    session = _session(overrides)
    model, data = session.model, session.dataset
    if nudge:
        model.set_weights([np.where(w != 0, np.nextafter(w, np.inf), w).astype(w.dtype) for w in model.get_weights()])
    found = {}
    for step, idx in enumerate(_batches(session, steps), start=1):
        loss = model.train_on_batch(data.x_train[idx], data.y_train[idx], return_dict=True)["loss"]
        if step in STEPS:
            found[step] = ([np.array(w) for w in model.get_weights()], float(loss))
    return found


def fused_steps(overrides: Sequence[str], steps: int = max(STEPS)) -> dict[int, Any]:
    """The fused group's step (one arm) on the same batches: the same records as `basic_steps`."""
    import tensorflow as tf

    from modelforge.fused.trainer import GroupTrainer

    session = _session(overrides)
    group = GroupTrainer([session])
    step_fn = tf.function(group.step, autograph=False)
    found = {}
    for step, idx in enumerate(_batches(session, steps), start=1):
        losses, _ = step_fn(tf.constant(idx[None]))
        if step in STEPS:
            found[step] = (group.model.arm_weights(0), float(losses.numpy()[0]) / len(idx))
    return found


def parted(a: tuple[list[Any], float], b: tuple[list[Any], float]) -> tuple[float, float]:
    """The weights' relative L2 difference (all weights as one vector), and the loss's relative difference."""
    import numpy as np

    x, y = (np.concatenate([w.ravel() for w in side[0]]).astype(np.float64) for side in (a, b))
    return float(np.linalg.norm(x - y) / np.linalg.norm(y)), abs(a[1] - b[1]) / max(abs(b[1]), 1e-30)


def _twin(overrides: Sequence[str], onednn: str, nudge: bool, out: str) -> dict[int, Any]:
    """`basic_steps` in a process of its own (this script's `--twin`) with `TF_ENABLE_ONEDNN_OPTS=onednn`."""
    import numpy as np

    subprocess.run([sys.executable, __file__, "--twin", out, str(nudge), *overrides], check=True,
                   env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    saved = np.load(out)
    count = len([k for k in saved.files if k.startswith(f"{STEPS[0]}_")])
    return {s: ([saved[f"{s}_{i}"] for i in range(count)], float(saved["losses"][j]))
            for j, s in enumerate(STEPS)}


def _save_twin(out: str, nudge: str, overrides: Sequence[str]) -> None:
    import numpy as np

    found = basic_steps(overrides, nudge=nudge == "True")
    np.savez(out, **{f"{s}_{i}": w for s, (ws, _) in found.items() for i, w in enumerate(ws)},
             losses=np.array([found[s][1] for s in sorted(found)]))


def compare(overrides: Sequence[str]) -> dict[str, dict[int, tuple[float, float]]]:
    """For each step in STEPS: fused against basic, and the twin pair, as `parted` gives them."""
    basic, fused = basic_steps(overrides), fused_steps(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        off, on = (_twin(overrides, flag, False, os.path.join(tmp, f"{flag}.npz")) for flag in ("0", "1"))
        twins, how = (off, on), "TF_ENABLE_ONEDNN_OPTS=0 vs 1"
        if all(parted(off[s], on[s])[0] == 0 for s in STEPS):
            twins, how = (on, _twin(overrides, "1", True, os.path.join(tmp, "nudged.npz"))), "one ulp apart"
    return {"fused vs basic": {s: parted(fused[s], basic[s]) for s in STEPS},
            f"twins ({how})": {s: parted(*[t[s] for t in twins]) for s in STEPS}}


def growth(by_step: dict[int, tuple[float, float]]) -> float:
    """How fast a pair parts: the weights' relative difference, per step, from step 5 to the last (geometric)."""
    first, last = by_step[5][0], by_step[max(STEPS)][0]
    return (last / first) ** (1 / (max(STEPS) - 5)) if first > 0 else float("nan")


def main(argv: Sequence[str]) -> None:
    cases = {" ".join(argv): list(argv)} if argv else CASES
    for name, overrides in cases.items():
        print(f"{name}: the weights' relative difference (the loss's) after each step; growth per step from 5 on")
        for pair, by_step in compare(overrides).items():
            cells = "  ".join(f"{s:>2}: {w:.1e} ({loss:.1e})" for s, (w, loss) in by_step.items())
            print(f"  {pair:<30} {cells}  x{growth(by_step):.2f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--twin"]:
        _save_twin(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main(sys.argv[1:])
