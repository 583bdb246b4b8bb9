"""muP's transfer check, for a sweep over width, learning rate and parametrization (`experiment=mup_transfer`): each
run's final training loss against its learning rate, a line per width and a panel per parametrization
(`transfer.png`, Yang et al. 2022's Figure 1 in miniature), and each width's best learning rate per seed
(`transfer.md`): under muP the best rate should stay where it is as the model widens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelforge.core.config.keys import KEYS
from modelforge.core.names import Status

if TYPE_CHECKING:
    from modelforge.analysis.summary import RunRecord

FIGURE, TABLE = "transfer.png", "transfer.md"
# A run's record leaves the parametrization out where it is the one that means none: the standard one.
STANDARD = KEYS["parametrization.name"].absent[0]


@dataclass(frozen=True)
class TransferPoint:
    """One run: its parametrization, width (model.units), learning rate, seed and final training loss (a run that
    failed or ended on NaN: infinity)."""

    parametrization: str
    width: int
    rate: float
    seed: int | None
    loss: float


def point(job: RunRecord) -> TransferPoint | None:
    """The job's point (None: its record gives no width or learning rate)."""
    values = (job.metrics.get("config") or {}).get("values") or {}
    width, rate = values.get("model.units"), values.get("optimizer.learning_rate")
    if width is None or rate is None:
        return None
    last = job.history[-1].get("loss") if job.history else None
    done = job.status == Status.COMPLETED and last is not None and math.isfinite(last)
    return TransferPoint(str(values.get("parametrization.name", STANDARD)), int(width), float(rate),
                         values.get("seed"), float(last) if done and last is not None else math.inf)


def points(jobs: Sequence[RunRecord]) -> list[TransferPoint]:
    """The jobs' points, where the sweep is one over widths and learning rates (two or more of each); else none."""
    found = [p for p in (point(job) for job in jobs) if p is not None]
    if len({p.width for p in found}) < 2 or len({p.rate for p in found}) < 2:
        return []
    return found


def best_rates(found: Sequence[TransferPoint]) -> dict[tuple[str, int | None], dict[int, float]]:
    """Per (parametrization, seed): each width's learning rate of the lowest final training loss.

    Example:
        >>> runs = [TransferPoint("mup", w, r, 0, (r - 0.01) ** 2 + w) for w in (64, 256) for r in (1e-3, 1e-2)]
        >>> best_rates(runs)
        {('mup', 0): {64: 0.01, 256: 0.01}}
    """
    found_best: dict[tuple[str, int | None], dict[int, tuple[float, float]]] = {}
    for p in found:
        row = found_best.setdefault((p.parametrization, p.seed), {})
        if p.width not in row or p.loss < row[p.width][1]:
            row[p.width] = (p.rate, p.loss)
    return {key: {w: rate for w, (rate, _) in sorted(row.items())} for key, row in found_best.items()}


def moves(row: dict[int, float], grid: Sequence[float]) -> int:
    """How many grid steps the best learning rate moves across the widths (largest index minus smallest).

    Example:
        >>> moves({64: 1e-2, 256: 3e-3, 1024: 1e-3}, [1e-3, 3e-3, 1e-2])
        2
    """
    index = [sorted(grid).index(rate) for rate in row.values()]
    return max(index) - min(index)


def table(found: Sequence[TransferPoint]) -> str:
    """transfer.md: each width's best learning rate, per parametrization and seed, and how far it moves."""
    grid = sorted({p.rate for p in found})
    widths = sorted({p.width for p in found})
    lines = ["# The best learning rate per width", "",
             "The learning rate of the lowest final training loss, per parametrization and seed; `moves`: how many "
             f"steps of the grid ({', '.join(f'{r:.3g}' for r in grid)}) it moves across the widths.", "",
             "| parametrization | seed | " + " | ".join(f"width {w}" for w in widths) + " | moves |",
             "| --- | --- | " + " | ".join("---" for _ in widths) + " | --- |"]
    for (name, seed), row in sorted(best_rates(found).items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        cells = " | ".join(f"{row[w]:.3g}" if w in row else "-" for w in widths)
        lines.append(f"| {name} | {seed} | {cells} | {moves(row, grid)} |")
    return "\n".join(lines) + "\n"


def plot_transfer(path: Path, found: Sequence[TransferPoint]) -> None:
    """A panel per parametrization: final training loss against learning rate (log-log), a line per width through
    the mean over seeds (each run a dot); a failed run is left out of its line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({p.parametrization for p in found}, key=lambda n: (n != STANDARD, n))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.5), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        mine = [p for p in found if p.parametrization == name and math.isfinite(p.loss)]
        for i, width in enumerate(sorted({p.width for p in mine})):
            runs = [p for p in mine if p.width == width]
            rates = sorted({p.rate for p in runs})
            means = [sum(p.loss for p in runs if p.rate == r) / sum(1 for p in runs if p.rate == r) for r in rates]
            ax.plot(rates, means, marker="o", color=f"C{i}", label=f"width {width}")
            ax.scatter([p.rate for p in runs], [p.loss for p in runs], color=f"C{i}", s=10, alpha=0.5)
        ax.set(xscale="log", yscale="log", xlabel="learning rate", title=f"parametrization={name}")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("final training loss")
    axes[0][-1].legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
