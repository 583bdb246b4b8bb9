"""Sweep summaries from run folders written by hand: grouping, mean ± std, the best group, failures."""

import csv
import json
import math
import statistics

import pytest

from modelforge.analysis.summary import collect, summarize, swept_keys
from modelforge.cli.report import main

ACCURACY = {("glorot_uniform", 0): 0.90, ("glorot_uniform", 1): 0.92, ("glorot_uniform", 2): 0.97,
            ("he_normal", 0): 0.95, ("he_normal", 1): 0.96, ("he_normal", 2): 0.98}


def fake_run(path, overrides, status="completed", accuracy=None, epochs=3, error=None):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    metrics = {"status": status, "error": error, "epochs_run": epochs, "timings": {"fit_s": 1.0, "total_s": 2.0}}
    if status == "completed":
        metrics.update(objective={"name": "val_accuracy", "value": accuracy},
                       final={"loss": 0.1, "val_accuracy": accuracy},
                       best={"metric": "val_accuracy", "value": accuracy + 0.01, "epoch": epochs})
        rows = [f"{e},{accuracy * e / epochs}" for e in range(1, epochs + 1)]
        (path / "history.csv").write_text("epoch,val_accuracy\n" + "\n".join(rows) + "\n")
    (path / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep(tmp_path):
    job = 0
    for (init, seed), acc in ACCURACY.items():
        fake_run(tmp_path / str(job), [f"initializer={init}", f"seed={seed}", "trainer.epochs=3"], accuracy=acc)
        job += 1
    fake_run(tmp_path / str(job), ["initializer=lecun_normal", "seed=0", "trainer.epochs=3"], status="failed",
             error="model.units=0 must be a positive integer")
    return tmp_path


def test_groups_and_swept_keys(sweep):
    jobs = collect(sweep)
    assert [j.path.name for j in jobs] == [str(i) for i in range(7)]
    assert swept_keys(jobs) == ["initializer", "seed"]


def test_summary_md_mean_std_and_best(sweep):
    summary = summarize(sweep)
    assert len(summary.failed) == 1
    text = (sweep / "summary.md").read_text()
    for init in ("glorot_uniform", "he_normal"):
        values = [v for (i, _), v in ACCURACY.items() if i == init]
        expected = f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
        line = next(line for line in text.splitlines() if init in line and "|" in line)
        assert expected in line
        assert "3/3" in line
    assert "| **he_normal** (best) |" in text
    assert "lecun_normal" in text and "0/1" in text
    assert "model.units=0 must be a positive integer" in text.split("did not complete")[1]
    assert "7 runs: 6 completed, 1 failed" in text


def test_summary_csv_has_a_row_per_job(sweep):
    summarize(sweep)
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    first = rows[0]
    assert (first["job"], first["initializer"], first["seed"], first["status"]) == ("0", "glorot_uniform", "0",
                                                                                   "completed")
    assert float(first["objective_value"]) == 0.90 and float(first["best_value"]) == pytest.approx(0.91)
    assert first["epochs_run"] == "3" and first["fit_s"] == "1.0"
    assert rows[-1]["status"] == "failed" and "positive integer" in rows[-1]["error"]
    assert (sweep / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_lower_is_better_for_losses(tmp_path):
    for i, (init, loss) in enumerate([("a", 0.5), ("b", 0.2)]):
        fake_run(tmp_path / str(i), [f"initializer={init}"], accuracy=loss)
        metrics = json.loads((tmp_path / str(i) / "metrics.json").read_text())
        metrics["objective"]["name"] = "val_loss"
        (tmp_path / str(i) / "metrics.json").write_text(json.dumps(metrics))
    summarize(tmp_path)
    assert "| **b** (best) |" in (tmp_path / "summary.md").read_text()


def test_report_command(sweep, tmp_path_factory, capsys, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*")}
    assert main([str(sweep)]) == 0
    said = capsys.readouterr().out
    assert "he_normal" in said
    # A folder of separate runs is never written into: the summaries go to a folder of their own, printed.
    (written,) = (elsewhere / "outputs" / "report").glob("*/*/summary.md")
    assert str(written.parent) in said and {p: p.stat().st_mtime_ns for p in sweep.rglob("*")} == before
    # A sweep folder (jobs.json) gets its own summaries rebuilt in place.
    (sweep / "jobs.json").write_text("{}")
    assert main([str(sweep)]) == 0 and (sweep / "summary.md").is_file()
    empty = tmp_path_factory.mktemp("empty")
    assert main([str(empty)]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert main([str(empty / "missing")]) == 2


def twelve_groups(root, epochs=5):
    """12 groups with long names, 2 seeds each, written as run folders."""
    import numpy as np

    rng = np.random.default_rng(0)
    for g in range(12):
        for seed in range(2):
            run = root / f"{g}_{seed}"
            (run / ".hydra").mkdir(parents=True)
            name = f"a_rather_long_initializer_name_number_{g:02d}_with_a_suffix"
            (run / ".hydra" / "overrides.yaml").write_text(f"- initializer={name}\n- seed={seed}\n")
            curve = np.clip(0.5 + 0.04 * g + 0.05 * np.log1p(np.arange(epochs)) + rng.normal(0, 0.01, epochs), 0, 1)
            (run / "history.csv").write_text("epoch,val_accuracy\n" + "".join(
                f"{e + 1},{v}\n" for e, v in enumerate(curve)))
            (run / "metrics.json").write_text(json.dumps({
                "status": "completed", "objective": {"name": "val_accuracy", "value": float(curve[-1])},
                "best": {"metric": "val_accuracy", "value": float(curve.max()), "epoch": int(curve.argmax()) + 1},
                "epochs_run": epochs, "final": {"val_accuracy": float(curve[-1])}}))


def test_curves_legend_fits_for_twelve_long_groups(tmp_path):
    import matplotlib.image

    from modelforge.analysis.summary import collect, group_jobs, plot_curves

    twelve_groups(tmp_path)
    jobs = collect(tmp_path)
    groups = group_jobs(jobs, swept_keys(jobs))
    assert len(groups) == 12
    drawn = plot_curves(tmp_path / "curves.png", groups, "val_accuracy", title="sweep-2026-11-29")
    height, width = matplotlib.image.imread(tmp_path / "curves.png").shape[:2]
    assert abs(width - drawn["size"][0]) <= 2 and abs(height - drawn["size"][1]) <= 2
    x0, y0, x1, y1 = drawn["legend"]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height  # the whole legend is in the picture
    assert x0 > 0.5 * width  # beside the plot, not over it


SINGLE_RUNS = [  # 12 single runs as `report outputs` finds them: each set a few keys, most left at their default
    ["initializer=he_normal"], ["initializer=lecun_normal", "model.units=128"], ["activation=tanh"],
    ["activation=tanh", "initializer=glorot_uniform", "optimizer.learning_rate=0.01"], ["layer=conv"],
    ["layer=conv", "model.depth=3", "optimizer=sgd"], ["optimizer=sgd", "optimizer.learning_rate=0.05"],
    ["model.depth=4", "model.units=128", "activation=gelu"], ["data.validation_split=0.3"], ["initializer=lsuv"],
    ["initializer=delta_orthogonal", "layer=conv", "trainer.batch_size=64"], [],
]


def test_single_runs_are_labelled_by_what_each_set_and_the_curves_stay_narrow(tmp_path):
    import matplotlib.image

    from modelforge.analysis.summary import collect, group_jobs, plot_curves

    for i, overrides in enumerate(SINGLE_RUNS):
        run = tmp_path / f"run{i:02d}"
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        curve = [0.5 + 0.02 * i + 0.05 * e for e in range(5)]
        rows = "".join(f"{e + 1},{v}\n" for e, v in enumerate(curve))
        (run / "history.csv").write_text("epoch,val_accuracy\n" + rows)
        (run / "metrics.json").write_text(json.dumps({
            "status": "completed", "objective": {"name": "val_accuracy", "value": curve[-1]}, "epochs_run": 5}))
    jobs = collect(tmp_path)
    groups = group_jobs(jobs, swept_keys(jobs))
    labels = sorted(g.label for g in groups)
    assert len(groups) == 12 and not any("(default)" in label for label in labels)
    assert "initializer=glorot_uniform, activation=tanh, optimizer.learning_rate=0.01" in labels  # keys first-seen
    assert "defaults" in labels and "layer=conv" in labels  # the run that set nothing, and one that set one key
    drawn = plot_curves(tmp_path / "curves.png", groups, "val_accuracy", title="outputs")
    height, width = matplotlib.image.imread(tmp_path / "curves.png").shape[:2]
    assert width <= 1400 and abs(width - drawn["size"][0]) <= 2, width
    x0, y0, x1, y1 = drawn["legend"]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and x0 > 0.5 * width
    summarize(tmp_path)
    assert "(default)" not in (tmp_path / "summary.md").read_text().split("\n\n")[0]


def test_summary_opens_with_the_verdict_and_groups_by_what_changes_results(tmp_path):
    twelve_groups(tmp_path)
    for run in tmp_path.iterdir():  # an output-only key differs too; it must not split the groups
        with open(run / ".hydra" / "overrides.yaml", "a") as f:
            f.write(f"- trainer.verbose={len(run.name) % 3}\n- optimizer.learning_rate=0.0012345678\n")
    summarize(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    first = text.splitlines()[2]
    assert first.startswith("Best: initializer=a_rather_long_initializer_name_number_11_with_a_suffix with "
                            "val_accuracy ")
    assert "above the next (initializer=a_rather_long_initializer_name_number_10" in first
    assert "seed-to-seed spread" in first
    assert "Grouped by initializer;" in text and "trainer.verbose" not in text.split("## ")[0].split("|")[0]
    assert "0.0012345678" not in text  # constant keys do not group; floats would be rounded if they did


@pytest.mark.browser
def test_summary_html_renders_in_a_real_browser(tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "the browser check needs Debian's chromium (.ci/run installs it)"
    twelve_groups(tmp_path / "sweep")
    summarize(tmp_path / "sweep")
    page = (tmp_path / "sweep" / "summary.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    # The same page, plus a probe that writes what the browser rendered into the DOM once everything loaded.
    probe = page.replace("</body>", "<script>window.addEventListener('load', () => {"
                         "document.body.dataset.img = document.images[0].naturalWidth + 'x' + "
                         "document.images[0].naturalHeight; document.body.dataset.rows = "
                         "document.querySelectorAll('table tr').length;});</script></body>")
    (tmp_path / "probe.html").write_text(probe)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom",
                          (tmp_path / "probe.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    import re

    size = re.search(r'data-img="(\d+)x(\d+)"', dom.stdout)
    rows = re.search(r'data-rows="(\d+)"', dom.stdout)
    assert size and int(size[1]) > 400 and int(size[2]) > 200, dom.stdout[-500:]  # the curves decoded
    assert rows and int(rows[1]) == 13  # the header and the 12 groups
    shot = subprocess.run([browser, *flags, "--window-size=1200,900", f"--screenshot={tmp_path / 'page.png'}",
                           (tmp_path / "sweep" / "summary.html").as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert shot.returncode == 0 and (tmp_path / "page.png").stat().st_size > 10_000


def test_a_basic_and_a_fused_run_of_one_seed_are_not_two_seeds(tmp_path):
    """A folder holding a basic sweep and a fused one of the same seeds: two groups of three seeds, not six."""
    for launcher in ("basic", "fused"):
        for seed in range(3):
            fake_run(tmp_path / launcher / str(seed), [f"seed={seed}", "trainer.epochs=3"], accuracy=0.9 + seed / 100)
            if launcher == "fused":
                record = json.loads((tmp_path / launcher / str(seed) / "metrics.json").read_text())
                record["fused"] = {"size": 3, "arm": seed, "fit_s": 1.0}
                (tmp_path / launcher / str(seed) / "metrics.json").write_text(json.dumps(record))
    summary = summarize(tmp_path)
    assert swept_keys(summary.jobs) == ["seed", "launcher"]
    assert sorted((g.label, len(g.jobs)) for g in summary.groups) == [("defaults", 3), ("launcher=fused", 3)]
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["launcher"] for r in rows] == ["(default)"] * 3 + ["fused"] * 3


def test_damaged_run_folders_are_reported_not_tracebacks(tmp_path):
    """A history cell that is not a number, an overrides.yaml that is not YAML, and a history.csv that is a FIFO
    (which would never end): report writes its summaries, saying what it could not read."""
    import os

    from tests.helpers import run_module

    fake_run(tmp_path / "runs" / "cell", ["seed=0"], accuracy=0.9)
    history = tmp_path / "runs" / "cell" / "history.csv"
    history.write_text(history.read_text().replace("0.3", "oops", 1))
    fake_run(tmp_path / "runs" / "yaml", ["seed=1"], accuracy=0.8)
    (tmp_path / "runs" / "yaml" / ".hydra" / "overrides.yaml").write_text("{{{ not yaml\n")
    fake_run(tmp_path / "runs" / "fifo", ["seed=2"], accuracy=0.7)
    (tmp_path / "runs" / "fifo" / "history.csv").unlink()
    os.mkfifo(tmp_path / "runs" / "fifo" / "history.csv")
    fake_run(tmp_path / "runs" / "objective", ["seed=3"], accuracy=0.6)
    record = json.loads((tmp_path / "runs" / "objective" / "metrics.json").read_text())
    (tmp_path / "runs" / "objective" / "metrics.json").write_text(json.dumps({**record, "objective": "abc",
                                                                              "best": 3, "final": "x"}))
    result = run_module(tmp_path, "report", "runs", timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    jobs = {job.path.name: job for job in collect(tmp_path / "runs")}
    assert jobs["yaml"].status == "unreadable" and "overrides.yaml" in jobs["yaml"].metrics["error"]
    assert any(math.isnan(v) for row in jobs["cell"].history for v in row.values())
    assert jobs["fifo"].history == [] and jobs["cell"].status == "completed"
    assert jobs["objective"].objective == (None, None) and jobs["objective"].status == "completed"
