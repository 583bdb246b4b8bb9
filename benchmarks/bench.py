"""`make bench`: modelforge's costs as ratios against plain TensorFlow/Keras measured in the same run.

(a) `--help` and `--cfg job` wall time over `python -c "import tensorflow"`      target < 0.25,
    and a bad objective's refusal (`trainer.objective=val_acc`, exit 2) over the same import   target < 0.5
(b) the whole default run over benchmarks/handwritten_digits.py (same job)        target <= 0.85
(c) in-process: modelforge's fit (its callbacks and checkpoints) over plain `model.fit`  target <= 1.03
(d) a 6-initializer sweep of the default model for 3 epochs against one TensorFlow import plus six
    hand-written fits in one process: the overhead per job, in seconds                target < 0.5 s
(e) the same sweep with hydra/launcher=parallel (2 worker processes) over the basic launcher
(f) the 36-job sweep `initializer=glob(*) seed=0,1,2` (12 initializers, 20 epochs) with hydra/launcher=fused
    over one run                                                                   target <= 3
(g) the same sweep, basic launcher over fused                                     target >= 9
(h) a 9-job `layer=conv` sweep (3 epochs), basic over fused                        target >= 2.5
    and in process: nine separate Keras fits of those conv jobs over their fused fit  target >= 8
(i) the fused fit's FLOP/s over a large matmul's FLOP/s on this machine, as a fraction
(k) the marginal cost of one more arm, (sweep wall - one run's wall) / (jobs - 1), fused over basic, at 36 arms
    and at 243 arms (9 initializers x 3 seeds x 9 learning rates, the default model, 20 epochs), with the
    243-arm sweep's peak memory                                                    target <= 1/25
(l) what LSUV adds to building `experiment=lsuv_depth` (30 Dense(64) ReLU layers): its seconds, and the build
    with LSUV over the build with he_normal                                        target: adds < 1 s
Each figure is the median of several interleaved repeats; pass --repeats N to change how many.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


# Commands timed for how fast they refuse: the exit status each must end with (every other command: 0).
REFUSALS = {"trainer.objective=val_acc": 2}


def wall(args: list[str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != REFUSALS.get(args[-1], 0):
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}")
    return elapsed


def medians(commands: dict[str, list[str]], repeats: int, cwd: str) -> dict[str, float]:
    """Runs the commands interleaved, so drift in the machine's load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, args in commands.items():
            times[name].append(wall(args, cwd))
    return {name: statistics.median(values) for name, values in times.items()}


def line(label: str, ratio: float, target: str, detail: str) -> None:
    print(f"{label:<44} {ratio:6.3f}   target {target:<7} {detail}")


def startup(repeats: int, cwd: str) -> None:
    t = medians({
        "import tensorflow": [PY, "-c", "import tensorflow"],
        "--help": [PY, "-m", "modelforge", "--help"],
        "--cfg job": [PY, "-m", "modelforge", "--cfg", "job"],
        "bad objective": [PY, "-m", "modelforge", "trainer.objective=val_acc"],
    }, repeats, cwd)
    base = t["import tensorflow"]
    for name in ("--help", "--cfg job"):
        line(f"(a) {name} / import tensorflow", t[name] / base, "< 0.25", f"{t[name]:.2f}s vs {base:.2f}s")
    name = "bad objective"
    line(f"(a) {name} refused / import tensorflow", t[name] / base, "< 0.5", f"{t[name]:.2f}s vs {base:.2f}s")


def whole_run(repeats: int, cwd: str) -> None:
    t = medians({
        "modelforge": [PY, "-m", "modelforge", "trainer.verbose=0"],
        "hand-written": [PY, str(HERE / "handwritten_digits.py")],
    }, repeats, cwd)
    ratio = t["modelforge"] / t["hand-written"]
    line("(b) default run / hand-written Keras", ratio, "<= 0.85",
         f"{t['modelforge']:.2f}s vs {t['hand-written']:.2f}s")


def fit_overhead(repeats: int, cwd: str) -> None:
    import modelforge
    from modelforge.build import build
    from modelforge.data.arrays import load
    from modelforge.run.checkpoint import Progress
    from modelforge.run.fit import StopSignal, compile_model, fit_model, make_callbacks, make_optimizer
    from modelforge.run.folder import RunFolder
    from modelforge.run.setup import seed_everything

    run = modelforge.run_config(modelforge.compose(["trainer.verbose=0"]))
    plan = modelforge.plan(run)
    seed_everything(0, True)
    dataset = load(run.data, plan.info, 0)
    folder = RunFolder(Path(cwd) / "fit-bench")
    ours, plain = [], []

    def fresh():
        model = build(plan)
        compile_model(model, make_optimizer(run.optimizer), run)
        return model

    fresh().fit(dataset.x_train, dataset.y_train, epochs=1, verbose=0)  # warm up TF's kernels once
    for _ in range(repeats):
        model = fresh()
        start = time.perf_counter()
        # The real run's callbacks: history.csv, the NaN guard and a checkpoint every epoch.
        progress = Progress()
        callbacks = make_callbacks(run, folder, progress, None, StopSignal(), on_epoch=lambda done: None)
        fit_model(model, dataset, run, callbacks, progress)
        ours.append(time.perf_counter() - start)
        model = fresh()
        start = time.perf_counter()
        model.fit(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val),
                  epochs=run.trainer.epochs, batch_size=run.trainer.batch_size, verbose=0)
        plain.append(time.perf_counter() - start)
    a, b = statistics.median(ours), statistics.median(plain)
    line("(c) modelforge fit / plain model.fit", a / b, "<= 1.03", f"{a:.2f}s vs {b:.2f}s")


SWEEP = ["-m", "initializer=he_normal,glorot_uniform,glorot_normal,he_uniform,lecun_normal,lecun_uniform",
         "trainer.epochs=3", "trainer.verbose=0"]


def sweeps(repeats: int, cwd: str) -> None:
    t = medians({
        "sweep": [PY, "-m", "modelforge", *SWEEP],
        "baseline": [PY, str(HERE / "handwritten_digits.py"), "--runs", "6", "--epochs", "3"],
        "parallel": [PY, "-m", "modelforge", *SWEEP, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
    }, repeats, cwd)
    per_job = (t["sweep"] - t["baseline"]) / 6
    print(f"{'(d) sweep overhead per job, seconds':<44} {per_job:6.3f}   target {'< 0.5':<7} "
          f"{t['sweep']:.2f}s vs {t['baseline']:.2f}s for 6 jobs")
    line("(e) parallel (2 processes) / basic launcher", t["parallel"] / t["sweep"], "-",
         f"{t['parallel']:.2f}s vs {t['sweep']:.2f}s on {os.cpu_count()} cores")


FUSED_SWEEP = ["-m", "initializer=glob(*)", "seed=0,1,2", "trainer.verbose=0"]
# Every option of the initializer group, three seeds each: the jobs FUSED_SWEEP makes.
GLOB_JOBS = 3 * len(list((Path(__file__).resolve().parents[1] / "conf" / "initializer").glob("*.yaml")))


def _fused_fit(cwd: str) -> tuple[float, int, float]:
    """From the last fused sweep in cwd: the group's fit seconds, its arms, and its training FLOPs."""
    import json

    records = [json.loads(p.read_text()) for p in Path(cwd, "fused").rglob("metrics.json")]
    fused = [r for r in records if r.get("fused")]
    plan = json.loads(next(Path(cwd, "fused").rglob("init_plan.json")).read_text())
    macs = sum(int(__import__("math").prod(e["shape"])) for e in plan if e["weight"] == "kernel")
    samples = fused[0]["samples"]["train"] * fused[0]["epochs_run"] + fused[0]["samples"]["validation"] * fused[0][
        "epochs_run"] / 3  # validation is a forward pass only: a third of a training step's work
    return fused[0]["fused"]["fit_s"], len(fused), 6.0 * macs * samples * len(fused)


def matmul_flops() -> float:
    """FLOP/s of one large float32 matmul in TensorFlow on this machine (the best of a few)."""
    import tensorflow as tf

    n = 2048
    a = tf.random.normal((n, n))
    tf.linalg.matmul(a, a).numpy()
    best = min(_timed(lambda: tf.linalg.matmul(a, a).numpy()) for _ in range(5))
    return 2 * n**3 / best


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def fused(repeats: int, cwd: str) -> None:
    t = medians({
        "one run": [PY, "-m", "modelforge", "trainer.verbose=0"],
        "fused": [PY, "-m", "modelforge", *FUSED_SWEEP, "hydra/launcher=fused", "hydra.sweep.dir=fused"],
    }, repeats, cwd)
    line(f"(f) {GLOB_JOBS}-job fused sweep / one run", t["fused"] / t["one run"], "<= 3",
         f"{t['fused']:.2f}s vs {t['one run']:.2f}s")
    basic = medians({"basic": [PY, "-m", "modelforge", *FUSED_SWEEP]}, 1, cwd)["basic"]
    line(f"(g) {GLOB_JOBS}-job sweep, basic / fused", basic / t["fused"], ">= 9", f"{basic:.2f}s vs {t['fused']:.2f}s")
    conv = ["-m", "layer=conv", "initializer=he_normal,glorot_uniform,lecun_normal", "seed=0,1,2", "trainer.epochs=3",
            "trainer.verbose=0"]
    c = medians({"basic": [PY, "-m", "modelforge", *conv], "fused": [PY, "-m", "modelforge", *conv,
                                                                   "hydra/launcher=fused"]}, 1, cwd)
    line("(h) 9-job conv sweep, basic / fused", c["basic"] / c["fused"], ">= 2.5",
         f"{c['basic']:.2f}s vs {c['fused']:.2f}s")
    conv_in_process()
    fit_s, arms, flops = _fused_fit(cwd)
    line("(i) fused fit FLOP/s / matmul FLOP/s", flops / fit_s / matmul_flops(), "-",
         f"{arms} arms, {flops / 1e9:.1f} GFLOP in {fit_s:.2f}s")
    marginal(t["one run"], basic, t["fused"], cwd)


BIG_SWEEP = ["-m", "initializer=auto,glorot_normal,glorot_uniform,he_normal,he_uniform,lecun_normal,lecun_uniform,"
             "orthogonal,variance_scaling", "seed=0,1,2",
             "optimizer.learning_rate=0.0005,0.001,0.0015,0.002,0.0025,0.003,0.0035,0.004,0.0045", "trainer.verbose=0"]


def _peak(args: list[str], cwd: str) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of a command, measured in a process of its own."""
    probe = ("import resource, subprocess, sys, time; s = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(time.perf_counter() - s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([PY, "-c", probe, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout
    seconds, megabytes = (float(x) for x in out.split())
    return seconds, megabytes


def marginal(one: float, basic_glob: float, fused_glob: float, cwd: str) -> None:
    """(k): what one more arm costs. Basic's extra job is measured at GLOB_JOBS jobs: its jobs run one after
    another in one process, so an extra job costs the same at any count (243 basic jobs would take ~30 min)."""
    basic_job = (basic_glob - one) / (GLOB_JOBS - 1)
    fused243, peak = _peak([PY, "-m", "modelforge", *BIG_SWEEP, "hydra/launcher=fused", "hydra.sweep.dir=big"], cwd)
    for arms, wall_s in ((GLOB_JOBS, fused_glob), (243, fused243)):
        extra = (wall_s - one) / (arms - 1)
        line(f"(k) one more arm at {arms}, fused / basic", extra / basic_job, "<= 0.04",
             f"{extra:.3f}s vs {basic_job:.3f}s a job; sweep {wall_s:.1f}s"
             + (f", peak memory {peak:.0f} MB" if arms == 243 else ""))


def lsuv_build() -> None:
    """(l): the seconds LSUV adds to building the lsuv_depth model (after a warm-up build), and the build's ratio."""
    import contextlib
    import io

    import modelforge
    from modelforge.run.setup import prepare

    def build(init: str) -> tuple[float, float]:
        run = modelforge.run_config(modelforge.compose(["experiment=lsuv_depth", f"initializer={init}"]))
        with contextlib.redirect_stdout(io.StringIO()):
            session = prepare(run)
        return session.timings["build_s"], session.timings.get("lsuv_s", 0.0)

    build("lsuv")  # the first eager calls pay for tracing; every run after pays the steady cost
    he = statistics.median(build("he_normal")[0] for _ in range(3))
    timed = [build("lsuv") for _ in range(3)]
    lsuv, measured = statistics.median(t[0] for t in timed), statistics.median(t[1] for t in timed)
    line("(l) lsuv_depth build, lsuv / he_normal", lsuv / he, "-",
         f"LSUV adds {lsuv - he:.2f}s (target < 1 s; its measuring {measured:.2f}s); build {lsuv:.2f}s vs {he:.2f}s")


def conv_in_process() -> None:
    """(h, in process): the 9 conv jobs' fits, each a separate Keras fit, over their fused fit (traces included)."""
    import contextlib
    import io

    import modelforge
    from modelforge.fused.trainer import train_group
    from modelforge.run.checkpoint import Progress
    from modelforge.run.fit import fit_model
    from modelforge.run.setup import prepare

    runs = [modelforge.run_config(modelforge.compose(["layer=conv", f"initializer={init}", f"seed={seed}",
                                                       "trainer.epochs=3", "trainer.verbose=0"]))
            for init in ("he_normal", "glorot_uniform", "lecun_normal") for seed in range(3)]
    with contextlib.redirect_stdout(io.StringIO()):
        sessions = [prepare(run) for run in runs]
        start = time.perf_counter()
        train_group(sessions)
        fused_s = time.perf_counter() - start
        separate = 0.0
        for run in runs:
            session = prepare(run)
            start = time.perf_counter()
            fit_model(session.model, session.dataset, run, [], Progress(), quiet=True)
            separate += time.perf_counter() - start
    line("(h) in process: 9 conv fits / fused fit", separate / fused_s, ">= 8", f"{separate:.2f}s vs {fused_s:.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["fused", "lsuv"], help="run one section only")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from modelforge.system.quiet import quiet_stderr, wanted

    if wanted([]):  # line (i) imports TensorFlow here: its start-up lines would land among the figures
        quiet_stderr()
    print(f"{'ratio':<44} {'value':>6}   {'target':<14} times (median of {args.repeats})")
    with tempfile.TemporaryDirectory() as cwd:
        if args.only == "fused":
            fused(args.repeats, cwd)
            return
        if args.only == "lsuv":
            lsuv_build()
            return
        startup(args.repeats, cwd)
        whole_run(args.repeats, cwd)
        fit_overhead(args.repeats, cwd)
        sweeps(args.repeats, cwd)
        fused(args.repeats, cwd)
        lsuv_build()


if __name__ == "__main__":
    main()
