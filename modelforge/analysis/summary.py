"""Sweep summaries: summary.csv, summary.md and curves.png for a folder of runs.

Hydra's end-of-sweep callback (`modelforge.sweep.callback`) writes them after every multirun;
`python -m modelforge report FOLDER` rebuilds the same files for any folder of runs, a sweep or single runs.
Jobs are grouped by the keys that vary across them, other than `seed`; each group's metrics are shown as the
mean ± sample standard deviation over its seeds.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.analysis import coord, depth, transfer
from modelforge.analysis.page import html
from modelforge.core.config.keys import changes_results
from modelforge.core.config.metrics import lower_is_better
from modelforge.core.names import Status, counted
from modelforge.run.folder import RunFolder

SEED_KEYS = ("seed",)
DEFAULT = "(default)"
# Not an override (Hydra keeps hydra/launcher out of a job's own), but runs differ in it: from metrics.json.
LAUNCHER = "launcher"


@dataclass
class RunRecord:
    """One run folder, read back."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.metrics.get("status", "unknown")

    @property
    def objective(self) -> tuple[str | None, float | None]:
        obj = self.metrics.get("objective") or {}
        return obj.get("name"), obj.get("value")

    def value(self, key: str) -> str:
        """What the job set `key` to (DEFAULT where it did not); `launcher` is `fused` for a fused arm's run, whose
        numbers its basic twin's nearly repeat: the two are not two seeds' replicates."""
        if key == LAUNCHER:
            return "fused" if self.metrics.get("fused") else DEFAULT
        return self.overrides.get(key, DEFAULT)

    @property
    def objective_epoch(self) -> int | None:
        """The epoch whose weights model.keras holds; a record written before objectives carried their epoch
        took the last epoch's numbers, so that is its epoch."""
        obj = self.metrics.get("objective") or {}
        return obj.get("epoch", self.metrics.get("epochs_run"))


def _overrides(run: Path) -> dict[str, str] | None:
    """The job's overrides by key; None when `.hydra/overrides.yaml` is there but not a list Hydra wrote."""
    found = {}
    try:
        items = RunFolder(run).overrides()
    except Exception:  # noqa: BLE001 (any damage: not YAML, not a list)
        return None
    for item in items:
        key, _, value = item.partition("=")
        found[key.lstrip("+~")] = value
    return found


def _number(cell: str) -> float:
    """A history cell as a number; NaN for one that is not (a hand-edited or damaged cell)."""
    try:
        return float(cell)
    except ValueError:
        return math.nan


def _history(run: Path) -> list[dict[str, float]]:
    path = run / "history.csv"
    if not path.is_file():  # a FIFO or a device would never end
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [{k: _number(v) for k, v in row.items() if v != "" and k is not None} for row in csv.DictReader(f)]


# A sweep's planned jobs, written when it starts (`modelforge.sweep.callback`), so that the summaries account
# for jobs that never started, and `resume` re-launches the same sweep.
PLANNED = "jobs.json"
NOT_STARTED = "not started"
DEAD = "dead"


def collect(root: str | Path) -> list[RunRecord]:
    """Every run folder under `root` (any depth), in path order, then the planned jobs that never started.

    A run recorded as `running` whose folder no live run holds is `dead`, with when it was last seen.
    """
    root = Path(root)
    jobs = []
    for metrics_path in sorted(root.rglob("metrics.json"), key=lambda p: _natural(p.parent, root)):
        run = metrics_path.parent
        folder = RunFolder(run)
        metrics = _mappings_kept(folder.record()) or {"status": "unreadable",
                                                      "error": "metrics.json is not valid JSON"}
        if metrics.get("status") == Status.RUNNING and not folder.is_live():
            metrics = {**metrics, "status": DEAD,
                       "error": f"the run died without a word; last seen {metrics.get('heartbeat', '?')}"}
        overrides = _overrides(run)
        if overrides is None:
            metrics = {**metrics, "status": "unreadable",
                       "error": ".hydra/overrides.yaml is not the list of overrides Hydra writes"}
        jobs.append(RunRecord(run, overrides or {}, metrics, _history(run)))
    started = [sorted(f"{k}={v}" for k, v in job.overrides.items()) for job in jobs]
    for planned in _planned(root):
        overrides = {key.lstrip("+~"): value for key, _, value in (item.partition("=") for item in planned)}
        if sorted(f"{k}={v}" for k, v in overrides.items()) not in started:
            jobs.append(RunRecord(root / NOT_STARTED, overrides,
                                  {"status": NOT_STARTED, "error": "the sweep ended first"}))
    return jobs


# What metrics.json holds as mappings; an edited or damaged record may hold anything there.
_MAPPINGS = ("objective", "best", "final", "fused", "config", "timings")


def _mappings_kept(record: dict[str, Any]) -> dict[str, Any]:
    """The record without what should be a mapping and is not (it is then not shown, rather than a traceback).

    Example:
        >>> _mappings_kept({"status": "completed", "objective": "abc", "final": {"loss": 1.0}})
        {'status': 'completed', 'final': {'loss': 1.0}}
    """
    return {k: v for k, v in record.items() if k not in _MAPPINGS or isinstance(v, dict)}


def _planned(root: Path) -> list[list[str]]:
    path = root / PLANNED
    if not path.exists():
        return []
    try:
        return [list(job) for job in json.loads(path.read_text(encoding="utf-8")).get("jobs") or []]
    except (json.JSONDecodeError, AttributeError):
        return []


def _natural(path: Path, root: Path) -> tuple:
    """Sorts job 10 after job 9."""
    return tuple(int(p) if p.isdigit() else p for p in _relative(path, root).parts)


def _relative(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def swept_keys(jobs: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value differs between jobs and can change results, in first-seen order."""
    keys: list[str] = []
    for job in jobs:
        keys.extend(k for k in job.overrides if k not in keys and changes_results(k))
    return [k for k in [*keys, LAUNCHER] if len({job.value(k) for job in jobs}) > 1]


def short_value(value: str) -> str:
    """An override's value for a group name: floats to 4 significant digits, anything else as it is.

    Example:
        >>> short_value("0.0012345678"), short_value("he_normal"), short_value("64")
        ('0.001235', 'he_normal', '64')
    """
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "." not in value and "e" not in value.lower() else f"{number:.4g}"


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(values: Sequence[float], digits: int = 4) -> str:
    if not values:
        return "–"
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f} (n=1)"


@dataclass
class Group:
    """Jobs sharing every swept value but the seed."""

    key: tuple[tuple[str, str], ...]
    jobs: list[RunRecord]

    @property
    def label(self) -> str:
        """The values this group set: a key the group left at its default is not named.

        Single runs gathered by `report` differ in a few keys each; naming every swept key in every label
        would bury the one that tells a group apart under `(default)`s.
        """
        shown = [f"{k}={v}" for k, v in self.key if v != DEFAULT]
        return ", ".join(shown) or ("defaults" if self.key else "all runs")

    @property
    def completed(self) -> list[RunRecord]:
        return [j for j in self.jobs if j.status == Status.COMPLETED]

    def values(self, what: str) -> list[float]:
        found = []
        for job in self.completed:
            if what == "objective":
                found.append(job.objective[1])
            elif what == "objective_epoch":
                found.append(job.objective_epoch)
            elif what == "best":
                found.append((job.metrics.get("best") or {}).get("value"))
            elif what == "epochs":
                found.append(job.metrics.get("epochs_run"))
            else:
                found.append((job.metrics.get("timings") or {}).get(what))
        return [v for v in found if isinstance(v, (int, float)) and not math.isnan(v)]


def group_jobs(jobs: Sequence[RunRecord], keys: Sequence[str]) -> list[Group]:
    grouping = [k for k in keys if k not in SEED_KEYS]
    groups: dict[tuple, Group] = {}
    for job in jobs:
        key = tuple((k, short_value(job.value(k))) for k in grouping)
        groups.setdefault(key, Group(key, [])).jobs.append(job)
    return list(groups.values())


def _objective_name(jobs: Sequence[RunRecord]) -> str:
    names = [j.objective[0] for j in jobs if j.objective[0]]
    return max(set(names), key=names.count) if names else "val_accuracy"


def best_group(groups: Sequence[Group], objective: str) -> Group | None:
    scored = [(statistics.fmean(g.values("objective")), g) for g in groups if g.values("objective")]
    if not scored:
        return None
    pick = min if lower_is_better(objective) else max
    return pick(scored, key=lambda pair: pair[0])[1]


def write_csv(folder: RunFolder, root: Path, jobs: Sequence[RunRecord], keys: Sequence[str]) -> None:
    metric_names: list[str] = []
    for job in jobs:
        metric_names.extend(k for k in (job.metrics.get("final") or {}) if k not in metric_names)
    rows = []
    for job in jobs:
        best = job.metrics.get("best") or {}
        timings = job.metrics.get("timings") or {}
        name, value = job.objective
        row = {"job": str(_relative(job.path, root)) or ".",
               "overrides": " ".join(f"{k}={v}" for k, v in job.overrides.items()),
               **{k: job.value(k) for k in keys},
               "status": job.status, "error": job.metrics.get("error") or "",
               "objective": name or "", "objective_value": value if value is not None else "",
               "objective_epoch": job.objective_epoch if job.objective_epoch is not None else "",
               **{f"final_{m}": (job.metrics.get("final") or {}).get(m, "") for m in metric_names},
               "best_metric": best.get("metric", ""), "best_value": best.get("value", ""),
               "best_epoch": best.get("epoch", ""), "epochs_run": job.metrics.get("epochs_run", ""),
               "fit_s": timings.get("fit_s", ""), "total_s": timings.get("total_s", "")}
        rows.append(row)
    folder.write_csv("summary.csv", rows)


def markdown(root: Path, jobs: Sequence[RunRecord], groups: Sequence[Group], keys: Sequence[str]) -> str:
    objective = _objective_name(jobs)
    best = best_group(groups, objective)
    counts = {s: sum(j.status == s for j in jobs) for s in dict.fromkeys(j.status for j in jobs)}
    direction = "lower" if lower_is_better(objective) else "higher"
    lines = [
        f"# Summary of {root.resolve()}",
        "",
        headline(groups, objective),
        "",
        f"{counted(len(jobs), 'run')}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ". "
        f"Grouped by {', '.join(k for k in keys if k not in SEED_KEYS) or 'nothing (one group)'}; "
        f"mean ± sample std over seeds; {objective}: {direction} is better. Each objective is the saved "
        "model's: the epoch early stopping restored, else the last.",
        "",
    ]
    columns = [k for k in keys if k not in SEED_KEYS] or ["group"]
    monitors = [(j.metrics.get("best") or {}).get("metric") for j in jobs]
    monitor = max(set(m for m in monitors if m), key=monitors.count, default=objective)
    header = [*columns, "completed", f"{objective} (saved model)", "its epoch", f"best {monitor}", "epochs",
              "fit s"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for group in groups:
        cells = [v for _, v in group.key] or [group.label]
        if group is best:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join([
            *cells, f"{len(group.completed)}/{len(group.jobs)}", _fmt(group.values("objective")),
            _fmt(group.values("objective_epoch"), 1), _fmt(group.values("best")), _fmt(group.values("epochs"), 1),
            _fmt(group.values("fit_s"), 2),
        ]) + " |")
    if any("fused" in j.metrics for j in jobs):
        lines += ["", "fit s of a fused job is its share of its group's fit (the group's fit over its arms); "
                  "metrics.json's `fused.fit_s` is the group's."]
    failed = [j for j in jobs if j.status != Status.COMPLETED]
    if failed:
        lines += ["", "## Runs that did not complete", "", "| run | overrides | status | reason |",
                  "| --- | --- | --- | --- |"]
        for job in failed:
            reason = (job.metrics.get("error") or "").replace("|", "\\|").replace("\n", " ")
            overrides = " ".join(f"{k}={v}" for k, v in job.overrides.items())
            lines.append(f"| {_relative(job.path, root)} | {overrides} | {job.status} | {reason} |")
    return "\n".join(lines) + "\n"


CURVES_DPI = 100
# Characters per legend line: a label is wrapped there, so the picture stays within 1,400 px at any length.
LEGEND_WIDTH = 44


def plot_curves(path: Path, groups: Sequence[Group], objective: str, title: str = "") -> dict[str, Any]:
    """The objective per epoch: a line per group (mean over seeds) with a ±1 std band.

    The legend sits outside the axes, to the right, and the picture is cut to what it draws, so any number
    of groups with long names fits. Returns the picture's size and the legend's box in it (pixels, origin
    bottom left), for checks.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 5))
    if len(groups) > 10:  # the default cycle has 10 colours; tab20 keeps more groups apart
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # type: ignore[attr-defined]
    for group in groups:
        curves = [[row[objective] for row in job.history if objective in row] for job in group.completed]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = max(len(c) for c in curves)
        # Runs stopped early end sooner: each epoch's statistics use the seeds that reached it.
        mean = np.array([np.mean([c[i] for c in curves if len(c) > i]) for i in range(length)])
        std = np.array([np.std([c[i] for c in curves if len(c) > i], ddof=1) if sum(len(c) > i for c in curves) > 1
                        else 0.0 for i in range(length)])
        epochs = np.arange(1, length + 1)
        label = textwrap.fill(f"{group.label} (n={len(curves)})", LEGEND_WIDTH, subsequent_indent="  ")
        (line,) = ax.plot(epochs, mean, marker="o", ms=3, label=label)
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set(xlabel="epoch", ylabel=objective)
    ax.set_title(f"{title}\n{objective} per epoch, mean ± std over seeds" if title else
                 f"{objective} per epoch, mean ± std over seeds")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    legend = None
    if ax.lines:
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small",
                           title="group (seeds)", title_fontsize="small", frameon=False)
    pad = 0.2  # inches around what is drawn
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas has one
    tight = fig.get_tightbbox(renderer).padded(pad)
    fig.savefig(path, dpi=CURVES_DPI, bbox_inches=tight)
    found: dict[str, Any] = {"size": (round(tight.width * CURVES_DPI), round(tight.height * CURVES_DPI)),
                             "legend": None}
    if legend is not None:
        box = legend.get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())
        found["legend"] = tuple(round(v * CURVES_DPI) for v in (box.x0 - tight.x0, box.y0 - tight.y0,
                                                                box.x1 - tight.x0, box.y1 - tight.y0))
    plt.close(fig)
    return found


def headline(groups: Sequence[Group], objective: str) -> str:
    """summary.md's first sentence: which group is best, by how much, and whether that beats the seeds' spread.

    Example:
        >>> headline([], "val_accuracy")
        'No run completed, so no group is best.'
    """
    scored = sorted(((statistics.fmean(g.values("objective")), g) for g in groups if g.values("objective")),
                    key=lambda pair: pair[0], reverse=not lower_is_better(objective))
    if not scored:
        return "No run completed, so no group is best."
    (best_mean, best), rest = scored[0], scored[1:]
    text = f"Best: {best.label} with {objective} {best_mean:.4f}"
    if not rest:
        return text + " (the only group)."
    (next_mean, runner_up) = rest[0]
    gap = abs(best_mean - next_mean)
    spreads = [s for g in (best, runner_up) if (s := _mean_std(g.values("objective"))[1]) is not None]
    text += f", {gap:.4f} {'below' if lower_is_better(objective) else 'above'} the next ({runner_up.label})"
    if not spreads:
        return text + "; with one seed per group there is no seed-to-seed spread to compare with."
    spread = max(spreads)
    verdict = "larger" if gap > spread else "not larger"
    return text + f"; the difference is {verdict} than the seed-to-seed spread (sample std up to {spread:.4f})."


@dataclass
class Summary:
    jobs: list[RunRecord]
    groups: list[Group]
    # Whether depth.png was drawn: the jobs include residual models with init reports.
    depth: bool = False
    # Whether transfer.png and transfer.md were written: the jobs sweep widths and learning rates.
    transfer: bool = False
    # Whether coord.md and coord_<parametrization>.png were written: the jobs ran muP's coordinate check.
    coord: bool = False

    @property
    def failed(self) -> list[RunRecord]:
        return [j for j in self.jobs if j.status != Status.COMPLETED]


def summarize(root: str | Path, out: str | Path | None = None) -> Summary:
    """Writes summary.csv, summary.md, summary.html and curves.png for every run under `root`, into `out`
    (default: `root` itself, as a sweep's own summaries are), depth.png where the runs are residual models
    with init reports (`analysis.depth`), transfer.png and transfer.md where they sweep widths and learning
    rates (`analysis.transfer`), coord.md and a coord_<parametrization>.png where they ran muP's coordinate check
    (`analysis.coord`).

    Raises:
        FileNotFoundError: `root` holds no run folder.
    """
    root = Path(root)
    jobs = collect(root)
    if not jobs:
        raise FileNotFoundError(f"no run folders (with a metrics.json) under {root}")
    keys = swept_keys(jobs)
    groups = group_jobs(jobs, keys)
    folder = RunFolder(out if out is not None else root)
    write_csv(folder, root, jobs, keys)
    markdown_text = markdown(root, jobs, groups, keys)
    folder.write_text("summary.md", markdown_text)
    folder.write_with("curves.png", lambda p: plot_curves(p, groups, _objective_name(jobs), title=root.name))
    folder.write_text("summary.html", html(root, folder.path / "curves.png", markdown_text))
    residual = depth.points(jobs)
    if residual:
        folder.write_with(depth.FIGURE, lambda p: depth.plot_depth(p, residual, _objective_name(jobs)))
    widths = transfer.points(jobs)
    if widths:
        folder.write_with(transfer.FIGURE, lambda p: transfer.plot_transfer(p, widths))
        folder.write_text(transfer.TABLE, transfer.table(widths))
    checks = coord.runs(jobs)
    for name in dict.fromkeys(r.parametrization for r in checks):
        folder.write_with(f"coord_{name}.png", functools.partial(coord.plot_coord, found=checks, name=name))
    if checks:
        folder.write_text(coord.TABLE, coord.table(checks))
    return Summary(jobs, groups, bool(residual), bool(widths), bool(checks))
