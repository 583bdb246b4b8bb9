"""What every run does before fitting: seed, load the data, build and compile the model.

TensorFlow is imported here, inside the functions, never at import time.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from modelforge.core.config.datasets import check_split
from modelforge.core.config.schema import ImagesData, RunConfig
from modelforge.core.init.memory import MemoryEstimate, available_memory, estimate, human
from modelforge.core.init.plan import Plan, make_plan
from modelforge.data.arrays import Dataset
from modelforge.errors import ConfigError
from modelforge.run.console import say
from modelforge.system.quiet import before_tensorflow


@dataclass
class Session:
    """A run ready to fit: its config, plan, data and compiled model, and how long each step took."""

    run: RunConfig
    plan: Plan
    dataset: Dataset
    model: Any
    timings: dict[str, float] = field(default_factory=dict)


def compute_line() -> str:
    """What the backend will compute on, in one line: `TensorFlow 2.21 on CPU (2 threads), no GPU`."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return f"Keras {keras.__version__} on {keras.backend.backend()}"
    import tensorflow as tf

    version = ".".join(tf.__version__.split(".")[:2])
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = ", ".join(g.name for g in gpus)
        return f"TensorFlow {version} on {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({names})"
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return f"TensorFlow {version} on CPU ({threads} threads), no GPU"


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy and the backend; with `deterministic`, asks TensorFlow for deterministic ops."""
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def check_memory(run: RunConfig, plan: Plan) -> MemoryEstimate:
    """Refuses, before anything is built, a run whose estimated memory exceeds what the machine has free."""
    needed = estimate(plan, run.trainer.batch_size, run.optimizer.name)
    free = available_memory()
    if free is not None and needed.total > free:
        raise ConfigError(f"this run needs {needed.describe()}, more than the {human(free)} this machine has "
                          f"available; {needed.advice()}")
    return needed


def feature_statistics(x: Any) -> tuple[Any, Any]:
    """Each feature's mean and variance over the training samples (a constant feature gets variance 1, so it
    is centred, not blown up).

    Example:
        >>> import numpy as np
        >>> [v.tolist() for v in feature_statistics(np.array([[1.0, 5.0], [3.0, 5.0]]))]
        [[2.0, 5.0], [1.0, 1.0]]
    """
    import numpy as np

    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    mean, variance = flat.mean(axis=0), flat.var(axis=0)
    variance[variance == 0] = 1.0
    shape = np.shape(x)[1:]
    return mean.reshape(shape).astype(np.float32), variance.reshape(shape).astype(np.float32)


def strategy_scope(name: str) -> Any:
    """The scope the model is built in: none for `default`; for `mirrored`, a `tf.distribute.MirroredStrategy`
    over every visible GPU, else every logical CPU device (one, unless the process configured more)."""
    if name == "default":
        return contextlib.nullcontext()
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    say(f"strategy: MirroredStrategy over {len(devices)} device{'s' if len(devices) > 1 else ''} "
        f"({', '.join(devices)})")
    return tf.distribute.MirroredStrategy(devices=devices).scope()


def plan_for(run: RunConfig, input_shape: tuple[int, ...] | None = None) -> Plan:
    """The run's plan; the user's data (files, their function) is read first, for its shape (no TensorFlow for
    files; a function of the user's may import what it likes)."""
    from modelforge.data.sources import describe

    info = describe(run.data)
    if info is not None and info.samples is not None:
        check_split(info.samples, run.data.validation_split, run.trainer.batch_size)
    return make_plan(run, input_shape, info)


def _verify_images(data: ImagesData, decode: Any) -> None:
    """Decodes every image once before training (cached across runs), and says how long it took."""
    from modelforge.data.images import cache_dir, verify_images
    from modelforge.data.sources import image_folder

    count, seconds = verify_images(data, image_folder(data), decode)
    if count:
        say(f"checked {count} images by decoding each once in {seconds:.1f} s (remembered in {cache_dir()}, so "
            "the next run skips them)")


def prepare(run: RunConfig, plan: Plan | None = None, fresh: bool = True) -> Session:
    """Seeds, loads the data, builds and compiles the model the plan describes.

    Refuses a model that cannot fit in memory before TensorFlow is imported; every check that needs Keras
    (layer and optimizer arguments) runs before any layer is made. `fresh=False` (a resume whose checkpoint
    holds the weights) skips LSUV's measurements.
    """
    from modelforge.run.fit import compile_model, make_optimizer, optimizer_class

    timings: dict[str, float] = {}
    if plan is None:
        tick = time.perf_counter()
        plan = plan_for(run)
        timings["plan_s"] = time.perf_counter() - tick
    check_memory(run, plan)

    before_tensorflow()
    tick = time.perf_counter()
    import keras

    from modelforge.build import build, check_layer_args
    from modelforge.data.arrays import load
    from modelforge.data.batches import steps_per_epoch

    say(compute_line())
    optimizer_class(run.optimizer)  # its arguments checked against Keras before anything else is made
    check_layer_args(plan)
    # A fresh session per job: sweeps run jobs one after another in one process (and loky reuses workers).
    # free_memory=False skips a full gc.collect() per job (docs/benchmarks.md); Python's own gc still runs.
    keras.backend.clear_session(free_memory=False)
    # Set on every run, so a sweep's job never inherits the previous job's policy.
    keras.config.set_dtype_policy(run.trainer.precision)
    seed_everything(run.seed, run.trainer.deterministic)
    dataset = load(run.data, plan.info, run.seed, run.trainer.batch_size)
    if isinstance(run.data, ImagesData):
        _verify_images(run.data, dataset.decode)
    timings["import_and_data_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    with strategy_scope(run.trainer.strategy):
        optimizer = make_optimizer(run.optimizer, steps_per_epoch(len(dataset.x_train), run.trainer.batch_size),
                                   run.trainer.epochs, plan.rate_multipliers())
        sample = dataset.sample(plan.sample_size, run.seed) if plan.sample_size and fresh else None
        model = build(plan, feature_statistics(dataset.x_train) if getattr(run.data, "standardize", False) else None,
                      sample, measure=fresh)
        compile_model(model, optimizer, run)
    timings["build_s"] = time.perf_counter() - tick
    if plan.measured:
        timings["lsuv_s"] = plan.measured_s
    return Session(run, plan, dataset, model, timings)
