"""Issue 17, end to end: each fault caused in a real `python -m modelforge` process, and what it must leave.

The objective is the saved model's under both launchers; a killed run resumes only with its own config, from
whatever checkpoint generation is whole, to the uninterrupted result; fused sweeps survive a damaged group
checkpoint and a signal while their jobs are written; any folder path and any job name work.
"""

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import KILLABLE, assert_refused, assert_same_result, rows, run_module, said, start, wait_for

pytestmark = pytest.mark.slow
# Tests whose kill or signal must land at a moment share one xdist worker, so the other's load cannot move it.
TIMING = pytest.mark.xdist_group("timing")

ODD = "runs é ✓ 日本 (a)=b [c],d"


def snapshot(folder):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(folder).rglob("*") if p.is_file()}


# Point 1: the objective is the saved model's.
@pytest.mark.parametrize("launcher", ["basic", "fused"])
def test_the_objective_is_what_the_saved_model_scores(tmp_path, launcher):
    import keras

    import modelforge
    from modelforge.data.arrays import load

    es = ["trainer.early_stopping.enabled=true", "trainer.early_stopping.monitor=val_accuracy",
          "trainer.early_stopping.patience=2", "trainer.epochs=12", "trainer.objective=val_loss",
          "optimizer.learning_rate=0.01", "model.units=16", "trainer.verbose=0"]
    extra = ["hydra/launcher=fused"] if launcher == "fused" else []
    result = run_module(tmp_path, "-m", *es, *extra, "seed=0,1", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    restored = 0
    for seed in (0, 1):
        folder = tmp_path / "sweep" / str(seed)
        record = json.loads((folder / "metrics.json").read_text())
        objective, epoch = record["objective"], record["objective"]["epoch"]
        assert epoch == record["best"]["epoch"] and record["best"]["metric"] == "val_accuracy"
        restored += epoch < record["epochs_run"]
        cfg = modelforge.compose([*es, f"seed={seed}"])
        run = modelforge.run_config(cfg)
        data = load(run.data, modelforge.plan(cfg).info, run.seed, run.trainer.batch_size)
        model = keras.models.load_model(folder / "model.keras")
        loss, accuracy = model.evaluate(data.x_val, data.y_val, verbose=0, batch_size=len(data.x_val))
        assert loss == pytest.approx(objective["value"], rel=1e-5)
        history = (folder / "history.csv").read_text().splitlines()
        header, row = history[0].split(","), history[epoch].split(",")
        assert accuracy == pytest.approx(float(row[header.index("val_accuracy")]), abs=1e-6)
        assert record["final"]["val_loss"] == float(history[-1].split(",")[header.index("val_loss")])
    assert restored, "no run restored an earlier epoch: the test would not tell the numbers apart"
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "val_loss (saved model)" in summary and "its epoch" in summary


# Points 3 and 4: resume never mixes, and no fault ends a run for good.
@pytest.fixture(scope="session")  # not "module": the timing group interleaves modules on its worker
def killed(tmp_path_factory):
    """An uninterrupted run, and the same run killed after two epochs (two checkpoint generations on disk)."""
    root = tmp_path_factory.mktemp("killed")
    full = run_module(root, *KILLABLE, "trainer.epochs=4", "hydra.run.dir=full")
    assert full.returncode == 0, full.stderr
    generations = [root / "run" / "checkpoint.npz", root / "run" / "checkpoint.prev.npz"]
    for _ in range(3):  # a kill that lands between the two renames of a rotation leaves one generation: again
        shutil.rmtree(root / "run", ignore_errors=True)
        proc = start(root, *KILLABLE, "trainer.epochs=4", "hydra.run.dir=run")
        wait_for(lambda: all(p.exists() for p in generations) and rows(root / "run") >= 2)
        proc.kill()
        proc.wait()
        if all(p.exists() for p in generations):
            return root
    raise AssertionError("three kills in a row landed inside a checkpoint rotation")


def copy_of(killed, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(killed / "run", target)
    return target


@pytest.mark.parametrize(("key", "old", "new"), [("seed", "0", "5"), ("learning_rate", "0.001", "0.05"),
                                                  ("units", "16", "32")])
@TIMING
def test_resume_refuses_an_edited_config_and_changes_nothing(killed, tmp_path, key, old, new):
    folder = copy_of(killed, tmp_path)
    text = (folder / "config.yaml").read_text()
    assert f"  {key}: {old}\n" in text or f"{key}: {old}\n" in text
    (folder / "config.yaml").write_text(text.replace(f"{key}: {old}\n", f"{key}: {new}\n", 1))
    before = snapshot(folder)
    refused = run_module(tmp_path, "resume", "run")
    assert refused.returncode == 2
    assert f"{key}: {old} -> {new}" in said(refused).replace("'", "") and "start a new run" in said(refused)
    assert snapshot(folder) == before


@TIMING
def test_resume_takes_result_neutral_edits_and_old_folders(killed, tmp_path):
    quieter = copy_of(killed, tmp_path, "quieter")
    text = (quieter / "config.yaml").read_text()
    (quieter / "config.yaml").write_text(text.replace("verbose: 0\n", "verbose: 2\n"))
    legacy = copy_of(killed, tmp_path, "legacy")
    record = json.loads((legacy / "metrics.json").read_text())
    del record["config"], record["temp_token"]
    (legacy / "metrics.json").write_text(json.dumps(record))
    for folder in (quieter, legacy):
        resumed = run_module(tmp_path, "resume", folder.name)
        assert resumed.returncode == 0, resumed.stderr
        assert_same_result(killed / "full", folder)
    assert "carries no config digest" in resumed.stdout


@pytest.mark.parametrize("damage", ["truncated", "empty", "both"])
@TIMING
def test_a_damaged_checkpoint_resumes_to_the_uninterrupted_result(killed, tmp_path, damage):
    folder = copy_of(killed, tmp_path / ODD)  # and from a path Hydra's grammar would choke on, unquoted
    latest = folder / "checkpoint.npz"
    if damage == "truncated":
        latest.write_bytes(latest.read_bytes()[:1000])
    else:
        latest.write_bytes(b"")
    if damage == "both":
        (folder / "checkpoint.prev.npz").write_bytes(b"")
    resumed = run_module(tmp_path, "resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    expected = "starts again from its first epoch" if damage == "both" else "continuing from checkpoint.prev.npz"
    assert expected in " ".join(resumed.stdout.split())
    assert_same_result(killed / "full", folder)
    assert not (folder / "checkpoint.prev.npz").exists()


@TIMING
def test_a_run_marked_failed_with_its_checkpoint_still_resumes(killed, tmp_path):
    folder = copy_of(killed, tmp_path)  # as an older modelforge left a run whose checkpoint it could not read
    record = json.loads((folder / "metrics.json").read_text())
    record.update(status="failed", error="BadZipFile: File is not a zip file")
    (folder / "metrics.json").write_text(json.dumps(record))
    resumed = run_module(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_result(killed / "full", folder)


def test_a_loader_that_exits_leaves_a_failed_run_and_a_nonzero_exit(tmp_path):
    (tmp_path / "quitter.py").write_text("import sys\n\ndef load():\n    sys.exit(0)\n")
    result = run_module(tmp_path, "data=callable", "data._target_=quitter.load", "hydra.run.dir=run")
    assert_refused(result, "raised SystemExit: 0")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "SystemExit" in record["error"]


# Points 4 and 5 under the fused launcher.
FUSED = ["trainer.verbose=0", "model.units=16", "trainer.epochs=4", "hydra/launcher=fused", "seed=0,1,2"]


def jobs_of(sweep):
    return sorted((p for p in Path(sweep).glob("[0-9]*")), key=lambda p: int(p.name))


@TIMING
def test_a_damaged_or_old_group_checkpoint(tmp_path):
    """A fused sweep killed while its group trains, twice: its latest group checkpoint truncated resumes from the
    previous generation to the uninterrupted sweep's numbers; checkpoints of an older format are refused, naming
    the folder, before any job folder is made."""
    whole = run_module(tmp_path, "-m", *FUSED, "hydra.sweep.dir=whole")
    assert whole.returncode == 0, whole.stderr
    for name in ("truncated", "older"):
        proc = start(tmp_path, "-m", *FUSED, f"hydra.sweep.dir={name}")
        wait_for(lambda: list((tmp_path / name / ".fused").glob("*.prev.npz")))  # noqa: B023 (used at once)
        proc.kill()
        proc.wait()
    # The generations (a kill between the rotation and the write leaves the previous one alone; a temporary
    # file's name starts with a dot).
    def generations(name):
        return sorted(p for p in (tmp_path / name / ".fused").glob("*.npz") if not p.name.startswith("."))

    latest = generations("truncated")[0]  # the latest (sorted before its .prev twin)
    latest.write_bytes(latest.read_bytes()[:2000])
    for path in generations("older"):
        with np.load(path) as found:
            arrays = {k: found[k] for k in found.files}
        state = json.loads(arrays["state"].tobytes())
        del state["format"], state["digest"], state["seal"]  # as a checkpoint of the older layout was written
        arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        np.savez(path, **arrays)
    refused = run_module(tmp_path, "resume", "older")
    assert_refused(refused, "written by an older modelforge")
    assert str(tmp_path / "older") in said(refused) and not jobs_of(tmp_path / "older")
    resumed = run_module(tmp_path, "resume", "truncated")
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing from" in resumed.stdout or "starts again" in resumed.stdout
    for a, b in zip(jobs_of(tmp_path / "whole"), jobs_of(tmp_path / "truncated"), strict=True):
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    assert not (tmp_path / "truncated" / ".fused").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@TIMING
def test_a_signal_while_fused_jobs_are_written_stops_after_that_job(tmp_path, signum):
    args = ["trainer.verbose=0", "model.units=8", "trainer.epochs=1", "hydra/launcher=fused",
            "seed=" + ",".join(map(str, range(12))), "hydra.sweep.dir=sweep"]
    proc = start(tmp_path, "-m", *args)
    wait_for(lambda: (tmp_path / "sweep" / "0" / "model.keras").exists(), timeout=300, poll=0.001)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    assert "while its jobs' folders were written" in stderr
    written = [j for j in jobs_of(tmp_path / "sweep") if (j / "model.keras").exists()]
    assert 1 <= len(written) < 12
    statuses = {json.loads((j / "metrics.json").read_text())["status"] for j in jobs_of(tmp_path / "sweep")}
    assert statuses == {"completed"}  # the job being written finished; none was left half written
    assert "not started" in (tmp_path / "sweep" / "summary.md").read_text()
    resumed = run_module(tmp_path, "resume", "sweep")
    assert resumed.returncode == 0, resumed.stderr
    assert len([j for j in jobs_of(tmp_path / "sweep") if (j / "model.keras").exists()]) == 12


# Point 7: any path, any name.
def test_resume_and_report_take_any_folder_path(tmp_path):
    sweep = tmp_path / ODD / "sweep"
    ran = run_module(tmp_path, "-m", "seed=0,1", "model.units=4", "trainer.epochs=1", "trainer.verbose=0",
                     f"hydra.sweep.dir='{sweep}'")
    assert ran.returncode == 0, ran.stderr
    before = snapshot(sweep / "0")
    resumed = run_module(tmp_path, "resume", str(sweep))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("completed before; untouched") == 2 and snapshot(sweep / "0") == before
    report = run_module(tmp_path, "report", str(sweep))
    assert report.returncode == 0 and "2 runs: 2 completed" in report.stdout
    alone = run_module(tmp_path, "report", str(sweep / "0"))  # a run folder: never written into
    assert alone.returncode == 0 and snapshot(sweep / "0") == before
    assert list((tmp_path / "outputs" / "report").rglob("summary.md"))


LAUNCHERS = {"basic": [], "parallel": ["hydra/launcher=parallel"], "fused": ["hydra/launcher=fused"],
             "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
             "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_job_folder_names_past_the_filesystems_limit_are_shortened(tmp_path, launcher):
    layers = "[" + ",".join(["{type:dense,units:4}"] * 12) + "]"
    extra = LAUNCHERS[launcher]
    result = run_module(tmp_path, "-m", f"model.layers={layers}", "seed=0,1", "trainer.epochs=1", "trainer.verbose=0",
                        "hydra.sweep.dir=sweep", "hydra.sweep.subdir=${hydra.job.override_dirname}", *extra)
    assert result.returncode == 0, result.stderr
    shortened = json.loads((tmp_path / "sweep" / "jobs.json").read_text())["shortened_folders"]
    assert len(shortened) == 2 and all(len(k.encode()) > 255 for k in shortened)
    for short in shortened.values():
        assert len(short.encode()) <= 255
        assert json.loads((tmp_path / "sweep" / short / "metrics.json").read_text())["status"] == "completed"


def test_an_unwritable_output_folder_exits_2_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    for args in (["hydra.run.dir=a_file/run"], ["-m", "seed=0,1", "hydra.sweep.dir=a_file/sweep"]):
        result = run_module(tmp_path, *args, "trainer.epochs=1")
        assert result.returncode == 2, result.stderr
        assert f"cannot write into {tmp_path / 'a_file'}" in said(result) and "Traceback" not in result.stderr


def test_an_unknown_status_exits_2_and_a_symlinked_lock_is_not_followed(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"status": "finished"}))
    result = run_module(tmp_path, "trainer.epochs=1", "hydra.run.dir=run")
    assert_refused(result, "says status 'finished'")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".lock").symlink_to(tmp_path / "elsewhere")
    result = run_module(tmp_path, "trainer.epochs=1", "hydra.run.dir=linked")
    assert_refused(result, "is a symbolic link")
    assert not (tmp_path / "elsewhere").exists()


@TIMING
def test_resume_of_a_sweep_refuses_a_job_whose_config_changed(tmp_path):
    proc = start(tmp_path, "-m", "seed=0,1", *KILLABLE, "trainer.epochs=3", "hydra.sweep.dir=sweep")
    wait_for(lambda: rows(tmp_path / "sweep" / "0") >= 1, timeout=300)
    proc.kill()
    proc.wait()
    plan = json.loads((tmp_path / "sweep" / "jobs.json").read_text())
    plan["task_overrides"] = [o.replace("model.units=16", "model.units=12") for o in plan["task_overrides"]]
    (tmp_path / "sweep" / "jobs.json").write_text(json.dumps(plan))  # as a re-launch with other overrides sees it
    before = snapshot(tmp_path / "sweep" / "0")
    resumed = run_module(tmp_path, "resume", "sweep")
    assert resumed.returncode != 0
    assert "model.units: 16 -> 12" in said(resumed)
    assert snapshot(tmp_path / "sweep" / "0") == before


# Trust comes from the process: a config can neither set it nor load code through the environment.
EVIL_PACK = """# @package _global_
hydra:
  job:
    env_set:
      {variable}: {value}
data:
  _target_: os.system
  kwargs:
    command: touch pwned
"""


@pytest.mark.parametrize(("variable", "value"), [("MODELFORGE_TRUSTED_MODULES", "os,posix"),
                                                 ("PYTHONPATH", "."), ("LD_PRELOAD", "/tmp/x.so")])
@pytest.mark.parametrize("command", ["plan", "train"])
def test_a_config_cannot_set_trust_or_what_loads_code(tmp_path, command, variable, value):
    """From the command line and from a YAML-only config pack: refused with exit 2, the command never run."""
    run = [command, "data=callable", "data._target_=os.system", "data.kwargs.command='touch pwned'"]
    cli = run_module(tmp_path, *run, f"+hydra.job.env_set.{variable}='{value}'", "hydra.run.dir=cli")
    assert cli.returncode == 2 and f"sets {variable}, which widens what code runs" in said(cli), cli.stderr
    copied = run_module(tmp_path, *run, f"hydra.job.env_copy=[{variable}]", "hydra.run.dir=copy")
    assert_refused(copied, f"sets {variable}")
    pack = tmp_path / "pack" / "experiment"
    pack.mkdir(parents=True)
    (pack / "evil.yaml").write_text(EVIL_PACK.format(variable=variable, value=value))
    packed = run_module(tmp_path, command, "data=callable", "experiment=evil", "hydra.run.dir=pack_run",
                        env={"MODELFORGE_CONFIG_PATH": str(tmp_path / "pack")})
    assert packed.returncode == 2 and f"hydra.job.env_set sets {variable}" in said(packed), packed.stderr
    assert not (tmp_path / "pwned").exists() and not list(tmp_path.rglob("pwned"))


HYDRA_RUNS = {
    "callback": ["+hydra.callbacks.x._target_=builtins.open", "+hydra.callbacks.x.file={victim}",
                 "+hydra.callbacks.x.mode=w"],
    "nested": ["+hydra.callbacks.x._target_=modelforge.sweep.callback.SweepSummary",
               "+hydra.callbacks.x.inner._target_=shutil.copyfile", "+hydra.callbacks.x.inner.src={victim}",
               "+hydra.callbacks.x.inner.dst={victim}.copy"],
    "log file": ["hydra.job_logging.handlers.file.filename={victim}"],
    "log class": ["hydra.job_logging.handlers.file.class=shutil.copyfile"],
    "hydra's log file": ["+hydra.hydra_logging.handlers.f.class=logging.FileHandler",
                         "+hydra.hydra_logging.handlers.f.filename={victim}", "+hydra.hydra_logging.handlers.f.mode=w",
                         "hydra.hydra_logging.root.handlers=[f]"],
    "storage": ["hparams_search=optuna", "hydra.sweeper.storage=sqlite:///{victim}"],
}


@pytest.mark.parametrize("case", sorted(HYDRA_RUNS))
def test_what_hydra_runs_from_a_config_is_held_to_the_allowlist(tmp_path, case):
    """Hydra's callbacks, its logging's factories, classes and files, and the sweeper's storage: refused with
    exit 2 before Hydra instantiates or opens any of them, on a run, a plan and a sweep; the file is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    overrides = [o.format(victim=victim) for o in HYDRA_RUNS[case]]
    for command in (["plan"], [], ["-m", "seed=0,1"]):
        result = run_module(tmp_path, *command, *overrides, "trainer.epochs=1", "model.units=4",
                            "hydra.run.dir=run", "hydra.sweep.dir=sweep")
        assert result.returncode == 2 and "is refused" in said(result), (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert victim.read_text() == "the user's own file\n" and not Path(f"{victim}.copy").exists()
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "sweep" / "0").exists()


def test_what_hydra_runs_from_a_config_pack_is_held_to_the_allowlist(tmp_path):
    """The same from a YAML-only pack's experiment, and from a finished sweep's jobs.json on resume."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    pack = tmp_path / "pack" / "experiment"
    pack.mkdir(parents=True)
    (pack / "evil.yaml").write_text("# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.open\n"
                                    f"      file: {victim}\n      mode: w\n")
    (pack / "factory.yaml").write_text("# @package _global_\nhydra:\n  job_logging:\n    formatters:\n      evil:\n"
                                       "        (): os.system\n        command: touch pwned\n")
    for name, words in (("evil", "hydra.callbacks.x._target_='builtins.open' is refused"),
                        ("factory", "hydra.job_logging.formatters.evil.()='os.system' is refused")):
        packed = run_module(tmp_path, "plan", f"experiment={name}", "hydra.run.dir=run",
                            env={"MODELFORGE_CONFIG_PATH": str(tmp_path / "pack")})
        assert packed.returncode == 2 and words in said(packed), packed.stderr
    assert not list(tmp_path.rglob("pwned"))
    done = run_module(tmp_path, "-m", "seed=0", "trainer.epochs=1", "model.units=4", "trainer.verbose=0",
                      "hydra.sweep.dir=sweep")
    assert done.returncode == 0, done.stderr
    planned = json.loads((tmp_path / "sweep" / "jobs.json").read_text())
    planned["hydra_overrides"] += ["+hydra.callbacks.x._target_=builtins.open", f"+hydra.callbacks.x.file={victim}",
                                   "+hydra.callbacks.x.mode=w"]
    (tmp_path / "sweep" / "jobs.json").write_text(json.dumps(planned))
    resumed = run_module(tmp_path, "resume", "sweep")
    assert resumed.returncode == 2 and "is refused" in said(resumed), resumed.stderr
    assert victim.read_text() == "the user's own file\n"


@TIMING
def test_a_checkpoint_from_another_run_or_edited_is_not_taken(killed, tmp_path):
    """Seed 0's checkpoint in seed 1's folder, or a state edited to say 99 epochs done: that generation is refused
    in one line and the run's own previous one used; with no generation of its own the resume exits 2, changing
    nothing. (Folders and checkpoints written before checkpoints named their run: the legacy resume test.)"""
    other = run_module(tmp_path, *KILLABLE, "trainer.epochs=4", "seed=1", "hydra.run.dir=other")
    assert other.returncode == 0, other.stderr
    seed1 = tmp_path / "seed1"
    proc = start(tmp_path, *KILLABLE, "trainer.epochs=4", "seed=1", "hydra.run.dir=seed1")
    wait_for(lambda: all((seed1 / n).exists() for n in ("checkpoint.npz", "checkpoint.prev.npz"))
             and rows(seed1) >= 2)
    proc.kill()
    proc.wait()
    shutil.copy(killed / "run" / "checkpoint.npz", seed1 / "checkpoint.npz")
    resumed = run_module(tmp_path, "resume", "seed1")
    assert resumed.returncode == 0, resumed.stderr
    told = " ".join(resumed.stdout.split())
    assert "belongs to another run" in told and "continuing from checkpoint.prev.npz" in told
    assert_same_result(tmp_path / "other", seed1)
    # A folder whose record is seed 1's and whose every generation is seed 0's: refused, nothing changed.
    both = copy_of(killed, tmp_path, "both")
    record = json.loads((both / "metrics.json").read_text())
    record["config"] = json.loads((tmp_path / "other" / "metrics.json").read_text())["config"]
    (both / "metrics.json").write_text(json.dumps(record))
    (both / "config.yaml").write_text((tmp_path / "other" / "config.yaml").read_text())
    # What a kill during a write leaves (the killed run above may or may not have left one, as the kill lands):
    # the dead run's own half-written file, which a resume clears before anything else, refused or not.
    leftover = f".metrics.{record['temp_token']}-abcd1234.tmp.json"
    (both / leftover).write_text("half")
    before = snapshot(both)
    refused = run_module(tmp_path, "resume", "both")
    assert refused.returncode == 2 and "no checkpoint there is this run's" in said(refused), refused.stderr
    kept = {"metrics.json", "modelforge.log"}  # the refusal is recorded there, as any resume that cannot start

    def own_temporary(path):
        return f".{record['temp_token']}-" in path.name and ".tmp." in path.name

    assert not (both / leftover).exists()
    assert {p: v for p, v in snapshot(both).items() if p.name not in kept} == \
        {p: v for p, v in before.items() if p.name not in kept and not own_temporary(p)}
    assert "no checkpoint there is this run's" in json.loads((both / "metrics.json").read_text())["error"]
    # An edited state: the seal finds it out.
    edited = copy_of(killed, tmp_path, "edited")
    latest = edited / "checkpoint.npz"
    with np.load(latest) as found:
        arrays = {k: found[k] for k in found.files}
    state = json.loads(arrays["state"].tobytes().decode())
    arrays["state"] = np.frombuffer(json.dumps({**state, "epochs_done": 99}).encode(), dtype=np.uint8)
    with open(latest, "wb") as f:
        np.savez(f, **arrays)
    resumed = run_module(tmp_path, "resume", "edited")
    assert resumed.returncode == 0 and "does not match the seal" in " ".join(resumed.stdout.split()), resumed.stderr
    assert_same_result(killed / "full", edited)


@pytest.mark.parametrize("main", ["main_cb01599", "main_441ead9", "main_685d5bf"])
@TIMING
def test_a_run_killed_under_the_previous_main_resumes_bit_identically(killed, tmp_path, main):
    """A folder that an earlier main wrote resumes: cb01599's checkpoints name no run and carry no seal; 441ead9's
    config record counts keys as result-affecting that the key table no longer does (`trainer.diagnose`). Its
    two epochs are kept as they were, and where this machine's kernels give the same first two epochs as the CPU
    that wrote it (oneDNN on, AVX-512), the result is the uninterrupted run's, bit for bit. Elsewhere the epochs
    it continues from were computed with other kernels, so only what it keeps is checked."""
    folder = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / main / "killed_run", folder)
    written = (folder / "history.csv").read_text().splitlines()
    resumed = run_module(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    rows = (folder / "history.csv").read_text().splitlines()
    assert len(written) == 3 and rows[:3] == written and len(rows) == 5  # header, 2 kept, 2 trained now
    assert json.loads((folder / "metrics.json").read_text())["status"] == "completed"
    if (killed / "full" / "history.csv").read_text().splitlines()[:3] == written:
        assert_same_result(killed / "full", folder)
