"""How closely the fused launcher's jobs match the basic launcher's, per layer kind.

For each of dense (the default model), conv and LSTM: the 9-job sweep of 3 initializers and 3 seeds (5 epochs)
runs under both launchers; printed are the largest relative difference of any epoch-1 metric over the jobs, and
the largest absolute difference of the final validation metrics (the issue's bars: 1e-4 and 0.01).
Run: .venv/bin/python benchmarks/fused_equality.py
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

SWEEP = ["-m", "initializer=he_normal,glorot_uniform,lecun_normal", "seed=0,1,2", "trainer.epochs=5",
         "trainer.verbose=0"]
KINDS = {"dense": [], "conv": ["layer=conv"], "lstm": ["layer=lstm"]}


def history(folder: Path) -> list[dict[str, float]]:
    with open(folder / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def jobs(root: Path) -> list[Path]:
    return sorted(root.glob("[0-9]*"), key=lambda p: int(p.name))


def main() -> None:
    print(f"{'layers':<7} {'jobs':>4} {'epoch-1 rel (worst metric)':>34} {'final val abs (worst)':>30}")
    with tempfile.TemporaryDirectory() as cwd:
        for kind, extra in KINDS.items():
            for launcher in ("basic", "fused"):
                chosen = ["hydra/launcher=fused"] if launcher == "fused" else []
                subprocess.run([sys.executable, "-m", "modelforge", *SWEEP, *extra, *chosen,
                                f"hydra.sweep.dir={kind}-{launcher}"], cwd=cwd, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            first, last = (0.0, ""), (0.0, "")
            pairs = list(zip(jobs(Path(cwd, f"{kind}-basic")), jobs(Path(cwd, f"{kind}-fused")), strict=True))
            for b, f in pairs:
                hb, hf = history(b), history(f)
                for key, value in hb[0].items():
                    if key in ("epoch", "learning_rate"):
                        continue
                    rel = abs(hf[0][key] - value) / max(abs(value), 1e-12)
                    first = max(first, (rel, key))
                for key in ("val_loss", "val_accuracy"):
                    last = max(last, (abs(hf[-1][key] - hb[-1][key]), key))
            print(f"{kind:<7} {len(pairs):>4} {first[0]:>20.1e} ({first[1]:<11}) {last[0]:>17.4f} ({last[1]:<11})")


if __name__ == "__main__":
    main()
