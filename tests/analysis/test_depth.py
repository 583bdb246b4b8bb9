"""depth.png: a sweep of residual models with init reports, read back per run (rule, branches, the stream's
growth at init, the objective, a failed run counted as chance) and drawn beside the sweep's curves."""

import json

import pytest

from modelforge.analysis.depth import FIGURE, points
from modelforge.analysis.summary import collect
from tests.helpers import run_module

pytestmark = pytest.mark.slow


def test_a_residual_sweep_draws_depth_and_counts_a_failed_run_as_chance(tmp_path):
    result = run_module(tmp_path, "-m", "model=resmlp", "model.blocks.res.repeat=2,3", "residual=none,zero_last",
                        "optimizer.learning_rate=1e-3,1e12", "trainer.epochs=1", "trainer.diagnose=true",
                        "model.units=8", "trainer.verbose=0", "hydra.sweep.dir=s")
    assert result.returncode == 1  # the runs at 1e12 fail on NaN, and the sweep says so
    assert (tmp_path / "s" / FIGURE).stat().st_size > 0
    found = points(collect(tmp_path / "s"))
    assert sorted((p.rule, p.branches) for p in found) == sorted([(r, b) for r in ("none", "zero_last")
                                                                  for b in (2, 3)] * 2)
    for job, p in zip(collect(tmp_path / "s"), found, strict=True):
        record = json.loads((job.path / "metrics.json").read_text())
        blocks = json.loads((job.path / "init_report.json").read_text())["residual"]
        assert p.growth == pytest.approx(blocks[-1]["stream_std"] / blocks[0]["input_std"], rel=1e-12)
        if record["status"] == "completed":
            assert p.objective == record["objective"]["value"]
        else:
            assert p.objective == pytest.approx(0.1)  # chance among 10 classes
    # A branch ending at zero leaves the stream as it entered; without a rule it grows.
    assert all(p.growth == pytest.approx(1.0, rel=1e-6) for p in found if p.rule == "zero_last")
    assert all(p.growth > 1.05 for p in found if p.rule == "none")
    report = run_module(tmp_path, "report", "s")
    assert "curves.png and depth.png" in report.stdout


def test_a_sweep_of_one_depth_draws_the_stream_block_by_block_and_names_the_norms_place(tmp_path):
    result = run_module(tmp_path, "-m", "model=transformer", "model.norm=post", "residual=none,deepnorm",
                        "trainer.epochs=1", "trainer.diagnose=true", "model.units=8", "trainer.verbose=0",
                        "hydra.sweep.dir=s")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "s" / FIGURE).stat().st_size > 0
    found = points(collect(tmp_path / "s"))
    assert [p.rule for p in found] == ["post-LN none", "post-LN deepnorm"]
    for job, p in zip(collect(tmp_path / "s"), found, strict=True):
        blocks = json.loads((job.path / "init_report.json").read_text())["residual"]
        assert len(p.profile) == p.branches == 4 and p.profile[-1] == p.growth
        assert p.profile == pytest.approx([b["stream_std"] / blocks[0]["input_std"] for b in blocks], rel=1e-12)
    # The stream entering the first block is the embeddings' (the same draws under both rules, the seed being one),
    # read before DeepNorm's alpha scales the shortcut.
    entering = [json.loads((job.path / "init_report.json").read_text())["residual"][0]["input_std"]
                for job in collect(tmp_path / "s")]
    assert entering[0] == pytest.approx(entering[1], rel=1e-6)
