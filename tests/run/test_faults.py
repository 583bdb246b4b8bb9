"""Faults replayed as users meet them: kill -9, SIGTERM, a second run on the same folder, a re-run with other
overrides, a dead parallel worker, a killed sweep, parallel MLflow on a fresh store, a hostile `_target_`.

Each run is a real `python -m modelforge` process; the resumed runs are compared with uninterrupted ones.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    KILLABLE,
    assert_refused,
    assert_same_result,
    on_a_small_disk,
    rows,
    run_dirs,
    run_module,
    said,
    start,
    wait_for,
)

pytestmark = pytest.mark.slow
# Tests whose kill or signal must land at a moment share one xdist worker, so the other's load cannot move it.
TIMING = pytest.mark.xdist_group("timing")

@pytest.fixture(scope="session")  # not "module": the timing group interleaves modules on its worker
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("full")
    done = run_module(cwd, *KILLABLE, "trainer.epochs=4", "hydra.run.dir=full")
    assert done.returncode == 0, done.stderr
    return cwd / "full"


def kill_and_resume(tmp_path, uninterrupted, when, args=(*KILLABLE, "trainer.epochs=4")):
    proc = start(tmp_path, *args, "hydra.run.dir=run")
    folder = tmp_path / "run"
    when(folder)
    proc.kill()
    proc.wait()
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "running"  # what kill -9 leaves: nobody said anything
    refused = run_module(tmp_path, *args, "hydra.run.dir=run")
    assert_refused(refused, f"python -m modelforge resume {folder}")
    resumed = run_module(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_result(uninterrupted, folder)
    assert not (folder / "checkpoint.npz").exists()  # a finished run keeps model.keras, not its checkpoint
    assert not [p.name for p in folder.iterdir() if ".tmp" in p.name]
    return json.loads((folder / "metrics.json").read_text())


@TIMING
def test_kill_mid_epoch_then_resume_is_bit_identical(tmp_path, uninterrupted):
    def mid_second_epoch(folder):
        wait_for(lambda: rows(folder) >= 1)
        time.sleep(0.3)  # an epoch of 180 batches takes longer than this

    record = kill_and_resume(tmp_path, uninterrupted, mid_second_epoch)
    assert record["resumed"][0]["from"] == "dead"


@TIMING
def test_kill_right_after_an_epoch_then_resume_is_bit_identical(tmp_path, uninterrupted):
    def after_checkpoint(folder):
        wait_for(lambda: (folder / "checkpoint.npz").exists())

    kill_and_resume(tmp_path, uninterrupted, after_checkpoint)


@TIMING
def test_kill_during_the_model_save_then_resume_is_bit_identical(tmp_path):
    # A wide model, so that writing model.keras takes long enough to be caught in the middle.
    args = ["model.units=1024", "trainer.verbose=0", "trainer.epochs=1", "trainer.batch_size=64"]
    full = run_module(tmp_path, *args, "hydra.run.dir=full")
    assert full.returncode == 0, full.stderr
    seen = []

    def saving(folder):
        def temp_model():
            seen.extend(p.name for p in folder.glob(".model.*"))
            return bool(seen)

        wait_for(temp_model, poll=0.0002)

    record = kill_and_resume(tmp_path, tmp_path / "full", saving, args)
    assert record["resumed"][0]["cleaned"] == [seen[0]]  # the half-written model, removed on resume


@TIMING
def test_sigterm_checkpoints_and_exits_143(tmp_path, uninterrupted):
    proc = start(tmp_path, *KILLABLE, "trainer.epochs=4", "hydra.run.dir=run")
    folder = tmp_path / "run"
    wait_for(lambda: rows(folder) >= 2)
    done_when_sent = rows(folder)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    # Stopped in the epoch under way when the signal came (at a batch boundary), not after the run's last one.
    assert 2 <= record["epochs_run"] <= done_when_sent + 1 and (folder / "checkpoint.npz").exists()
    assert "resume" in stderr
    resumed = run_module(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_result(uninterrupted, folder)


@TIMING
def test_a_live_run_holds_its_folder(tmp_path):
    first = start(tmp_path, *KILLABLE, "trainer.epochs=3", "hydra.run.dir=run")
    folder = tmp_path / "run"
    wait_for(lambda: (folder / "metrics.json").exists())
    snapshot = {p.name: p.read_bytes() for p in (folder / ".hydra").iterdir()}
    second = run_module(tmp_path, *KILLABLE, "trainer.epochs=1", "seed=5", "hydra.run.dir=run")
    assert second.returncode == 2
    message = said(second)
    assert "belongs to a live run" in message and f"pid {first.pid}" in message and str(folder) in message
    assert {p.name: p.read_bytes() for p in (folder / ".hydra").iterdir()} == snapshot
    first.wait(timeout=300)
    assert first.returncode == 0
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs_run"] == 3 and record["pid"] == first.pid


def test_a_completed_folder_refuses_a_rerun_with_other_overrides(tmp_path):
    done = run_module(tmp_path, *KILLABLE, "trainer.epochs=1", "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "run"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    again = run_module(tmp_path, *KILLABLE, "trainer.epochs=1", "initializer=lecun_normal", "hydra.run.dir=run")
    assert_refused(again, "already holds a completed run")
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()} == before


@TIMING
def test_sweep_killed_midway_then_resumed(tmp_path):
    args = ["-m", "seed=0,1,2", *KILLABLE, "trainer.epochs=2", "hydra.sweep.dir=sweep"]
    proc = start(tmp_path, *args)
    sweep = tmp_path / "sweep"
    wait_for(lambda: (sweep / "1" / "checkpoint.npz").exists(), timeout=300)  # job 0 done, job 1 under way
    proc.kill()
    proc.wait()
    done = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (sweep / "0").rglob("*") if p.is_file()}
    report = run_module(tmp_path, "report", "sweep")
    assert report.returncode == 0, report.stderr
    assert "| 1 |" in report.stdout and "dead" in report.stdout and "not started" in report.stdout
    resumed = run_module(tmp_path, "resume", "sweep")
    assert resumed.returncode == 0, resumed.stderr
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (sweep / "0").rglob("*") if p.is_file()} == done
    statuses = [json.loads((sweep / str(i) / "metrics.json").read_text())["status"] for i in range(3)]
    assert statuses == ["completed"] * 3
    summary = (sweep / "summary.md").read_text()
    assert "3 runs: 3 completed" in summary


@TIMING
def test_sigterm_stops_a_sweep_with_its_summary(tmp_path):
    proc = start(tmp_path, "-m", "seed=0,1,2", *KILLABLE, "trainer.epochs=3", "hydra.sweep.dir=sweep")
    sweep = tmp_path / "sweep"
    wait_for(lambda: rows(sweep / "0") >= 1, timeout=300)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    summary = (sweep / "summary.md").read_text()
    assert "3 runs: 1 interrupted, 2 not started" in summary


@TIMING
def test_a_dead_parallel_worker_fails_only_its_job(tmp_path):
    proc = start(tmp_path, "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1,2,3", *KILLABLE,
                 "trainer.epochs=3", "hydra.sweep.dir=sweep")
    sweep = tmp_path / "sweep"
    wait_for(lambda: rows(sweep / "0") >= 1, timeout=300)
    pid = json.loads((sweep / "0" / "metrics.json").read_text())["pid"]
    # The worker is a fork of a server that imported TensorFlow once (the driver did not import it).
    server = parent(pid)
    assert server != proc.pid and b"forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()
    assert "libtensorflow_framework" in Path(f"/proc/{server}/maps").read_text()
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=600)
    assert proc.returncode == 1  # the sweep ran to its end and says a job did not complete
    records = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(4)]
    assert records[0]["status"] == "failed" and records[0]["error"] == "worker process died: signal 9 (SIGKILL)"
    assert [r["status"] for r in records[1:]] == ["completed"] * 3
    assert "worker process died: signal 9" in (sweep / "summary.md").read_text()
    resumed = run_module(tmp_path, "resume", "sweep")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "completed"


@TIMING
def test_sigterm_stops_a_parallel_sweep_and_leaves_no_process_behind(tmp_path):
    # Epochs enough that neither job can finish between the wait below and the signal, however loaded the machine.
    proc = start(tmp_path, "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1,2", *KILLABLE,
                 "trainer.epochs=40", "hydra.sweep.dir=sweep")
    sweep = tmp_path / "sweep"
    wait_for(lambda: rows(sweep / "0") >= 1 and rows(sweep / "1") >= 1, timeout=300)
    workers = [json.loads((sweep / str(i) / "metrics.json").read_text())["pid"] for i in (0, 1)]
    server = parent(workers[0])
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    records = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert [r["status"] for r in records] == ["interrupted"] * 2 and all("SIGTERM" in r["error"] for r in records)
    assert "3 runs: 2 interrupted, 1 not started" in (sweep / "summary.md").read_text()
    wait_for(lambda: all(gone(p) for p in (*workers, server)), timeout=30)  # the workers and their fork server


def stat(pid):
    """The fields of /proc/PID/stat after the command name: state, parent pid, ... (empty once it is reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return []


def parent(pid):
    return int(stat(pid)[1])


def gone(pid):
    """Whether process `pid` has ended (a zombie that nobody reaps has ended too)."""
    return stat(pid)[:1] in ([], ["Z"])


def test_mlflow_with_two_workers_on_a_fresh_store_records_every_job(tmp_path):
    result = run_module(tmp_path, "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1,2,3",
                        "logger=mlflow", "model.units=8", "trainer.epochs=1", "trainer.verbose=0")
    assert result.returncode == 0, result.stderr
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["modelforge"])
    assert len(runs) == 5 and set(runs["status"]) == {"FINISHED"}  # the sweep's run and its 4 jobs
    (parent,) = runs[runs["tags.modelforge.sweep"].notna()]["run_id"]
    jobs = runs[runs["tags.mlflow.parentRunId"] == parent]
    assert sorted(jobs["params.seed"]) == ["0", "1", "2", "3"]
    # Each job's run is named by its overrides.
    assert sorted(jobs["tags.mlflow.runName"]) == [
        f"seed={i},logger=mlflow,model.units=8,trainer.epochs=1,trainer.verbose=0" for i in range(4)]
    # Quiet: a fresh store's migrations (Alembic) and MLflow's INFO lines stay off the terminal, in the
    # workers too.
    noise = [line for line in result.stderr.splitlines() if re.search(r"\bINFO\b.*(mlflow|alembic)|alembic\.", line)]
    assert not noise, noise


def test_a_popen_target_runs_nothing(tmp_path):
    marker = tmp_path / "touched"
    spec = ("+model.layers=[{type:dense,units:4,initializer:{_target_:subprocess.Popen,args:[touch,"
            f"'{marker}']}}}}]")
    for command in ("plan", "train"):
        result = run_module(tmp_path, command, spec, "trainer.epochs=1")
        assert_refused(result, "_target_='subprocess.Popen' is refused")
        assert not marker.exists()
    (folder, *_) = run_dirs(tmp_path)
    assert not (folder / "model.keras").exists()


def test_written_files_follow_the_umask(tmp_path):
    result = subprocess.run(["bash", "-c", f"umask 022 && {sys.executable} -m modelforge model.units=4 "
                             "trainer.epochs=1 trainer.verbose=0 hydra.run.dir=run"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes


@TIMING
def test_a_requeued_job_continues_from_its_checkpoint(tmp_path, uninterrupted):
    # What hydra/launcher=slurm does on preemption: SIGTERM, then the same job launched again in the same folder
    # in resume mode (the launcher's `setup` exports MODELFORGE_RESUME=1; submitit's checkpoint hook requeues).
    args = ["-m", "seed=0", *KILLABLE, "trainer.epochs=4", "hydra.sweep.dir=sweep", "hydra.sweep.subdir=job"]
    proc = start(tmp_path, *args)
    job = tmp_path / "sweep" / "job"
    wait_for(lambda: rows(job) >= 2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert json.loads((job / "metrics.json").read_text())["status"] == "interrupted"
    requeued = run_module(tmp_path, *args, timeout=300, env={"MODELFORGE_RESUME": "1"})
    assert requeued.returncode == 0, requeued.stderr
    assert json.loads((job / "metrics.json").read_text())["resumed"][0]["from"] == "interrupted"
    assert_same_result(uninterrupted, job)


@TIMING
def test_kill_then_resume_with_reduce_on_plateau_is_bit_identical(tmp_path):
    # The plateau's counters travel in the checkpoint, and the rate with the optimizer's variables: killed after
    # epoch 2 (the rate already cut once), the resumed run cuts again exactly when the uninterrupted one did.
    args = (*KILLABLE, "trainer.epochs=4", "trainer.reduce_on_plateau.enabled=true",
            "trainer.reduce_on_plateau.patience=1", "trainer.reduce_on_plateau.factor=0.5",
            "trainer.reduce_on_plateau.min_delta=10")
    full = tmp_path / "full"
    full.mkdir()
    done = run_module(full, *args, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    rates = [float(r.split(",")[-1]) for r in (full / "run" / "history.csv").read_text().splitlines()[1:]]
    assert rates == pytest.approx([0.001, 0.0005, 0.00025, 0.000125], rel=1e-6)
    killed = tmp_path / "killed"
    killed.mkdir()
    kill_and_resume(killed, full / "run", lambda folder: wait_for(lambda: rows(folder) >= 2), args=args)


SIGNAL_DURING_SAVE = """
import os, signal, sys
import keras
import modelforge
from modelforge.errors import RunInterrupted

save = keras.Model.save

def save_signalled(self, *args, **kwargs):  # SIGTERM arrives while model.keras is written
    os.kill(os.getpid(), signal.SIGTERM)
    return save(self, *args, **kwargs)

keras.Model.save = save_signalled
cfg = modelforge.compose(["trainer.epochs=1", "model.units=4", "model.depth=1", "trainer.verbose=0"])
try:
    modelforge.train(cfg, run_dir="run")
except RunInterrupted as err:
    print(err, file=sys.stderr)
    sys.exit(err.exit_status)
"""


def test_sigterm_while_the_model_is_saved_is_obeyed_once_the_run_is_whole(tmp_path):
    """The process was killed outright (rc -15) with metrics.json left `running`: now the save and the record
    finish, and the signal is obeyed after them (exit 143, saying so)."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_DURING_SAVE], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 143, result.stderr
    assert "stopped by SIGTERM as the run completed" in " ".join(result.stderr.split())
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and (tmp_path / "run" / "model.keras").is_file()
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# A run on a small disk that another program fills after its second epoch; then the space is freed and the run
# resumed, and its folder copied out of the disk (which only this script's namespace sees).
DISK_FILLS = """
cd "$WORK"
"$PY" -m modelforge "$@" hydra.run.dir="$DISK/run" > stopped.out 2> stopped.err &
until [ -f "$DISK/run/checkpoint.prev.npz" ]; do sleep 0.02; done
dd if=/dev/zero of="$DISK/filler" bs=4k 2> /dev/null || true
wait $! || echo $? > stopped.rc
rm "$DISK/filler"
"$PY" -m modelforge resume "$DISK/run" > resumed.out 2> resumed.err || echo $? > resumed.rc
cp -r "$DISK/run" "$WORK/run"
"""


def test_a_full_disk_while_the_run_writes_stops_cleanly_and_resumes_exactly(tmp_path, uninterrupted):
    done = on_a_small_disk(tmp_path / "disk", "4m", f'bash -e -c "$SCRIPT" script {" ".join(KILLABLE)} '
                           "trainer.epochs=4", cwd=tmp_path, env={"SCRIPT": DISK_FILLS, "WORK": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    stopped = (tmp_path / "stopped.err").read_text()
    assert (tmp_path / "stopped.rc").read_text().strip() == "2", stopped
    message = " ".join(stopped.split())
    assert "the disk filled while the run wrote" in message and "No space left on device" in message
    assert "the previous checkpoint is kept" in message and "Traceback" not in stopped
    assert not (tmp_path / "resumed.rc").exists(), (tmp_path / "resumed.err").read_text()
    folder = tmp_path / "run"
    assert not list(folder.glob(".*.tmp*"))  # the half-written file went with the failed write
    assert json.loads((folder / "metrics.json").read_text())["status"] == "completed"
    assert_same_result(uninterrupted, folder)


@TIMING
def test_kill_then_resume_under_mup_is_bit_identical(tmp_path):
    """A run with per-weight learning rates (parametrization=mup at 4x its base width) killed after epoch 2 resumes
    to the uninterrupted run, bit for bit: the rates come from its config, the optimizer's state from its
    checkpoint."""
    args = ("model.units=256", "trainer.verbose=0", "trainer.batch_size=8", "trainer.epochs=4",
            "parametrization=mup")
    full = tmp_path / "full"
    full.mkdir()
    done = run_module(full, *args, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    killed = tmp_path / "killed"
    killed.mkdir()
    kill_and_resume(killed, full / "run", lambda folder: wait_for(lambda: rows(folder) >= 2), args=args)
