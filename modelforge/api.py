"""What other code imports: compose a config, check it, plan it, build its model, train it. No CLI needed.

Example:
    >>> import modelforge
    >>> cfg = modelforge.compose(["layer=conv", "initializer=he_normal", "trainer.epochs=1"])
    >>> modelforge.plan(cfg).entries[0].choice.source
    'override'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.core.config.schema import RunConfig

if TYPE_CHECKING:
    import keras
    from omegaconf import DictConfig

    from modelforge.core.init.plan import Plan
    from modelforge.run.console import Place
    from modelforge.run.folder import RunFolder
    from modelforge.run.lifecycle import Trained, TrainResult


def compose(
    overrides: Sequence[str] = (),
    config_name: str = "config",
    groups: Mapping[str, Any] | None = None,
) -> DictConfig:
    """Composes modelforge's config with command-line style overrides, outside any Hydra app or inside one.

    Args:
        overrides: e.g. `["layer=conv", "model.units=16"]`.
        config_name: the primary config in `modelforge.conf`.
        groups: whole group nodes that replace the composed ones, e.g. `{"initializer": app_cfg.model.init}`
            where another Hydra app picked `modelforge/initializer@model.init: he_normal`.

    Raises:
        ConfigError: an unknown group option, a misspelled key, or a value of the wrong type.

    Example:
        >>> cfg = compose(["model.depth=1"], groups={"initializer": {"name": "lecun_normal"}})
        >>> cfg.initializer.name, cfg.model.depth
        ('lecun_normal', 1)
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from modelforge.core.names import CONFIG_MODULE
    from modelforge.errors import ConfigError
    from modelforge.front_door import check_overrides, normalize_overrides, register

    register()
    check_overrides(overrides)
    # Inside another Hydra app, GlobalHydra holds that app's search path: compose from ours, then put it back.
    global_hydra = GlobalHydra.instance()
    outer = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=normalize_overrides(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        detail = " ".join(f"{err}: {err.__cause__ or ''}".split())
        raise ConfigError(f"cannot compose the config with {list(overrides)}: {detail}") from None
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
    with open_dict(cfg):
        for name, node in (groups or {}).items():
            if name not in cfg:
                raise ConfigError(f"groups: {name!r} is not one of modelforge's groups: {', '.join(cfg)}")
            cfg[name] = OmegaConf.create(OmegaConf.to_container(node, resolve=True)
                                         if OmegaConf.is_config(node) else dict(node))
    return cfg


def run_config(cfg: Any) -> RunConfig:
    """The checked, typed run config of a composed config (a DictConfig, a plain mapping, or a RunConfig).

    Raises:
        ConfigError: the first bad key or value, named, with the nearest valid one.

    Example:
        >>> run_config(compose(["trainer.objective=val_loss"])).trainer.early_stopping.mode
        'min'
    """
    if isinstance(cfg, RunConfig):
        return cfg
    from omegaconf.errors import OmegaConfBaseException

    from modelforge.errors import ConfigError
    from modelforge.front_door import to_plain

    try:
        plain = to_plain(cfg)
    except OmegaConfBaseException as err:  # an interpolation whose value the key's type cannot hold
        key = getattr(err, "full_key", None)
        raise ConfigError(f"{key or 'the config'}: {' '.join(str(err).split(chr(10))[0].split())}") from None
    return RunConfig.from_mapping(plain)


def plan(cfg: Any, input_shape: tuple[int, ...] | None = None) -> Plan:
    """The init plan of a config: one entry per weight, without building anything (no TensorFlow).

    Args:
        cfg: a composed config (or a `RunConfig`).
        input_shape: one sample's shape, for data the config does not describe (None: the configured data's).
    """
    from modelforge.run.setup import plan_for

    return plan_for(run_config(cfg), input_shape)


def build_model(cfg: Any, input_shape: tuple[int, ...] | None = None, sample: Any = None) -> keras.Model:
    """Builds the config's model as a run builds it, every kernel initialized as the plan says.

    With `data.standardize` (CSV and npz data), the `Normalization` layer comes first with the config's training
    split's statistics, as in the run's saved model; given an `input_shape` (data the config does not describe)
    there are no statistics to give it, and the model starts at its first planned layer.

    Args:
        cfg: a composed config (or a `RunConfig`).
        input_shape: one sample's shape, for data the config does not describe (None: the configured data's).
        sample: training inputs for `initializer=lsuv` to measure on; None loads the config's data and draws
            `initializer.samples` of them with the run's seed, as a run does (only when the plan needs them).

    Example:
        >>> model = build_model(compose(["model.depth=1"]), input_shape=(20,))
        >>> model.input_shape, model.output_shape
        ((None, 20), (None, 10))
    """
    from modelforge.build import build
    from modelforge.run.setup import feature_statistics

    run = run_config(cfg)
    found = plan(run, input_shape)
    standardize = bool(getattr(run.data, "standardize", False)) and input_shape is None
    statistics = None
    if standardize or (sample is None and found.sample_size and input_shape is None):
        from modelforge.data.arrays import load

        data = load(run.data, found.info, run.seed, run.trainer.batch_size)
        statistics = feature_statistics(data.x_train) if standardize else None
        if sample is None and found.sample_size:
            sample = data.sample(found.sample_size, run.seed)
    return build(found, statistics, sample=sample)


def train(cfg: Any, run_dir: str | Path | RunFolder | None = None, resume: bool = False,
          place: Place | None = None, trained: Trained | None = None) -> TrainResult:
    """Trains the config's model and writes a run folder.

    Returns:
        A `TrainResult`: the contents of `metrics.json` as a dict (so `result["objective"]` works as before),
        with `.model` (the trained `keras.Model`), `.history` (Keras' form: metric -> one value per epoch) and
        `.run_dir`.

    With `trainer.diagnose=true` the init health report runs before the fit.

    Args:
        cfg: a composed config (or a `RunConfig`).
        run_dir: where the run folder goes; a new folder under `outputs/` when None.
        resume: continue the unfinished run in `run_dir` from its checkpoint (see `resume`).
        place: where the run sits in a sweep, for what it prints (the command line's sweeps set it).
        trained: the run's epochs trained elsewhere (a fused launcher's arm), written through this run.

    Raises:
        ConfigError: bad input, found before anything heavy runs; `metrics.json` says `failed` and why.
        FolderTaken: `run_dir` holds a completed or live run (or, without `resume`, an unfinished one).
        RunFailed: training diverged (NaN loss).
        RunInterrupted: SIGTERM or Ctrl-C stopped it; the checkpoint is kept for `resume`.
    """
    from modelforge.analysis.diagnose import hooks_for
    from modelforge.errors import ConfigError
    from modelforge.run.folder import RunFolder, default_run_dir
    from modelforge.run.lifecycle import claim, record_failure, run_training

    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir or default_run_dir())
    if not folder.locked:
        claim(folder, resume, key="run_dir")
    try:
        run = run_config(cfg)
    except ConfigError as err:
        record_failure(folder, err)  # the folder says why nothing ran (a sweep's summary lists it)
        folder.unlock()
        raise
    return run_training(run, folder, hooks=hooks_for(run), resume=resume, place=place, trained=trained)


def resume(run_dir: str | Path) -> TrainResult:
    """Continues the unfinished run (dead, or stopped by a signal) in `run_dir` from its last checkpoint.

    The run's own `config.yaml` is its config; the result is what the run would have given uninterrupted.
    """
    from omegaconf import OmegaConf

    from modelforge.errors import ConfigError

    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path} holds no run to resume (no config.yaml); give a run folder or a sweep folder")
    try:
        recorded = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
    except Exception as err:  # YAML's and OmegaConf's own errors: the file is not the config a run wrote
        raise ConfigError(f"{path / 'config.yaml'} cannot be read as the run's config ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it was edited or damaged: "
                          "put back the config the run wrote, or start a new run") from None
    if not isinstance(recorded, dict):
        raise ConfigError(f"{path / 'config.yaml'} holds no mapping of keys, so it is not the config a run wrote; "
                          "put back the config the run wrote, or start a new run")
    return train(recorded, path, resume=True)
