"""The examples/ folder's commands, run as its README says (bring your own CSV)."""

import json
import shutil

import pytest

from tests.helpers import REPO, run_module

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "byo_csv"


@pytest.mark.parametrize("args", [
    ["data=csv", "data.path=measurements.csv", "data.target=species"],
    ["--config-dir", "conf", "data=penguins", "trainer.metrics=[accuracy,auc]", "optimizer.schedule=cosine"],
])
def test_bring_your_own_csv(tmp_path, args):
    shutil.copytree(EXAMPLE, tmp_path / "example")
    result = run_module(tmp_path / "example", *args, "trainer.verbose=0", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "example" / "run" / "metrics.json").read_text())
    assert record["status"] == "completed"
    # Three well-separated species: far above chance (1/3) once the columns are standardized.
    assert record["final"]["val_accuracy"] > 0.85
    assert record["samples"] == {"train": 150 - round(150 * (0.25 if "data=penguins" in args else 0.2)),
                                 "validation": round(150 * (0.25 if "data=penguins" in args else 0.2))}
