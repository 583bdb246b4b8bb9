"""Residual rules against depth, for a sweep of residual models run with the init health report
(`trainer.diagnose=true`): each run's rule, its number of residual branches, the stream's growth at init (the
std after the last block over the std entering the first) and its objective, drawn as `depth.png` beside the
sweep's curves (`experiment=residual_depth`'s figure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.core.config.keys import KEYS
from modelforge.core.names import Status

if TYPE_CHECKING:
    from modelforge.analysis.summary import RunRecord

# Where a run's record leaves the rule out, it is the rule whose value means no rule at all.
NO_RULE = KEYS["residual.name"].absent[0]
REPORT = "init_report.json"
FIGURE = "depth.png"


@dataclass(frozen=True)
class DepthPoint:
    """One run: its rule (with its normalization's place where the model says it: `post-LN deepnorm`), branches
    (L), seed, growth at init, objective (a failed or NaN run's: chance), and the stream's std after each block
    over its std entering the first, at init."""

    rule: str
    branches: int
    seed: int | None
    growth: float | None
    objective: float
    profile: tuple[float | None, ...] = ()


def _chance(report: dict[str, Any]) -> float:
    """A classifier's accuracy by guessing: 1 / classes (the report's reference loss is ln(classes))."""
    reference = report.get("reference_loss")
    return 1.0 / math.exp(reference) if str(report.get("reference", "")).startswith("ln(") and reference else 0.0


def point(job: RunRecord) -> DepthPoint | None:
    """The job's point, or None for a job without a residual model's init report."""
    path = job.path / REPORT
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    blocks = report.get("residual") or []
    if not blocks:
        return None
    values = (job.metrics.get("config") or {}).get("values") or {}
    entering = blocks[0].get("input_std")
    profile = tuple(_over(b.get("stream_std"), entering) for b in blocks)
    _, value = job.objective
    done = job.status == Status.COMPLETED and value is not None and math.isfinite(value)
    rule = str(values.get("residual.name", NO_RULE))
    norm = values.get("model.norm")
    return DepthPoint(f"{norm}-LN {rule}" if norm else rule, len(blocks), values.get("seed"), profile[-1],
                      float(value) if done and value is not None else _chance(report), profile)


def _over(std: float | None, entering: float | None) -> float | None:
    return std / entering if entering and std is not None and math.isfinite(std) else None


def points(jobs: Sequence[RunRecord]) -> list[DepthPoint]:
    """The points of every job that has one, in the jobs' order."""
    return [p for p in (point(job) for job in jobs) if p is not None]


def plot_depth(path: Path, found: Sequence[DepthPoint], objective: str) -> None:
    """Two panels against the number of branches, a line per rule through its mean over the rule's runs at that
    depth (each run a dot): the objective after training, and the stream's growth at init (log scale). Runs of one
    depth are drawn block by block instead (`plot_blocks`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if len({p.branches for p in found}) == 1:
        return plot_blocks(path, found, objective)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for rule in dict.fromkeys(p.rule for p in found):
        mine = [p for p in found if p.rule == rule]
        depths = sorted({p.branches for p in mine})
        for ax, value in ((left, "objective"), (right, "growth")):
            dots = [(p.branches, getattr(p, value)) for p in mine if getattr(p, value) is not None]
            means = [sum(v for b, v in dots if b == d) / max(1, sum(1 for b, _ in dots if b == d)) for d in depths]
            (line,) = ax.plot(depths, means, marker="o", label=rule)
            ax.scatter([b for b, _ in dots], [v for _, v in dots], color=line.get_color(), s=12, alpha=0.6)
    left.set(xlabel="residual branches (L)", ylabel=objective, title=f"{objective} after training")
    right.set(xlabel="residual branches (L)", ylabel="stream std after the last block / entering the first",
              title="the stream's growth at init", yscale="log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    right.legend(title="residual", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_blocks(path: Path, found: Sequence[DepthPoint], objective: str) -> None:
    """Runs of one depth, per rule: the objective after training (a dot per run, a bar at the mean), and the
    stream's std after each block over its std entering the first, at init (a line per run, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    rules = list(dict.fromkeys(p.rule for p in found))
    for i, rule in enumerate(rules):
        mine = [p for p in found if p.rule == rule]
        color = f"C{i % 10}"
        left.bar(i, sum(p.objective for p in mine) / len(mine), color=color, alpha=0.35)
        left.scatter([i] * len(mine), [p.objective for p in mine], color=color, s=16)
        for j, run in enumerate(mine):
            blocks = [(b, v) for b, v in enumerate(run.profile, start=1) if v is not None]
            right.plot([b for b, _ in blocks], [v for _, v in blocks], color=color, alpha=0.8,
                       label=rule if j == 0 else None)
    left.set_xticks(range(len(rules)), rules, rotation=20, ha="right")
    left.set(ylabel=objective, title=f"{objective} after training ({found[0].branches} branches)")
    right.set(xlabel="residual block", ylabel="stream std after the block / entering the first",
              title="the stream at init, block by block", yscale="log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    right.legend(title="residual", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
