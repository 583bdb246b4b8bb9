"""The run folder writes atomically: a failed write leaves neither a half file nor a temp file."""

import json
import re

import pytest

from modelforge.run.folder import RunFolder, default_run_dir, versions


def test_writes_and_reads(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_json("metrics.json", {"status": "running", "n": 1})
    folder.write_csv("history.csv", [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25, "acc": 0.9}])
    assert folder.read_json("metrics.json") == {"status": "running", "n": 1}
    assert (tmp_path / "run" / "history.csv").read_text() == "epoch,loss,acc\n1,0.5,\n2,0.25,0.9\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv", "metrics.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_json("metrics.json", {"status": "completed"})

    def explode(path):
        path.write_text("{half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        folder.write_with("metrics.json", explode)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_run_dir_names_and_versions():
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}-\d+", default_run_dir().as_posix())
    found = versions()
    assert found["keras"].startswith("3.") and found["modelforge"] != "not installed"
