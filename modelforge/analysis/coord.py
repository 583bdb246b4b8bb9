"""muP's coordinate check (Yang et al. 2022; the mup package's coord check): does each layer's activation scale stay
put as the model widens?

With `trainer.coord_check=N`, before training, a copy of the run's model takes N steps of the run's own optimizer
(its per-weight rates under muP) on the run's first N batches, and after each step each layer's mean |activation| on
the first batch is recorded (`coord_check.json`); the run itself trains from its own weights as before. A sweep over
widths then gets, per parametrization, `coord_<name>.png` (a panel per step: the value against width, a line per
layer) and `coord.md`: each layer's spread over the widths at the last step (largest over smallest), and the layers
that grow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.core.config.keys import KEYS

if TYPE_CHECKING:
    from modelforge.analysis.summary import RunRecord
    from modelforge.run.folder import RunFolder
    from modelforge.run.setup import Session

FILE, TABLE = "coord_check.json", "coord.md"
# A layer whose mean |activation| at the last step spreads more than this over the widths is said to grow.
GROWS = 2.0
STANDARD = KEYS["parametrization.name"].absent[0]


def measure(session: Session, steps: int) -> dict[str, Any]:
    """N steps of the run's optimizer on a copy of its model; each layer's mean |activation| after each step.

    The layers are the plan's layers with weights but the head (the hidden ones, the first included).
    """
    import keras
    import numpy as np

    from modelforge.run.fit import compile_model, make_optimizer

    run, plan, data = session.run, session.plan, session.dataset
    names = [spec.name for spec in plan.specs if spec.weights and spec is not plan.specs[-1]]
    clone = keras.models.clone_model(session.model)
    clone.set_weights(session.model.get_weights())
    compile_model(clone, make_optimizer(run.optimizer, 1, 1, plan.rate_multipliers()), run)
    probe = keras.Model(clone.inputs, [clone.get_layer(name).output for name in names])
    size = run.trainer.batch_size
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    values = []
    for step in range(steps):
        at = slice((step * size) % max(1, len(x) - size), (step * size) % max(1, len(x) - size) + size)
        clone.train_on_batch(x[at], y[at])
        outputs = probe.predict(x[:size], verbose=0)
        values.append([float(np.mean(np.abs(out))) for out in (outputs if isinstance(outputs, list) else [outputs])])
    return {"width": run.model.units, "parametrization": run.parametrization.name, "layers": names, "values": values}


def hook(session: Session, folder: RunFolder) -> dict[str, Any]:
    """The run lifecycle's hook for `trainer.coord_check=N`: the check before the fit, written to coord_check.json."""
    found = measure(session, session.run.trainer.coord_check)
    folder.write_text(FILE, json.dumps(found, indent=2))
    return {}


@dataclass(frozen=True)
class CoordRun:
    """One run's check: its parametrization, width, layers, and per step each layer's mean |activation|."""

    parametrization: str
    width: int
    layers: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]


def runs(jobs: Sequence[RunRecord]) -> list[CoordRun]:
    """The jobs' checks, where they span two widths or more; else none."""
    found = []
    for job in jobs:
        path = job.path / FILE
        if not path.is_file():
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        found.append(CoordRun(str(record["parametrization"]), int(record["width"]), tuple(record["layers"]),
                              tuple(tuple(step) for step in record["values"])))
    return found if len({r.width for r in found}) >= 2 else []


def spreads(found: Sequence[CoordRun], step: int = -1) -> dict[str, dict[str, float]]:
    """Per parametrization, each layer's largest over smallest mean |activation| across the widths at `step`.

    Example:
        >>> checks = [CoordRun("mup", w, ("a",), ((1.0,), (w / 64,))) for w in (64, 256)]
        >>> spreads(checks)
        {'mup': {'a': 4.0}}
    """
    table: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.parametrization for r in found):
        mine = [r for r in found if r.parametrization == name]
        for i, layer in enumerate(mine[0].layers):
            values = [r.values[step][i] for r in mine]
            low = min(values)
            table.setdefault(name, {})[layer] = max(values) / low if low > 0 else math.inf
    return table


def table(found: Sequence[CoordRun]) -> str:
    """coord.md: per parametrization, each layer's spread over the widths at the last step, and the layers that
    grow (spread above GROWS)."""
    widths = sorted({r.width for r in found})
    steps = len(found[0].values)
    lines = ["# The coordinate check", "",
             f"Each layer's mean |activation| after step {steps}, largest over smallest across widths "
             f"{', '.join(map(str, widths))}; a layer grows where that is above {GROWS:g}.", "",
             "| parametrization | layer | spread | grows |", "| --- | --- | --- | --- |"]
    for name, row in spreads(found).items():
        for layer, spread in row.items():
            lines.append(f"| {name} | {layer} | {spread:.3g} | {'yes' if spread > GROWS else 'no'} |")
        grown = [layer for layer, spread in row.items() if spread > GROWS]
        lines.append(f"| {name} | (grow) | {max(row.values()):.3g} | {', '.join(grown) or 'none'} |")
    return "\n".join(lines) + "\n"


def plot_coord(path: Path, found: Sequence[CoordRun], name: str) -> None:
    """One parametrization's check: a panel per step, each layer's mean |activation| against width (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = sorted((r for r in found if r.parametrization == name), key=lambda r: r.width)
    steps = len(mine[0].values)
    fig, axes = plt.subplots(1, steps, figsize=(3.2 * steps, 3.4), sharey=True, squeeze=False)
    for step, ax in enumerate(axes[0]):
        for i, layer in enumerate(mine[0].layers):
            ax.plot([r.width for r in mine], [r.values[step][i] for r in mine], marker="o", label=layer)
        ax.set(xscale="log", yscale="log", xlabel="width", title=f"{name}, step {step + 1}")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("mean |activation|")
    axes[0][-1].legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
