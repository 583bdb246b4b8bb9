"""Folders that are modelforge's: a command writes only into an empty folder or one of its own of the same kind,
never through a symbolic link, and a sweep folder holds one sweep. Each fault is caused as a user would cause it.
"""

import json
import os
import shutil

import pytest

from modelforge.run.folder import RunFolder
from modelforge.run.lifecycle import claim
from modelforge.run.owned import MARK, Kind, NotOurs, check_ours, recorded_kind
from tests.helpers import KILLABLE, assert_refused, on_a_small_disk, run_module, said

pytestmark = pytest.mark.slow
FAST = [*KILLABLE, "trainer.epochs=1"]


def snapshot(folder):
    """Every entry under `folder` with its bytes and mtime (links as their target's name)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[path] = ("link", os.readlink(path))
        elif path.is_file():
            found[path] = (path.read_bytes(), path.stat().st_mtime_ns)
        else:
            found[path] = ("dir",)
    return found


def users_project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("mine: true\n")
    (project / "history.csv").write_text("my,own\n1,2\n")
    return project


@pytest.mark.parametrize("command", [["plan"], []], ids=["plan", "train"])
def test_a_folder_of_the_users_files_is_refused_and_untouched(tmp_path, command):
    project = users_project(tmp_path)
    before = snapshot(project)
    result = run_module(project, *command, *FAST, "hydra.run.dir=.")
    assert result.returncode == 2, result.stderr
    message = said(result)
    assert "holds files modelforge did not write (config.yaml, 2 in all)" in message and "hydra.run.dir=" in message
    assert snapshot(project) == before  # not even a lock file or Hydra's log


def test_a_hydra_link_in_an_empty_run_folder_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "config.yaml").write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".hydra").symlink_to(target)
    result = run_module(tmp_path, *FAST, "hydra.run.dir=run")
    assert_refused(result, ".hydra in", "is a symbolic link")
    assert [p.name for p in target.iterdir()] == ["config.yaml"]
    assert (target / "config.yaml").read_text() == "precious\n"
    assert [p.name for p in run.iterdir()] == [".hydra"]


def test_a_folder_reached_through_a_link_above_it_is_fine(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (tmp_path / "outputs").symlink_to(big)
    result = run_module(tmp_path, *FAST, "hydra.run.dir=outputs/run")
    assert result.returncode == 0, result.stderr
    assert json.loads((big / "run" / "metrics.json").read_text())["status"] == "completed"
    assert recorded_kind(big / "run") == Kind.RUN


def test_a_plan_folder_takes_plans_again_but_no_run(tmp_path):
    first = run_module(tmp_path, "plan", "hydra.run.dir=plans")
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "plans" / MARK).read_text())["kind"] == "plan"
    plan = (tmp_path / "plans" / "init_plan.json").read_text()
    again = run_module(tmp_path, "plan", "model.depth=7", "hydra.run.dir=plans")
    assert again.returncode == 0, again.stderr
    assert len(json.loads((tmp_path / "plans" / "init_plan.json").read_text())) > len(json.loads(plan))
    before = snapshot(tmp_path / "plans")
    run = run_module(tmp_path, *FAST, "hydra.run.dir=plans")
    assert_refused(run, "is a modelforge plan folder, not a run folder")
    assert snapshot(tmp_path / "plans") == before


def test_a_plan_folder_of_the_previous_main_still_counts_as_a_plan_folder(tmp_path):
    first = run_module(tmp_path, "plan", "hydra.run.dir=plans")
    assert first.returncode == 0, first.stderr
    (tmp_path / "plans" / MARK).unlink()  # as that main left them: no record, known by init_plan.json
    assert recorded_kind(tmp_path / "plans") == Kind.PLAN
    assert run_module(tmp_path, "plan", "hydra.run.dir=plans").returncode == 0


def test_subdir_dot_is_refused_before_any_folder_is_made(tmp_path):
    result = run_module(tmp_path, "-m", "seed=0,1", *FAST, "hydra.sweep.dir=sweep", "hydra.sweep.subdir=.")
    assert_refused(result, "hydra.sweep.subdir='.' is refused")
    assert not (tmp_path / "sweep").exists()
    up = run_module(tmp_path, "-m", "seed=0,1", *FAST, "hydra.sweep.dir=sweep", "hydra.sweep.subdir=../x")
    assert_refused(up, "relative path below it")


def test_a_sweep_over_a_completed_run_is_refused(tmp_path):
    done = run_module(tmp_path, *FAST, "hydra.run.dir=C2")
    assert done.returncode == 0, done.stderr
    before = snapshot(tmp_path / "C2")
    sweep = run_module(tmp_path, "-m", "trainer.epochs=3", *KILLABLE, "hydra.sweep.dir=C2")
    assert_refused(sweep, "is a modelforge run folder, not a sweep folder")
    assert snapshot(tmp_path / "C2") == before


def test_a_sweep_folder_holds_one_sweep_and_the_same_command_continues_it(tmp_path):
    a = ["-m", "seed=0,1", "initializer=he_normal", *FAST, "hydra.sweep.dir=S"]
    first = run_module(tmp_path, *a)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "S")
    other = run_module(tmp_path, "-m", "seed=0,1,2,3", "initializer=glorot_uniform", *FAST, "hydra.sweep.dir=S",
                       "hydra/launcher=fused")
    assert other.returncode == 2
    message = said(other)
    assert "holds another sweep (seed=0,1 initializer=he_normal" in message and "modelforge resume" in message
    assert "hydra.mode" not in message
    assert snapshot(tmp_path / "S") == before  # refused before a job started: no job folder, same summaries
    again = run_module(tmp_path, *a)
    assert again.returncode == 0, again.stderr
    assert "holds this sweep already; continuing it" in again.stdout
    assert "(completed before; untouched)" in again.stdout
    for job in ("0", "1"):
        assert snapshot(tmp_path / "S" / job) == {p: v for p, v in before.items() if tmp_path / "S" / job in p.parents}


def test_claim_refuses_a_users_folder_for_the_python_api(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(NotOurs, match=r"run_dir: .* holds files modelforge did not write \(notes.txt"):
        claim(RunFolder(tmp_path), key="run_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = RunFolder(empty)
    claim(folder, key="run_dir")
    folder.unlock()
    assert recorded_kind(empty) == Kind.RUN


def test_a_record_of_another_kind_or_a_link_is_refused(tmp_path):
    (tmp_path / MARK).write_text(json.dumps({"kind": "report"}))
    (tmp_path / "summary.md").write_text("x")
    assert_refused(lambda: check_ours(tmp_path, Kind.SWEEP, "hydra.sweep.dir"),
                   "is a modelforge report folder, not a sweep folder")
    check_ours(tmp_path, Kind.REPORT, "out")
    (tmp_path / "modelforge.log").symlink_to("/etc/hostname")
    assert_refused(lambda: check_ours(tmp_path, Kind.REPORT, "out"), "modelforge.log in", "is a symbolic link")


WRITER = '''import numpy as np
from pathlib import Path


def load():
    Path("mf_late.py").write_text("def load():\\\\n    raise SystemExit('mf_late_ran')\\\\n")
    x = np.random.default_rng(0).standard_normal((60, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")
'''


def test_a_module_a_job_writes_is_not_the_users_code_for_later_jobs_or_resume(tmp_path):
    (tmp_path / "my_writer.py").write_text(WRITER)
    args = ["-m", "data=callable", "data._target_=my_writer.load,mf_late.load", "model.units=4", "trainer.epochs=1",
            "trainer.verbose=0", "hydra.sweep.dir=S"]
    sweep = run_module(tmp_path, *args)
    assert (tmp_path / "mf_late.py").exists()  # job 0 wrote it; job 1 must not import it
    assert sweep.returncode == 1
    assert "mf_late_ran" not in sweep.stdout + sweep.stderr
    failed = json.loads((tmp_path / "S" / "1" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "'mf_late' was written after this run or sweep started" in failed["error"]
    for trust, ran in (({}, False), ({"MODELFORGE_TRUSTED_MODULES": "mf_late"}, True)):
        shutil.rmtree(tmp_path / "S" / "1")  # as if the sweep had been killed before job 1 started
        resumed = run_module(tmp_path, "resume", "S", env=trust)
        assert ("mf_late_ran" in resumed.stdout + resumed.stderr) == ran  # trust said outside the config opens it
        if not ran:
            assert "was written after this run or sweep started" in json.loads(
                (tmp_path / "S" / "1" / "metrics.json").read_text())["error"]


def test_a_folder_that_cannot_be_made_is_refused_before_hydra_writes(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run_module(tmp_path, "plan", "hydra.run.dir=afile/plans")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "hydra.run.dir: cannot write into" in said(result) and "Not a directory" in said(result)


# A completed run on a disk that is then made read-only: its resume, and a plan into that disk.
READ_ONLY = """
cd "$WORK"
"$PY" -m modelforge model.units=4 trainer.epochs=1 trainer.verbose=0 hydra.run.dir="$DISK/run" > /dev/null
mount -o remount,ro "$DISK"
"$PY" -m modelforge resume "$DISK/run" 2> resumed.err || echo $? > resumed.rc
"$PY" -m modelforge plan hydra.run.dir="$DISK/plans" 2> planned.err || echo $? > planned.rc
"""


def test_a_read_only_disk_is_one_paragraph_for_resume_and_plan(tmp_path):
    done = on_a_small_disk(tmp_path / "disk", "4m", 'bash -e -c "$SCRIPT"', cwd=tmp_path,
                           env={"SCRIPT": READ_ONLY, "WORK": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    resumed, planned = ((tmp_path / f"{name}.err").read_text() for name in ("resumed", "planned"))
    assert (tmp_path / "resumed.rc").read_text().strip() == "2" and "Traceback" not in resumed, resumed
    assert "cannot be written (Read-only file system); it holds a completed run" in " ".join(resumed.split())
    assert (tmp_path / "planned.rc").read_text().strip() == "2" and "Traceback" not in planned, planned
    message = " ".join(planned.split())  # unwrapped: where the lines break depends on the path's length
    assert "hydra.run.dir: cannot write into" in message and "Read-only file system" in message


def test_a_checkpoint_name_that_is_a_folder_is_refused_before_the_lock(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    (tmp_path / "checkpoint.npz").mkdir()
    assert_refused(lambda: claim(RunFolder(tmp_path), resume=True), "checkpoint.npz is a folder, not a checkpoint file")
    assert not (tmp_path / ".lock").exists()


def test_a_malformed_config_yaml_on_resume_is_one_paragraph(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    (folder / "config.yaml").write_text("model: [1, 2\n")
    result = run_module(tmp_path, "resume", "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "config.yaml cannot be read as the run's config" in said(result)
