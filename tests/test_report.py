"""Sweep summaries from run folders written by hand: grouping, mean ± std, the best group, failures."""

import csv
import json
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


def test_report_command(sweep, tmp_path_factory, capsys):
    assert main([str(sweep)]) == 0
    assert "he_normal" in capsys.readouterr().out
    empty = tmp_path_factory.mktemp("empty")
    assert main([str(empty)]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert main([str(empty / "missing")]) == 2
