"""hydra/launcher=fused: K arms trained as one model, each job's folder as from its own run, its
numbers those of the basic launcher's separate run."""

import contextlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from modelforge.fused.groups import group_key
from tests.helpers import REPO, RUN_FILES, baseline, history, run_dirs, run_module, start, wait_for

SWEEP = ["trainer.epochs=3", "trainer.verbose=0", "model.units=16"]


def sweep(tmp_path, name, *args):
    result = run_module(tmp_path, "-m", *SWEEP, *args, f"hydra.sweep.dir={name}")
    assert result.returncode == 0, result.stderr
    return result, sorted((tmp_path / name).glob("[0-9]*"), key=lambda p: int(p.name))


def assert_same_numbers(basic, fused):
    """The issue's bar: every epoch-1 metric within 1e-4 relative, the final validation metrics within 0.01."""
    for b, f in zip(basic, fused, strict=True):
        hb, hf = history(b), history(f)
        assert hb[0].keys() == hf[0].keys()
        for key in hb[0]:
            assert hf[0][key] == pytest.approx(hb[0][key], rel=1e-4), (f, key)
        for key in (k for k in hb[-1] if k.startswith("val_")):
            assert abs(hf[-1][key] - hb[-1][key]) < 0.01, (f, key)


def basic_sweep(tmp_path, name, *args):
    """The basic launcher's jobs of the sweep, trained in this process (tests.helpers.baseline)."""
    return baseline(tmp_path / name, *SWEEP, *args)


def matched_sweeps(tmp_path, arms, *args, groups=1):
    """The sweep under both launchers: the fused one trains `groups` groups of `arms` arms each, and every job's
    numbers are its basic twin's (`assert_same_numbers`). Returns the fused sweep's output and both sweeps' jobs."""
    basic = basic_sweep(tmp_path, "basic", *args)
    said, fused = sweep(tmp_path, "fused", "hydra/launcher=fused", *args)
    for group in range(1, groups + 1):
        assert f"fused group {group}: {arms} arms as one model" in said.stdout
    assert_same_numbers(basic, fused)
    return said, basic, fused


def test_group_key_ignores_what_fuses_and_nothing_else():
    base = {"seed": 0, "initializer": {"name": "auto"}, "optimizer": {"name": "adam", "learning_rate": 0.1},
            "trainer": {"epochs": 3, "verbose": 0}, "model": {"units": 8}}
    other = json.loads(json.dumps(base))
    other.update(seed=3, initializer={"name": "he_normal"})
    other["optimizer"]["learning_rate"] = 0.5
    other["trainer"]["verbose"] = 2
    assert group_key(base) == group_key(other)
    for key, value in (("model", {"units": 9}), ("trainer", {"epochs": 4, "verbose": 0})):
        assert group_key({**base, key: value}) != group_key(base)


def test_the_launcher_takes_the_configs_the_sweeper_composed_once_each():
    from hydra_plugins.modelforge_launcher.fused_launcher import RememberingLoader

    class Loader:
        calls = 0

        def load_sweep_config(self, master_config, sweep_overrides):
            Loader.calls += 1
            return {"overrides": list(sweep_overrides), "n": Loader.calls}

    loader, master = RememberingLoader(Loader()), object()
    batch = [["seed=1"], ["seed=2"], ["seed=1"]]  # a repeated job gets a config of its own
    checked = [loader.load_sweep_config(master, overrides) for overrides in batch]  # the sweeper's check
    taken = [loader.take(master, overrides) for overrides in batch]  # the launcher's jobs
    assert Loader.calls == 3 and [id(c) for c in taken] == [id(c) for c in checked]
    assert loader.take(master, ["seed=1"])["n"] == 4  # nothing kept: composed anew
    loader.load_sweep_config(master, ["seed=3"])
    loader.forget()
    assert loader.take(master, ["seed=3"])["n"] == 6


@pytest.mark.numeric
@pytest.mark.slow
def test_an_initializer_and_seed_sweep_matches_the_basic_launcher(tmp_path):
    args = ["initializer=he_normal,glorot_uniform,lecun_normal", "seed=0,1"]
    said, basic, fused = matched_sweeps(tmp_path, 6, *args)
    # The terminal: the group's lines, then one result line per job (its plan and epochs go to its log).
    for job in range(6):
        (line,) = [x for x in said.stdout.splitlines() if x.startswith(f"[{job + 1}/6]")]
        assert "initializer=" in line and "val_accuracy=" in line and line.endswith(f"{job + 1} of 6 jobs done")
    assert "epoch 1/3" not in said.stdout and "memory:" not in said.stdout
    for job, folder in enumerate(fused):
        assert RUN_FILES | {".hydra"} <= {p.name for p in folder.iterdir()}
        record = json.loads((folder / "metrics.json").read_text())
        assert record["status"] == "completed" and record["fused"]["size"] == 6 and record["fused"]["arm"] == job
        # Honest timings: the job's fit is its share of the group's; the group's fit is under `fused`.
        assert record["timings"]["fit_s"] == pytest.approx(record["fused"]["fit_s"] / 6, abs=1e-4)  # both rounded
        assert record["timings"]["replay_s"] < record["fused"]["fit_s"]
        # The same initial weights as the separate run: the plans are identical, seeds included.
        assert (folder / "init_plan.json").read_text() == (basic[job] / "init_plan.json").read_text()
    summary = (tmp_path / "fused" / "summary.csv").read_text()
    assert summary.count("completed") == 6
    assert "its share of its group's fit" in (tmp_path / "fused" / "summary.md").read_text()
    # The saved models: the same weights and the same optimizer state (step count, Adam's slots) as the runs'.
    import keras

    for b, f in zip(basic, fused, strict=True):
        mb, mf = (keras.models.load_model(p / "model.keras") for p in (b, f))
        for x, y in zip(mb.get_weights(), mf.get_weights(), strict=True):
            np.testing.assert_allclose(y, x, atol=2e-4)
        assert len(mb.optimizer.variables) == len(mf.optimizer.variables)
        for x, y in zip(mb.optimizer.variables, mf.optimizer.variables, strict=True):
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-2, atol=1e-5, err_msg=x.path)


@pytest.mark.numeric
@pytest.mark.slow
def test_conv_and_recurrent_sweeps_match_the_basic_launcher(tmp_path):
    # One sweep, four groups (a layer type each) of two arms.
    args = ["layer=conv,conv1d,lstm,gru", "initializer=he_normal,glorot_uniform", "trainer.epochs=2"]
    matched_sweeps(tmp_path, 2, *args, groups=4)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["warmup_cosine", "step"])
def test_learning_rate_schedules_are_each_arms_own(tmp_path, schedule):
    args = [f"optimizer.schedule={schedule}", "optimizer.learning_rate=0.01,0.003", "seed=0,1"]
    if schedule == "step":
        args.append("optimizer.decay_epochs=1")
    _, basic, fused = matched_sweeps(tmp_path, 4, *args)
    for b, f in zip(basic, fused, strict=True):  # every epoch's rate, as the run's own optimizer gave it
        rates = [row["learning_rate"] for row in history(f)]
        assert rates == pytest.approx([row["learning_rate"] for row in history(b)], rel=1e-6)
        assert len(set(rates)) == 3  # it moved every epoch


@pytest.mark.slow
def test_each_arm_reduces_its_rate_on_its_own_plateau(tmp_path):
    # patience 1 on training accuracy with min_delta 0.05: arms reach the plateau at their own epochs.
    args = ["trainer.epochs=6", "trainer.reduce_on_plateau.enabled=true", "trainer.reduce_on_plateau.patience=1",
            "trainer.reduce_on_plateau.monitor=accuracy", "trainer.reduce_on_plateau.min_delta=0.05",
            "trainer.reduce_on_plateau.factor=0.5", "optimizer.learning_rate=0.01,0.002", "seed=0,1"]
    _, basic, fused = matched_sweeps(tmp_path, 4, *args)
    schedules = set()
    for b, f in zip(basic, fused, strict=True):
        rates = [row["learning_rate"] for row in history(f)]
        assert rates == pytest.approx([row["learning_rate"] for row in history(b)], rel=1e-6)
        assert [row["val_loss"] for row in history(f)] == pytest.approx([row["val_loss"] for row in history(b)],
                                                                          rel=1e-3)
        schedules.add(tuple(r / rates[0] for r in rates))
    assert len(schedules) > 1 and any(len(set(s)) > 1 for s in schedules)  # each arm its own reductions


@pytest.mark.slow
@pytest.mark.parametrize("terms", [
    ["trainer.loss=label_smoothing", "trainer.metrics=[accuracy,top_k_accuracy,auc,precision,recall]"],
    ["trainer.loss=focal", "trainer.class_weight=balanced"],
    ["data=synthetic", "data.task=regression", "trainer.loss=huber", "trainer.metrics=[mae,mse,rmse]"],
], ids=["metrics", "focal", "regression"])
def test_losses_and_metrics_by_name_are_keras_own_per_arm(tmp_path, terms):
    args = [*terms, "seed=0,1", "initializer=he_normal,glorot_uniform"]
    matched_sweeps(tmp_path, 4, *args)


# The plain fused sweep of seeds 0 and 1, which two tests read (and neither changes): made once, on one worker.
SEEDS = pytest.mark.xdist_group("fused_seeds")


@pytest.fixture(scope="module")
def seeds_sweep(tmp_path_factory):
    return sweep(tmp_path_factory.mktemp("seeds"), "fused", "hydra/launcher=fused", "seed=0,1")[1]


@pytest.mark.slow
@SEEDS
def test_balanced_class_weights_are_each_arms_own(tmp_path, seeds_sweep):
    args = ["trainer.class_weight=balanced", "seed=0,1"]
    _, _, fused = matched_sweeps(tmp_path, 2, *args)
    for f, p in zip(fused, seeds_sweep, strict=True):  # the weights did weigh: the training loss moved
        assert abs(history(f)[0]["loss"] - history(p)[0]["loss"]) > 1e-4


@pytest.mark.slow
def test_batch_norm_and_pooling_keep_each_arms_statistics(tmp_path):
    layers = ("+model.layers=[{type:conv2d,filters:8,kernel_size:3,padding:same,dilation_rate:2},"
              "{type:batch_normalization},"
              "{type:average_pooling2d,pool_size:2},{type:global_average_pooling2d},{type:dense,units:16}]")
    # A dilated convolution fuses too; validation runs on the moving statistics, each arm's own.
    matched_sweeps(tmp_path, 2, layers, "seed=0,1", "trainer.epochs=2")


@pytest.mark.slow
def test_each_arm_stops_early_on_its_own(tmp_path):
    args = ["optimizer.learning_rate=0.001,0.03", "trainer.early_stopping.enabled=true",
            "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=0.02", "trainer.epochs=10"]
    basic = basic_sweep(tmp_path, "basic", *args)
    _, fused = sweep(tmp_path, "fused", "hydra/launcher=fused", *args)
    records = [[json.loads((f / "metrics.json").read_text()) for f in run] for run in (basic, fused)]
    assert [r["epochs_run"] for r in records[1]] == [r["epochs_run"] for r in records[0]]
    assert len({r["epochs_run"] for r in records[1]}) == 2  # one arm stopped, the other went on
    assert [r.get("stopped_early") for r in records[1]] == [r.get("stopped_early") for r in records[0]]
    assert_same_numbers(basic, fused)


@pytest.mark.slow
@SEEDS
def test_standalone_models_predict_what_their_arm_did(seeds_sweep):
    import keras

    import modelforge
    from modelforge.data.arrays import load

    for folder in seeds_sweep:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer": it must be whole
            model = keras.models.load_model(folder / "model.keras")  # plain Keras
        assert int(model.optimizer.iterations) == 3 * 45  # 3 epochs of 45 batches, as the separate run took
        cfg = modelforge.compose([*SWEEP, f"seed={folder.name}"])  # job n is seed=n
        run = modelforge.run_config(cfg)
        data = load(run.data, modelforge.plan(cfg).info, run.seed, run.trainer.batch_size)
        loss, accuracy = model.evaluate(data.x_val, data.y_val, verbose=0, batch_size=len(data.x_val))
        final = history(folder)[-1]
        assert loss == pytest.approx(final["val_loss"], abs=1e-5)
        assert accuracy == pytest.approx(final["val_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_per_arm_learning_rates_and_momentum_are_each_arms_own(tmp_path):
    args = ["optimizer=sgd", "optimizer.learning_rate=0.01,0.1", "optimizer.momentum=0.0,0.9"]
    basic = basic_sweep(tmp_path, "basic", *args)
    _, fused = sweep(tmp_path, "fused", "hydra/launcher=fused", *args)
    assert_same_numbers(basic, fused)
    finals = {history(f)[-1]["val_loss"] for f in fused}
    assert len(finals) == 4  # four different runs, not one run four times


@pytest.mark.slow
def test_a_diverging_arm_fails_alone_and_the_others_finish(tmp_path):
    result = run_module(tmp_path, "-m", *SWEEP, "hydra/launcher=fused", "optimizer=sgd",
                        "optimizer.learning_rate=0.01,1e6", "hydra.sweep.dir=s")
    assert result.returncode != 0  # a failed job makes the sweep say so
    records = {json.loads((d / "metrics.json").read_text())["status"]: d for d in run_dirs(tmp_path / "s")}
    assert set(records) == {"completed", "failed"}
    failed = json.loads((records["failed"] / "metrics.json").read_text())
    assert "NaN" in failed["error"] and failed["fused"]["size"] == 2


@pytest.mark.slow
def test_jobs_that_cannot_fuse_run_one_by_one_saying_why(tmp_path):
    result, folders = sweep(tmp_path, "s", "hydra/launcher=fused", "optimizer=sgd", "optimizer.nesterov=true",
                            "seed=0,1", "trainer.epochs=1")
    # One line for the group, naming its jobs, not one per job.
    assert result.stdout.count("jobs 1, 2: trained on their own, as optimizer.nesterov=True is not fused") == 1
    assert [json.loads((f / "metrics.json").read_text())["status"] for f in folders] == ["completed"] * 2
    assert all("fused" not in json.loads((f / "metrics.json").read_text()) for f in folders)


@pytest.fixture
def hydra_as_fresh():
    """Hydra's suites expect a process where no app chose a version_base yet (their apps change directory);
    earlier tests in this process composed modelforge's config with version_base 1.3."""
    from hydra import version

    instance = version.VersionBase.instance()
    saved = instance.version_base
    instance.version_base = version._UNSPECIFIED_
    yield
    instance.version_base = saved


# Hydra's own launcher test suites, as Hydra's launcher plugins run them (for jobs that are not modelforge's,
# the fused launcher runs each one by one, as the basic launcher does).
@pytest.mark.usefixtures("hydra_as_fresh")
@pytest.mark.slow
@pytest.mark.parametrize("launcher_name, overrides", [("fused", [])])
class TestFusedLauncher(LauncherTestSuite):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [({}, ["-m", "hydra/launcher=fused"])])
class TestFusedLauncherIntegration(IntegrationTestSuite):
    pass


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_fused_group_killed_mid_training_resumes_from_its_checkpoint(tmp_path):
    import subprocess

    # With per-arm plateaus, whose counters and rates the checkpoint must carry for the same reductions.
    plateau = ["trainer.reduce_on_plateau.enabled=true", "trainer.reduce_on_plateau.patience=1",
               "trainer.reduce_on_plateau.monitor=accuracy", "trainer.reduce_on_plateau.min_delta=0.05",
               "optimizer.learning_rate=0.01"]
    args = [*SWEEP, "trainer.epochs=6", "hydra/launcher=fused", "seed=0,1,2", *plateau]
    _, whole = sweep(tmp_path, "whole", *args[len(SWEEP):])
    assert len({row["learning_rate"] for row in history(whole[0])}) > 1  # a rate was lowered
    proc = start(tmp_path, "-m", *args, "hydra.sweep.dir=killed", output=subprocess.DEVNULL)
    wait_for(lambda: list((tmp_path / "killed" / ".fused").glob("*.npz")), poll=0.01)
    proc.kill()
    proc.wait()
    assert list((tmp_path / "killed" / ".fused").glob("*.npz")), "the group's checkpoint was never written"
    assert not list((tmp_path / "killed").glob("[0-9]*/history.csv"))  # killed while the group trained
    resumed = run_module(tmp_path, "resume", "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "fused group 1: continues from its checkpoint after" in resumed.stdout
    killed = sorted((tmp_path / "killed").glob("[0-9]*"), key=lambda p: int(p.name))
    for a, b in zip(whole, killed, strict=True):
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()  # as if never killed
    assert not (tmp_path / "killed" / ".fused").exists()  # its work is done


@pytest.mark.slow
def test_a_graph_models_sweep_fuses_and_equals_the_basic_launcher(tmp_path):
    """Two branches added and a skip concatenated (`model.layers` with `inputs`): the merges are fused ops."""
    graph = ("+model.layers=[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[inputs]},"
             "{type:add,name:sum,inputs:[a,b]},{type:concatenate,name:both,inputs:[sum,a]}]")
    matched_sweeps(tmp_path, 4, graph, "seed=0,1", "initializer=he_normal,glorot_uniform")


@pytest.mark.slow
def test_a_sweep_over_residual_rules_fuses_in_one_group_and_equals_the_basic_launcher(tmp_path):
    """The rules rescale weights and change no structure: each arm's model draws its own, and they fuse."""
    graph = ("+model.layers=[{type:dense,name:s,units:16},{type:dense,name:p0,units:16},"
             "{type:dense,name:q0,units:16,activation:linear},{type:add,name:r0,inputs:[s,q0]},"
             "{type:dense,name:p1,units:16},{type:dense,name:q1,units:16,activation:linear},"
             "{type:add,name:r1,inputs:[r0,q1]}]")
    matched_sweeps(tmp_path, 4, graph, "residual=none,zero_last,fixup,scaled")


@pytest.mark.slow
def test_a_resmlp_sweep_over_rules_and_seeds_equals_the_basic_launcher(tmp_path):
    """model=resmlp at 10 branches: the rules that rescale fuse as one group, rezero's gates as another; every
    job's epoch-1 loss and val_loss are its basic twin's to 1e-4 relative."""
    args = ["model=resmlp", "residual=none,zero_last,fixup,scaled,rezero", "seed=0,1", "trainer.epochs=1"]
    basic = basic_sweep(tmp_path, "basic", *args)
    said, fused = sweep(tmp_path, "fused", "hydra/launcher=fused", *args)
    assert "fused group 1: 8 arms as one model" in said.stdout and "fused group 2: 2 arms as one model" in said.stdout
    assert len(basic) == len(fused) == 10
    assert_same_numbers(basic, fused)


@pytest.mark.slow
def test_a_two_block_transformer_sweep_equals_the_basic_launcher(tmp_path):
    """model=transformer (2 blocks: attention, position embedding, layer norms) over residual rules of one structure
    and seeds (initializers too in the first-step test below): one group, every job's epoch-1 loss and val_loss its
    basic twin's to 1e-4 relative."""
    args = ["model=transformer", "initializer=glorot_normal", "residual=none,scaled", "seed=0,1", "trainer.epochs=1"]
    basic = basic_sweep(tmp_path, "basic", *args)
    said, fused = sweep(tmp_path, "fused", "hydra/launcher=fused", *args)
    assert "fused group 1: 4 arms as one model" in said.stdout
    assert_same_numbers(basic, fused)


def assert_first_step_is_each_arms_keras_step(arms, sessions):
    """`arms` (override lists, with their prepared `sessions`) trained as one group for one step: each arm's weights
    and batch loss are Keras' own train step's on its run to 1e-6 relative."""
    import numpy as np
    import tensorflow as tf

    from benchmarks.fused_steps import _batches, basic_steps, parted
    from modelforge.fused.trainer import GroupTrainer

    group = GroupTrainer(sessions)
    first = np.stack([_batches(session, 1)[0] for session in sessions])
    losses, _ = tf.function(group.step, autograph=False)(tf.constant(first))
    for a, arm in enumerate(arms):
        weights, loss = parted((group.model.arm_weights(a), float(losses.numpy()[a]) / first.shape[1]),
                               basic_steps(arm, steps=1)[1])
        assert weights < 1e-6 and loss < 1e-6, (arm, weights, loss)


@pytest.mark.numeric
def test_a_transformer_groups_first_step_is_each_arms_keras_step():
    """Arms of model=transformer with other initializers, rules of one structure (none, scaled, zero_last) and
    seeds, trained as one group: after the first step each arm's weights and batch loss are Keras' own train
    step's on its run to 1e-6 relative."""
    from benchmarks.fused_steps import _session

    chosen = (("auto", "none", 0), ("glorot_normal", "scaled", 1), ("he_normal", "zero_last", 0))
    arms = [["model=transformer", "model.units=16", f"initializer={init}", f"residual={rule}", f"seed={seed}"]
            for init, rule, seed in chosen]
    sessions = [_session(arm) for arm in arms]
    assert_first_step_is_each_arms_keras_step(arms, sessions)


@pytest.mark.numeric
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_mup_learning_rate_arms_first_step_is_each_arms_keras_step(optimizer):
    """parametrization=mup at width 512, arms of other learning rates and seeds as one group: each arm's per-weight
    rates (hidden and readout / m) are its own run's, weights and loss after the first step to 1e-6 relative."""
    from benchmarks.fused_steps import _session

    decay = ["optimizer.weight_decay=0.1"] if optimizer == "adamw" else []
    arms = [["parametrization=mup", "model.units=512", f"optimizer={optimizer}", *decay,
             f"optimizer.learning_rate={rate}", f"seed={seed}"] for rate, seed in ((1e-3, 0), (1e-2, 1), (3e-2, 0))]
    sessions = [_session(arm) for arm in arms]
    assert sessions[0].plan.rate_multipliers()  # the hidden and readout rates are not the optimizer's own
    assert_first_step_is_each_arms_keras_step(arms, sessions)


@pytest.mark.slow
def test_a_mup_learning_rate_sweep_fuses_and_equals_the_basic_launcher(tmp_path):
    matched_sweeps(tmp_path, 4, "parametrization=mup", "model.units=128", "optimizer.learning_rate=1e-3,1e-2",
                   "seed=0,1", "trainer.epochs=1")


@pytest.mark.slow
def test_a_rule_that_adds_gates_fuses_apart_and_says_so(tmp_path):
    graph = ("+model.layers=[{type:dense,name:s,units:16},{type:dense,name:p0,units:16},"
             "{type:dense,name:q0,units:16,activation:linear},{type:add,name:r0,inputs:[s,q0]}]")
    said, _, _ = matched_sweeps(tmp_path, 2, graph, "residual=none,rezero", "seed=0,1", groups=2)
    assert "fused: residual=rezero adds a layer at each residual branch's end, so its jobs fuse apart" in said.stdout


# The sweep tests/fixtures/main_6196d19/killed_fused_sweep was stopped from (its README gives the command).
PREVIOUS_MAIN_SWEEP = [
    "trainer.epochs=6", "trainer.verbose=0", "model.units=16", "hydra/launcher=fused", "seed=0,1,2",
    "trainer.reduce_on_plateau.enabled=true", "trainer.reduce_on_plateau.patience=1",
    "trainer.reduce_on_plateau.monitor=accuracy", "trainer.reduce_on_plateau.min_delta=0.05", "optimizer=rmsprop",
    "optimizer.learning_rate=0.01", "+optimizer.momentum=0.5", "+optimizer.centered=true"]


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_fused_sweep_stopped_under_the_previous_main_resumes_bit_identically(tmp_path):
    """A group checkpoint in the layout of the main before the fused engine was taken apart (RMSprop's three
    slots, plateau counters) resumes. Its two epochs are kept as they were; where this machine's kernels give the
    same first two epochs as the CPU that wrote it, every arm's history is the uninterrupted sweep's, bit for bit.
    """
    import shutil

    shutil.copytree(REPO / "tests" / "fixtures" / "main_6196d19" / "killed_fused_sweep", tmp_path / "killed")
    state = json.loads(bytes(np.load(next((tmp_path / "killed" / ".fused").glob("*[0-9a-f].npz")))["state"]))
    resumed = run_module(tmp_path, "resume", "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "fused group 1: continues from its checkpoint after 2 epochs" in resumed.stdout  # not trained again
    _, whole = sweep(tmp_path, "whole", *PREVIOUS_MAIN_SWEEP)
    killed = sorted((tmp_path / "killed").glob("[0-9]*"), key=lambda p: int(p.name))
    assert len(killed) == 3 and not (tmp_path / "killed" / ".fused").exists()
    for a, (fresh, kept) in enumerate(zip(whole, killed, strict=True)):
        rows = history(kept)
        assert len(rows) == 6 and all(row["val_loss"] == row["val_loss"] for row in rows)
        assert [row["val_loss"] for row in rows[:2]] == [e["val_loss"] for e in state["histories"][a]]
        if history(fresh)[:2] == rows[:2]:  # the same kernels as the writer's: the rest follows bit for bit
            assert (fresh / "history.csv").read_text() == (kept / "history.csv").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_sweep_killed_while_writing_its_jobs_resumes_to_the_same_folders(tmp_path):
    import subprocess

    args = [*SWEEP, "hydra/launcher=fused", "seed=0,1,2,3"]
    _, whole = sweep(tmp_path, "whole", *args[len(SWEEP):])
    proc = start(tmp_path, "-m", *args, "hydra.sweep.dir=killed", output=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / "killed" / "1" / "metrics.json").exists(), poll=0.005)
    proc.kill()  # the group has trained; job 0 is written, job 1 is being written
    proc.wait()
    written = json.loads((tmp_path / "killed" / "0" / "metrics.json").read_text())
    assert written["status"] == "completed" and not (tmp_path / "killed" / "3" / "metrics.json").exists()
    resumed = run_module(tmp_path, "resume", "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "(completed before; untouched)" in resumed.stdout and "trained on its own" not in resumed.stdout
    assert "fused group 1: 4 arms as one model" in resumed.stdout  # the same chunk, so its checkpoint is found
    killed = sorted((tmp_path / "killed").glob("[0-9]*"), key=lambda p: int(p.name))
    for a, b in zip(whole, killed, strict=True):
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()  # as if never killed
        assert json.loads((b / "metrics.json").read_text())["status"] == "completed"
    # Job 0 was finished before the kill and stays as it was; the group came back from its checkpoint.
    assert json.loads((tmp_path / "killed" / "0" / "metrics.json").read_text()) == written
    assert not (tmp_path / "killed" / ".fused").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_sigterm_while_a_group_trains_stops_the_sweep_with_its_summary(tmp_path):
    import signal

    proc = start(tmp_path, "-m", *SWEEP, "trainer.epochs=30", "hydra/launcher=fused", "seed=0,1", "hydra.sweep.dir=s")
    wait_for(lambda: list((tmp_path / "s" / ".fused").glob("*.npz")), poll=0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "its checkpoint continues it: python -m modelforge resume" in " ".join(err.split())
    assert (tmp_path / "s" / "summary.md").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("clipping", ["optimizer.global_clipnorm=0.05", "optimizer.clipnorm=0.05"])
def test_weight_decay_per_arm_and_clipping_per_arm_match_the_basic_launcher(tmp_path, clipping):
    # A small clip, so it acts on every step: a norm taken across arms would give other numbers.
    args = ["optimizer=adamw", "optimizer.weight_decay=0.004,0.1", "seed=0,1", clipping]
    matched_sweeps(tmp_path, 4, *args)


@pytest.mark.slow
def test_optuna_gets_each_trials_own_objective(tmp_path):
    result, folders = sweep(tmp_path, "s", "hparams_search=optuna", "hydra/launcher=fused", "hydra.sweeper.n_trials=4",
                            "hydra.sweeper.n_jobs=4", "trainer.epochs=2")
    assert "fused group 1: 4 arms as one model" in result.stdout
    import yaml

    best = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())["best_value"]
    finals = [history(f)[-1]["val_accuracy"] for f in folders]
    assert len(set(finals)) == 4 and best == pytest.approx(max(finals), abs=1e-9)


@pytest.mark.slow
def test_mlflow_and_tensorboard_see_each_fused_job_as_an_ordinary_run(tmp_path):
    import mlflow
    import tensorflow as tf

    _, folders = sweep(tmp_path, "s", "hydra/launcher=fused", "seed=0,1", "logger=mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["modelforge"])
    (parent,) = found[found["tags.modelforge.sweep"] == "s"]["run_id"]  # the sweep's run, as under any launcher
    runs = found[found["tags.mlflow.parentRunId"] == parent]
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"} and sorted(runs["params.seed"]) == ["0", "1"]
    client = mlflow.tracking.MlflowClient()
    for _, found in runs.iterrows():
        rows = history(folders[int(found["params.seed"])])
        logged = client.get_metric_history(found["run_id"], "val_loss")
        assert [m.step for m in logged] == [1, 2, 3]  # every epoch, as a run logs them
        assert [m.value for m in logged] == pytest.approx([row["val_loss"] for row in rows], rel=1e-6)
        assert {"model.keras", "history.csv", "metrics.json"} <= {a.path for a in client.list_artifacts(
            found["run_id"])}

    _, folders = sweep(tmp_path, "t", "hydra/launcher=fused", "seed=0,1", "logger=tensorboard")
    for folder in folders:
        (run_dir,) = (folder / "tensorboard").iterdir()
        losses = {}
        for events in (run_dir / "train").glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(events)):
                for value in event.summary.value:
                    if value.tag == "epoch_loss":
                        losses[event.step] = float(tf.make_ndarray(value.tensor))
        assert [losses[e] for e in sorted(losses)] == pytest.approx([r["loss"] for r in history(folder)], rel=1e-6)


NEW_OPS = {
    # Normalization (data.standardize, each arm with its own split's statistics) and LeakyReLU, on a CSV.
    "csv": ["data=csv", "data.path=examples/byo_csv/measurements.csv", "data.target=species",
            "activation=leaky_relu", "seed=0,1"],
    # Separable, depthwise and transposed convolutions, PReLU, LayerNormalization.
    "conv": ["layer=conv", "activation=prelu", "seed=0,1",
             "+model.layers=[{type:separable_conv2d,filters:4,kernel_size:3,padding:same},"
             "{type:depthwise_conv2d,kernel_size:3},{type:conv2d_transpose,filters:3,kernel_size:2,strides:2},"
             "{type:flatten},{type:layer_normalization},{type:dense,units:16}]"],
    # Embedding under RMSprop, the arms differing in their rates (Keras squares an embedding's gradient per
    # occurrence: the fused model does too).
    "tokens": ["data.layout=tokens", "optimizer=rmsprop", "optimizer.learning_rate=0.001,0.003",
               "+model.layers=[{type:embedding,input_dim:17,output_dim:8},{type:flatten},{type:dense,units:16}]"],
    # SeparableConv1D and SimpleRNN over the digits' rows (a long tanh recurrence at a high rate is chaotic:
    # float rounding alone would part any two implementations).
    "sequence": ["data.layout=sequence", "seed=0,1",
                 "+model.layers=[{type:separable_conv1d,filters:8,kernel_size:3,padding:same},"
                 "{type:simple_rnn,units:16}]"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(NEW_OPS))
def test_the_new_ops_match_the_basic_launcher(tmp_path, case):
    args = [a.replace("examples/", f"{REPO}/examples/") for a in NEW_OPS[case]]
    matched_sweeps(tmp_path, 2, *args, "trainer.epochs=2")


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["submitit", pytest.param("ray", marks=pytest.mark.xdist_group("ray"))])
def test_chunks_on_submitit_and_ray_equal_the_in_process_sweep(tmp_path, executor, request):
    """Each chunk as a submitit job (its local executor) or a Ray task (a local Ray): the same folders, the
    same numbers, bit for bit, as the in-process fused sweep; the driver writes the summaries."""
    import subprocess
    import sys

    args = ["-m", *SWEEP, "trainer.epochs=2", "hydra/launcher=fused", "hydra.launcher.max_arms=2", "seed=0,1,2"]
    _, here = sweep(tmp_path, "here", *args[1:])
    python = request.getfixturevalue("ray_python") if executor == "ray" else sys.executable
    (tmp_path / "work").mkdir()
    elsewhere = subprocess.run([str(python), "-m", "modelforge", *args, f"hydra.launcher.executor={executor}",
                                "hydra.launcher.cluster=local", f"hydra.sweep.dir={tmp_path / 'there'}"],
                               cwd=tmp_path / "work", capture_output=True, text=True, timeout=900)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert f"fused group 1, chunk 1: 2 arms as one model, sent to {executor}" in elsewhere.stdout
    there = sorted((tmp_path / "there").glob("[0-9]*"), key=lambda p: int(p.name))
    assert [p.name for p in there] == [p.name for p in here]
    for a, b in zip(here, there, strict=True):
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
        ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
        assert ma["objective"] == mb["objective"] and ma["fused"]["size"] == mb["fused"]["size"]
    assert "3 runs: 3 completed" in (tmp_path / "there" / "summary.md").read_text()
    assert not (tmp_path / "there" / ".fused").exists()


def test_a_chunk_elsewhere_leaves_the_shared_fused_folder_to_the_driver(tmp_path):
    """A chunk that finishes on Ray or submitit removes its own checkpoint and nothing else: another chunk may be
    writing its checkpoint's temporary file, or be about to make the folder's first file (CI saw that chunk's
    write fail when the folder went). The driver clears the folder once every chunk has returned."""
    from modelforge.fused.groups import FUSED_DIR
    from modelforge.run.checkpoint import previous
    from modelforge.sweep.fused import clear_fused_dir, drop_checkpoints

    fused = tmp_path / FUSED_DIR
    fused.mkdir()
    mine, stopped = fused / "0123456789abcdef.npz", fused / "fedcba9876543210.npz"
    in_flight = fused / ".fedcba9876543210.k2j4h5g6.tmp.npz"  # named as RunFolder's mkstemp names it
    for path in (mine, previous(mine), stopped, in_flight):
        path.write_bytes(b"npz")
    drop_checkpoints([mine])
    assert sorted(p.name for p in fused.iterdir()) == sorted([stopped.name, in_flight.name])
    stopped.unlink()
    in_flight.unlink()
    drop_checkpoints([])  # the other chunk has not written yet: its folder must stay
    assert fused.is_dir()
    in_flight.write_bytes(b"half")  # a kill mid-write, found by the driver after every chunk returned
    stopped.write_bytes(b"npz")
    clear_fused_dir(tmp_path)
    assert [p.name for p in fused.iterdir()] == [stopped.name]  # a stopped chunk's checkpoint continues it
    stopped.unlink()
    clear_fused_dir(tmp_path)
    assert not fused.exists()


def resumes_to(sweep_dir, here):
    """A stopped sweep's summary lists its unstarted jobs; `resume` ends it with the in-process sweep's numbers."""
    assert "not started" in (sweep_dir / "summary.md").read_text()
    resumed = run_module(sweep_dir.parent, "resume", sweep_dir.name)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    there = sorted(sweep_dir.glob("[0-9]*"), key=lambda p: int(p.name))
    for a, b in zip(here, there, strict=True):
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_submitit_chunk_stopped_by_sigterm_resumes_to_the_same_folders(tmp_path):
    """SIGTERM to the driver while a chunk trains on submitit's local executor: the chunk is cancelled at its
    epoch's end, the summaries are written, exit 143; `resume` continues the chunk from its group checkpoint to
    the in-process sweep's folders."""
    import signal

    # 20 epochs: the SIGTERM, the driver's cancel and submitit's SIGINT land while the chunk trains.
    args = [*SWEEP, "trainer.epochs=20", "hydra/launcher=fused", "seed=0,1,2"]
    _, here = sweep(tmp_path, "here", *args)
    # Started as a script's background job (Ctrl-C ignored): submitit's local cancel is a SIGINT, which the chunk's
    # processes must not inherit as ignored (before the fix, under a busy test run, the chunk trained on).
    proc = start(tmp_path, "-m", *args, "hydra.launcher.executor=submitit", "hydra.launcher.cluster=local",
                 "hydra.sweep.dir=there", ignore_ctrl_c=True)
    wait_for(lambda: list((tmp_path / "there" / ".fused").glob("*.prev.npz")), timeout=300, poll=0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-2000:]
    assert "python -m modelforge resume" in stderr
    assert "Traceback" not in stderr  # submitit's controller, stopped by SIGINT, printed its KeyboardInterrupt
    logs = "".join(p.read_text() for p in (tmp_path / "there" / ".submitit").rglob("*_log.out"))
    assert not list((tmp_path / "there").glob("[0-9]*/model.keras")), logs  # stopped while the chunk trained
    resumes_to(tmp_path / "there", here)


@pytest.mark.slow
def test_lsuv_and_delta_orthogonal_arms_are_their_separate_runs(tmp_path):
    """Each fused arm runs its own LSUV on its own sample: the measured scales and every number are its run's."""
    _, basic, fused = matched_sweeps(tmp_path, 2, "layer=conv", "initializer=lsuv,delta_orthogonal",
                                     "trainer.epochs=2")
    for b, f in zip(basic, fused, strict=True):
        assert (f / "init_plan.json").read_text() == (b / "init_plan.json").read_text()
    measured = [e for e in json.loads((fused[0] / "init_plan.json").read_text()) if "lsuv" in e]
    assert [e["layer"] for e in measured] == ["block1_conv2d", "block2_conv2d"]
    assert all(e["lsuv"]["converged"] for e in measured)


@pytest.mark.numeric
@pytest.mark.parametrize("overrides", [["experiment=he2015", "trainer.diagnose=false"],
                                       ["experiment=lsuv_depth", "initializer=lsuv"],
                                       ["experiment=residual_depth", "residual=fixup", "trainer.diagnose=false"],
                                       ["experiment=residual_depth", "residual=rezero", "trainer.diagnose=false"]],
                         ids=["he2015", "lsuv_depth", "resmlp_fixup", "resmlp_rezero"])
def test_a_deep_nets_first_steps_are_the_basic_launchers(overrides):
    """On 30-layer nets and 10-block residual MLPs, after one and two steps, the fused arm's weights and batch loss
    are Keras' own train step's to 1e-6 relative. Later the two part only as fast as rounding parts two basic runs
    (the twins of benchmarks/fused_steps.py; docs/sweeps.md gives the measured growth)."""
    from benchmarks.fused_steps import basic_steps, fused_steps, parted

    basic, fused = basic_steps(overrides, steps=2), fused_steps(overrides, steps=2)
    assert sorted(basic) == sorted(fused) == [1, 2]
    for step in (1, 2):
        weights, loss = parted(fused[step], basic[step])
        assert weights < 1e-6 and loss < 1e-6, (step, weights, loss)


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_submitit_chunk_killed_with_minus_9_leaves_the_summaries_and_resumes(tmp_path):
    """The chunk's process dies without a word (kill -9, the OOM killer): the driver says so in one line, writes
    the summaries and exits 1 (no UncompletedJobError traceback); `resume` finishes the chunk from its group
    checkpoint to the in-process sweep's folders."""
    import signal

    args = [*SWEEP, "trainer.epochs=20", "hydra/launcher=fused", "seed=0,1,2"]
    _, here = sweep(tmp_path, "here", *args)
    proc = start(tmp_path, "-m", *args, "hydra.launcher.executor=submitit", "hydra.launcher.cluster=local",
                 "hydra.sweep.dir=there")
    wait_for(lambda: list((tmp_path / "there" / ".fused").glob("*.prev.npz")), timeout=300, poll=0.01)
    (log,) = (tmp_path / "there" / ".submitit").rglob("*_log.out")
    controller = int(log.name.split("_")[0])  # submitit's local job id: its controller, whose child is the chunk
    (chunk,) = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(chunk), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-2000:]
    assert "ended without its result (UncompletedJobError" in " ".join(stderr.split())
    assert "Traceback" not in stderr
    resumes_to(tmp_path / "there", here)


@pytest.mark.slow
@pytest.mark.xdist_group("timing")
def test_a_chunk_left_training_by_a_killed_driver_keeps_its_group_from_a_resume(tmp_path):
    """The driver killed with -9 leaves its submitit chunk training; an immediate `resume` is told, in one line,
    that the chunk is being trained by that process, and trains nothing beside it."""
    import re
    import signal

    args = [*SWEEP, "trainer.epochs=3000", "trainer.batch_size=8", "hydra/launcher=fused", "seed=0,1,2",
            "hydra.launcher.executor=submitit", "hydra.launcher.cluster=local", "hydra.sweep.dir=there"]
    driver = start(tmp_path, "-m", *args)
    wait_for(lambda: list((tmp_path / "there" / ".fused").glob("*.prev.npz")), timeout=300, poll=0.01)
    driver.kill()
    driver.wait()
    try:
        resumed = run_module(tmp_path, "resume", "there", timeout=300)
        message = " ".join(resumed.stderr.split())
        assert resumed.returncode == 1, resumed.stderr[-2000:]
        found = re.search(r"fused group 1 is being trained by another process now \(pid (\d+)", message)
        assert found and "Traceback" not in resumed.stderr, message
        assert not list((tmp_path / "there").glob("[0-9]*/model.keras"))
    finally:  # the orphan (submitit's controller and the chunk under it, both named by the sweep's folder)
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if f"{tmp_path}/there/.submitit".encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
