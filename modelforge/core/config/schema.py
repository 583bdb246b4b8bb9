"""The typed run config: the composed config, validated once at the front door, as frozen dataclasses.

`RunConfig.from_mapping(plain)` is the one conversion from what Hydra composed (as plain containers). It
checks every key and value that can be known before TensorFlow is imported: unknown keys get the nearest
real one, numbers their bounds, metric names the metrics the task reports. Everything after it reads typed
fields. Defaults live in the YAML of `conf/` only: these dataclasses have none, and the typed schemas Hydra
checks while composing are their twins (`fields.twin`), so each key is typed in one place. How a field's type
reads a value is `modelforge.core.config.fields`, shared with the command line's value check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelforge.core.checks import number, positive_int
from modelforge.core.config import metrics
from modelforge.core.config.datasets import IMAGES, LAYOUTS, DataInfo, check_split
from modelforge.core.config.fields import check_keys, twin, typed
from modelforge.core.config.policy import InitChoice, InitPolicy, parse_initializer_config
from modelforge.core.registry import DEFAULT_SCHEDULE, SCHEDULES, get_optimizer_class
from modelforge.errors import ConfigError, invalid

VERBOSITY = ("auto", 0, 1, 2)
# trainer.precision: Keras' dtype policies (mixed ones compute in 16 bits, keep variables in float32).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# trainer.strategy: TensorFlow's default (one device), or data-parallel over every visible device.
STRATEGIES = ("default", "mirrored")
CLASS_WEIGHTS = ("balanced",)

# The largest run seed: TensorFlow's and Keras' seeds are 32-bit.
MAX_SEED = 2**32 - 1
# The most layers a model may have: refused before anything is planned or built (deeper nets take minutes to
# build, and no net of this builder's kinds needs them).
MAX_LAYERS = 10_000


@dataclass(frozen=True)
class EarlyStopping:
    """`trainer.early_stopping`: Keras' EarlyStopping; its mode follows from the monitored metric's name."""

    KEY: ClassVar[str] = "trainer.early_stopping"
    enabled: bool
    monitor: str
    patience: int
    min_delta: float
    restore_best_weights: bool

    @property
    def mode(self) -> str:
        return metrics.mode(self.monitor)

    def __post_init__(self) -> None:
        positive_int(self.patience, f"{self.KEY}.patience")
        number(self.min_delta, f"{self.KEY}.min_delta", minimum=0)


@dataclass(frozen=True)
class ReduceOnPlateau:
    """`trainer.reduce_on_plateau`: Keras' ReduceLROnPlateau (multiplies the rate by `factor` on a plateau)."""

    KEY: ClassVar[str] = "trainer.reduce_on_plateau"
    enabled: bool
    monitor: str
    factor: float
    patience: int
    min_delta: float
    cooldown: int
    min_lr: float

    @property
    def mode(self) -> str:
        return metrics.mode(self.monitor)

    def __post_init__(self) -> None:
        number(self.factor, f"{self.KEY}.factor", minimum=0, maximum=1, open_min=True, open_max=True)
        positive_int(self.patience, f"{self.KEY}.patience", 0)
        positive_int(self.cooldown, f"{self.KEY}.cooldown", 0)
        number(self.min_delta, f"{self.KEY}.min_delta", minimum=0)
        number(self.min_lr, f"{self.KEY}.min_lr", minimum=0)


@dataclass(frozen=True)
class Loss:
    """`trainer.loss` checked: a name in `core.config.metrics.LOSSES` and its parameters."""

    name: str
    params: Mapping[str, float]


@dataclass(frozen=True)
class Trainer:
    """`trainer`: how the model is fit. `objective` is the metric returned to sweepers (`auto` resolved);
    `metrics` and `loss` are resolved for the task by `RunConfig.from_mapping`."""

    epochs: int
    batch_size: int
    shuffle: bool
    verbose: Any  # auto, 0, 1 or 2, as Keras' fit takes it
    deterministic: bool
    diagnose: bool
    diagnose_jacobian: bool
    coord_check: int
    objective: str
    metrics: tuple[str, ...] | None  # None: the task's default
    loss: Any  # auto, a loss name, or a mapping {name: ..., <parameter>: ...}; a Loss once checked
    class_weight: str | None
    precision: str
    strategy: str
    early_stopping: EarlyStopping
    reduce_on_plateau: ReduceOnPlateau

    def __post_init__(self) -> None:
        positive_int(self.epochs, "trainer.epochs")
        positive_int(self.batch_size, "trainer.batch_size")
        if self.verbose not in VERBOSITY or isinstance(self.verbose, bool):
            raise invalid("trainer.verbose", self.verbose, VERBOSITY)
        if self.precision not in PRECISIONS:
            raise invalid("trainer.precision", self.precision, PRECISIONS)
        if self.strategy not in STRATEGIES:
            raise invalid("trainer.strategy", self.strategy, STRATEGIES)
        if self.class_weight is not None and self.class_weight not in CLASS_WEIGHTS:
            raise invalid("trainer.class_weight", self.class_weight, CLASS_WEIGHTS,
                          hint="null weighs every sample alike")


# Where a residual block's layer normalization goes: the branch's start (pre-LN), or after the add (post-LN).
NORM_PLACES = ("pre", "post")


@dataclass(frozen=True)
class Model:
    """`model`: `depth` blocks of the `layer` group `units` wide, the explicit `layers` list, or a graph of named
    `blocks` (`core.model.blocks`) whose `output` block feeds the head."""

    depth: int
    units: int
    layers: Any  # None, or a list of layer spec mappings (a tuple of dicts once checked)
    blocks: Any  # None, or a mapping of named blocks
    output: str | None
    # Where a residual block without its own `norm` key puts a layer normalization: `pre` (the branch's start),
    # `post` (after the add), or None (none added).
    norm: str | None

    def __post_init__(self) -> None:
        positive_int(self.depth, "model.depth")
        if self.depth > MAX_LAYERS:
            raise ConfigError(f"model.depth={self.depth} is more than the {MAX_LAYERS:,} layers a model may have")
        positive_int(self.units, "model.units")
        if self.layers is not None and (not isinstance(self.layers, (list, tuple)) or not self.layers):
            raise ConfigError(f"model.layers={self.layers!r} must be a non-empty list of layer specs, or null")
        if self.layers is not None and self.blocks is not None:
            raise ConfigError("model.layers and model.blocks are both set; a model is one or the other: set "
                              "model.layers=null for the blocks, or model.blocks=null for the list")
        if self.output is not None and self.blocks is None:
            raise ConfigError(f"model.output={self.output!r} names a block, and the model has no model.blocks; set "
                              "model.output=null")
        if self.norm is not None and self.norm not in NORM_PLACES:
            raise invalid("model.norm", self.norm, [*NORM_PLACES, "null"])
        if self.norm is not None and self.blocks is None:
            raise ConfigError(f"model.norm={self.norm!r} places the residual blocks' normalization, and the model has "
                              "no model.blocks; set model.norm=null")
        if self.layers is not None and len(self.layers) > MAX_LAYERS:
            raise ConfigError(f"model.layers holds {len(self.layers):,} layer specs; a model has at most "
                              f"{MAX_LAYERS:,} layers")


def _check_split(split: float) -> None:
    number(split, "data.validation_split", minimum=0, maximum=1, open_min=True, open_max=True)


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise invalid("data.layout", layout, LAYOUTS)


@dataclass(frozen=True)
class ImageData:
    """What every grey-image data set takes: the validation split and the layout of each image."""

    name: str
    validation_split: float
    layout: str

    def __post_init__(self) -> None:
        _check_split(self.validation_split)
        _check_layout(self.layout)

    def describe(self, wanted_layout: str) -> DataInfo:
        """Shapes for a first layer that wants `wanted_layout`.

        Example:
            >>> DigitsData(name="digits", validation_split=0.2, layout="auto").describe("image").input_shape
            (8, 8, 1)
        """
        return IMAGES[self.name].describe(self.name, self.layout, wanted_layout)

    @property
    def num_samples(self) -> int:
        return IMAGES[self.name].samples


@dataclass(frozen=True)
class DigitsData(ImageData):
    """`data=digits`: scikit-learn's bundled 8x8 digits."""


@dataclass(frozen=True)
class MnistData(ImageData):
    """`data=mnist`: 60,000 28x28 images, downloaded once into a cache and checked against their SHA-256."""

    url: str
    sha256: str | None
    cache_dir: str | None
    max_samples: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.url:
            raise ConfigError(f"data.url={self.url!r} must be the address of mnist.npz (https:// or file://)")
        sha = self.sha256
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha)):
            raise ConfigError(f"data.sha256={sha!r} must be 64 hex digits, or null to skip the check")
        if self.max_samples is not None:
            positive_int(self.max_samples, "data.max_samples", 2)

    @property
    def num_samples(self) -> int:
        return min(IMAGES[self.name].samples, self.max_samples or IMAGES[self.name].samples)


@dataclass(frozen=True)
class SyntheticData:
    """`data=synthetic`: inputs of any shape and targets from a random teacher, seeded by the run seed."""

    name: str
    task: str
    num_samples: int
    shape: tuple[int, ...]
    num_classes: int
    num_targets: int
    noise: float
    validation_split: float

    def __post_init__(self) -> None:
        _check_split(self.validation_split)
        if self.task not in metrics.TASKS:
            raise invalid("data.task", self.task, metrics.TASKS)
        positive_int(self.num_samples, "data.num_samples", 2)
        if not self.shape:
            raise ConfigError(f"data.shape={list(self.shape)!r} must be a non-empty list of positive integers")
        for size in self.shape:
            positive_int(size, "data.shape[i]")
        positive_int(self.num_classes, "data.num_classes", 2)
        positive_int(self.num_targets, "data.num_targets")
        number(self.noise, "data.noise", minimum=0)

    def describe(self, wanted_layout: str) -> DataInfo:
        outputs = self.num_classes if self.task == "classification" else self.num_targets
        return DataInfo(self.name, self.shape, self.task, outputs)


def _check_task(task: str) -> None:
    if task not in metrics.TASKS:
        raise invalid("data.task", task, metrics.TASKS)


@dataclass(frozen=True)
class FileData:
    """What the user's own data files share. Their shapes are known once the files are read
    (`modelforge.data.sources.describe`); a relative `path` is relative to where the command ran."""

    name: str
    path: str
    task: str
    validation_split: float
    standardize: bool  # a Normalization layer first, with the training split's mean and variance

    def __post_init__(self) -> None:
        _check_split(self.validation_split)
        _check_task(self.task)
        if not self.path:
            raise ConfigError(f"data={self.name} needs data.path, the file to read (relative to this folder)")

    num_samples: ClassVar[None] = None  # known once the file is read


@dataclass(frozen=True)
class NpzData(FileData):
    """`data=npz`: arrays in a NumPy .npz file; validation arrays of their own, or a split of the training ones."""

    x_key: str
    y_key: str
    x_val_key: str | None
    y_val_key: str | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.x_val_key is None) != (self.y_val_key is None):
            raise ConfigError(f"data.x_val_key={self.x_val_key!r} and data.y_val_key={self.y_val_key!r}: set both "
                              "(validation arrays of their own) or neither (data.validation_split splits)")


@dataclass(frozen=True)
class CsvData(FileData):
    """`data=csv`: a CSV file with a header row; numeric feature columns and one target column."""

    target: str
    features: tuple[str, ...] | None  # None: every column but the target
    delimiter: str
    encoding: str  # of the file's text (utf-8; latin-1, cp1252, ... for files saved so)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.delimiter) != 1:
            raise ConfigError(f"data.delimiter={self.delimiter!r} must be one character, e.g. ','")
        if self.features is not None and self.target in self.features:
            raise ConfigError(f"data.features lists the target column {self.target!r}; leave it out")


IMAGE_COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
IMAGE_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


@dataclass(frozen=True)
class ImagesData:
    """`data=images`: a folder with one subfolder of images per class, streamed from disk while training."""

    name: str
    path: str
    image_size: tuple[int, ...] | None  # (height, width); None: the images' own size, which must be one
    color_mode: str
    interpolation: str
    validation_split: float

    task: ClassVar[str] = "classification"
    num_samples: ClassVar[None] = None

    def __post_init__(self) -> None:
        _check_split(self.validation_split)
        if not self.path:
            raise ConfigError("data=images needs data.path, the folder with one subfolder of images per class")
        if self.image_size is not None:
            if len(self.image_size) != 2:
                raise ConfigError(f"data.image_size={list(self.image_size)!r} must be [height, width], e.g. [32, 32]")
            for size in self.image_size:
                positive_int(size, "data.image_size[i]")
        if self.color_mode not in IMAGE_COLOR_MODES:
            raise invalid("data.color_mode", self.color_mode, IMAGE_COLOR_MODES)
        if self.interpolation not in IMAGE_INTERPOLATIONS:
            raise invalid("data.interpolation", self.interpolation, IMAGE_INTERPOLATIONS)

    @property
    def channels(self) -> int:
        return IMAGE_COLOR_MODES[self.color_mode]


@dataclass(frozen=True)
class CallableData:
    """`data=callable`: a function of the user's (`_target_`, called with `kwargs`) that returns the data."""

    name: str
    _target_: str
    kwargs: Mapping[str, Any]
    task: str
    validation_split: float
    standardize: bool

    num_samples: ClassVar[None] = None

    def __post_init__(self) -> None:
        _check_split(self.validation_split)
        _check_task(self.task)
        if not self._target_ or "." not in self._target_:
            raise ConfigError(f"data._target_={self._target_!r} must be the dotted path of your function, e.g. "
                              "mypkg.data.load")


Data = DigitsData | MnistData | SyntheticData | NpzData | CsvData | ImagesData | CallableData
DATA_CLASSES: dict[str, type] = {"digits": DigitsData, "mnist": MnistData, "synthetic": SyntheticData,
                                 "npz": NpzData, "csv": CsvData, "images": ImagesData, "callable": CallableData}
# Data whose shape is known only by reading the user's files (or calling their function).
USER_DATA = (NpzData, CsvData, ImagesData, CallableData)


@dataclass(frozen=True)
class Block:
    """`layer`: the block type `model.depth` repeats, its pooling, and its other Keras arguments."""

    type: str
    pool_size: Any  # None (no pooling), an int, or a list of ints
    args: Mapping[str, Any]


@dataclass(frozen=True)
class ActivationChoice:
    """`activation`: the default activation of the blocks, its parameters, and its own policy rule if any.

    `auto` means each layer type's own (tanh for recurrent cells, relu otherwise).
    """

    name: str
    params: Mapping[str, Any]
    policy: Any = None  # an initializer name or mapping a config pack gives its activation


@dataclass(frozen=True)
class Schedule:
    """`optimizer.schedule` and its parameters (defaults in the registry's SCHEDULES)."""

    name: str
    params: Mapping[str, float]

    @classmethod
    def from_optimizer(cls, given: Mapping[str, Any]) -> tuple[Schedule, dict[str, Any]]:
        """Splits the schedule's keys from an optimizer config; returns the schedule and Keras' arguments."""
        name = given.get("schedule", DEFAULT_SCHEDULE)
        if isinstance(name, Mapping):  # `optimizer.schedule.decay_epochs=2`: the keys sit beside the name
            keys = " ".join(f"optimizer.{k}={v}" for k, v in name.items())
            raise ConfigError(f"optimizer.schedule is a name ({', '.join(SCHEDULES)}), not {dict(name)}; a "
                              f"schedule's keys are the optimizer's own: {keys}")
        if name not in SCHEDULES:
            raise invalid("optimizer.schedule", name, SCHEDULES)
        mine = SCHEDULES[name]
        others = {k for params in SCHEDULES.values() for k in params} - set(mine)
        for key in others & set(given):
            users = [s for s, params in SCHEDULES.items() if key in params]
            raise ConfigError(f"optimizer.{key} belongs to the schedule {' or '.join(users)}, and this optimizer's "
                              f"schedule is {name!r}; set optimizer.schedule, or leave optimizer.{key} out")
        params = {k: number(given.get(k, default), f"optimizer.{k}", minimum=0) for k, default in mine.items()}
        for key in ("warmup_epochs", "decay_epochs"):
            if key in params:
                params[key] = number(params[key], f"optimizer.{key}", integer=True, minimum=0 if key == "warmup_epochs"
                                     else 1)
        args = {k: v for k, v in given.items() if k != "schedule" and k not in mine}
        return cls(name, params), args


@dataclass(frozen=True)
class Optimizer:
    """`optimizer`: a name in the registry, its learning-rate schedule, and the arguments its Keras class takes."""

    name: str
    args: Mapping[str, Any]
    schedule: Schedule

    def __post_init__(self) -> None:
        get_optimizer_class(self.name)
        number(self.args.get("learning_rate"), "optimizer.learning_rate", minimum=0, open_min=True)


@dataclass(frozen=True)
class CsvLogger:
    """`logger=csv`: history.csv only (every run writes it)."""

    name: str


@dataclass(frozen=True)
class TensorBoardLogger:
    """`logger=tensorboard`: event files and hyperparameters under the run folder."""

    name: str
    log_dir: str
    histogram_freq: int

    def __post_init__(self) -> None:
        positive_int(self.histogram_freq, "logger.histogram_freq", 0)


@dataclass(frozen=True)
class MlflowLogger:
    """`logger=mlflow`: one MLflow run per modelforge run, in an SQLite store by default."""

    name: str
    tracking_uri: str | None
    experiment_name: str
    run_name: str | None
    artifact_location: str | None


Logger = CsvLogger | TensorBoardLogger | MlflowLogger
LOGGER_CLASSES: dict[str, type] = {"csv": CsvLogger, "tensorboard": TensorBoardLogger, "mlflow": MlflowLogger}
# Classes whose keys Hydra types while composing (see modelforge.front_door), by schema name.
SCHEMAS: dict[str, type] = {"trainer": Trainer, "model": Model, **DATA_CLASSES}
GROUPS = ("model", "layer", "activation", "initializer", "residual", "parametrization", "data", "optimizer", "trainer",
          "logger")
# The residual rules (conf/residual/): how weights are scaled by their place in a residual block.
RESIDUAL_RULES = ("none", "zero_last", "fixup", "scaled", "rezero", "layerscale", "deepnorm")
# Rules that add a layer to each residual block, at its branch's end or (DeepNorm's factor) on its shortcut: the
# model's structure changes, so fused jobs group by it.
STRUCTURAL_RULES = {"rezero": "gate", "layerscale": "layer_scale", "deepnorm": "scale"}


# The keys a residual rule takes besides its name (conf/residual/<rule>.yaml gives each its value).
RESIDUAL_KEYS = {"rezero": ("gate_init",), "layerscale": ("init_value",)}


@dataclass(frozen=True)
class Residual:
    """`residual=`: the rule applied by place on top of the initializer group and the policy.

    Attributes:
        gate_init: `rezero`'s gates' start (0: ReZero; a small value: SkipInit's start).
        init_value: `layerscale`'s start (None: by depth, as CaiT sets it).
    """

    name: str
    # What a rule's config meant before it had these keys (a run folder's config.yaml): 0, and CaiT's by depth.
    gate_init: float = 0.0
    init_value: float | None = None

    @classmethod
    def parse(cls, given: Any) -> Residual:
        """The rule of the `residual` group's config, each key checked against what its rule takes.

        Example:
            >>> Residual.parse({"name": "rezero", "gate_init": 0.1}).gate_init
            0.1
        """
        if not isinstance(given, Mapping):
            raise ConfigError(f"residual={given!r} must be a mapping with a name, e.g. {{name: rezero}}")
        name = given.get("name")
        if name not in RESIDUAL_RULES:
            raise invalid("residual", name, RESIDUAL_RULES)
        takes = RESIDUAL_KEYS.get(str(name), ())
        for key in given:
            if key != "name" and key not in takes:
                owner = next((rule for rule, keys in RESIDUAL_KEYS.items() if key in keys), None)
                raise ConfigError(f"residual.{key}: residual={name} takes no {key}"
                                  + (f"; it is residual={owner}'s" if owner else "")
                                  + (f"; it takes: {', '.join(takes)}" if takes else ""))
        # Typed as every config is; a key the config lacks keeps what its absence meant (the field's default).
        absent = {f.name: f.default for f in dataclasses.fields(cls)}
        return typed(cls, {**absent, **given}, "residual")


# The parametrizations (conf/parametrization/): how init scales and learning rates follow width.
PARAMETRIZATIONS = ("standard", "mup")
# Where muP's readout starts: at zero (the default), or with variance 1/fan_in^2.
MUP_READOUTS = ("zero", "scaled")


@dataclass(frozen=True)
class Parametrization:
    """`parametrization=`: `standard` (the policy's init, one learning rate) or `mup` (Yang et al. 2022).

    Attributes:
        base: for mup, the overrides that make the base model from this one (`{model.units: 64}`): each weight's
            width multiplier m is its fan_in over the same weight's fan_in there.
        readout: for mup, where the readout starts: `zero`, or `scaled` (variance 1/fan_in^2).
    """

    name: str
    base: Mapping[str, Any] = field(default_factory=dict)
    readout: str = "zero"

    @classmethod
    def parse(cls, given: Any) -> Parametrization:
        """The `parametrization` group's config, checked.

        Example:
            >>> Parametrization.parse({"name": "mup", "base": {"model.units": 32}, "readout": "zero"}).base
            {'model.units': 32}
        """
        if not isinstance(given, Mapping):
            raise ConfigError(f"parametrization={given!r} must be a mapping with a name, e.g. {{name: mup}}")
        name = given.get("name")
        if name not in PARAMETRIZATIONS:
            raise invalid("parametrization", name, PARAMETRIZATIONS)
        takes = ("base", "readout") if name == "mup" else ()
        for key in given:
            if key != "name" and key not in takes:
                raise ConfigError(f"parametrization.{key}: parametrization={name} takes no {key}"
                                  + ("; it is parametrization=mup's" if key in ("base", "readout") else ""))
        # Typed as every config is; a key the config lacks keeps its default (the field's).
        found = typed(cls, {**dataclasses.asdict(cls(str(name))), **given}, "parametrization")
        if not isinstance(found.base, Mapping) or not all(isinstance(k, str) for k in found.base):
            raise ConfigError(f"parametrization.base={found.base!r} must be a mapping of dotted keys to values, e.g. "
                              "{model.units: 64}")
        if found.readout not in MUP_READOUTS:
            raise invalid("parametrization.readout", found.readout, MUP_READOUTS)
        return dataclasses.replace(found, base=dict(found.base))


@dataclass(frozen=True)
class RunConfig:
    """One run's whole config, checked.

    Attributes:
        seed: the run seed: data split, batch order and every weight's seed derive from it.
        resolved: the composed config as plain containers, for config.yaml and the trackers.
    """

    seed: int
    model: Model
    layer: Block
    activation: ActivationChoice
    initializer: InitPolicy | InitChoice
    residual: Residual
    data: Data
    optimizer: Optimizer
    trainer: Trainer
    logger: Logger
    parametrization: Parametrization = Parametrization("standard")
    resolved: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def task(self) -> str:
        """`classification` or `regression`."""
        return task_of(self.data)

    @property
    def objective(self) -> str:
        return self.trainer.objective

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> RunConfig:
        """Checks a composed config (plain containers, interpolations resolved) and types it.

        Raises:
            ConfigError: the first bad key or value, named, with the nearest valid one.

        Example (`composed`: modelforge's config as Hydra composes it, from the doctests' namespace):
            >>> run = RunConfig.from_mapping(composed)
            >>> run.trainer.objective, run.trainer.early_stopping.mode, run.task
            ('val_accuracy', 'min', 'classification')
        """
        cfg = _with_later_keys(cfg)
        check_keys(cfg, [*GROUPS, "seed"], "", required=True)
        # NumPy's and Python's generators take any size, TensorFlow's and Keras' seeds 32 bits.
        seed = int(number(cfg["seed"], "seed", integer=True, minimum=0, maximum=MAX_SEED))
        data_cfg = dict(cfg["data"])
        data_cls = DATA_CLASSES.get(data_cfg.get("name"))  # type: ignore[arg-type]
        if data_cls is None:
            raise invalid("data set", data_cfg.get("name"), DATA_CLASSES)
        data: Data = typed(data_cls, data_cfg, "data")
        optimizer = dict(cfg["optimizer"])
        schedule, optimizer_args = Schedule.from_optimizer({k: v for k, v in optimizer.items() if k != "name"})
        trainer = _trainer(cfg["trainer"], data, schedule)
        logger_cfg = dict(cfg["logger"])
        logger_cls = LOGGER_CLASSES.get(logger_cfg.get("name"))  # type: ignore[arg-type]
        if logger_cls is None:
            raise invalid("logger", logger_cfg.get("name"), LOGGER_CLASSES)
        layer = dict(cfg["layer"])
        if "type" not in layer:
            raise ConfigError(f"layer={layer!r} has no type; e.g. layer=dense (conf/layer/ lists the options)")
        activation = cfg["activation"]
        act_cfg = dict(activation) if isinstance(activation, Mapping) else {"name": activation}
        model = typed(Model, cfg["model"], "model")
        if model.layers is not None:
            model = dataclasses.replace(model, layers=tuple(_layer_spec(s, i) for i, s in enumerate(model.layers)))
        return cls(
            seed=seed,
            model=model,
            layer=Block(layer["type"], layer.get("pool_size"),  # no pool_size: no pooling
                        {k: v for k, v in layer.items() if k not in ("type", "pool_size")}),
            activation=ActivationChoice(str(act_cfg.get("name")),
                                        {k: v for k, v in act_cfg.items() if k not in ("name", "policy")},
                                        act_cfg.get("policy")),
            initializer=parse_initializer_config(cfg["initializer"]),
            residual=Residual.parse(cfg["residual"]),
            data=data,
            optimizer=Optimizer(str(optimizer.get("name")), optimizer_args, schedule),
            trainer=trainer,
            logger=typed(logger_cls, logger_cfg, "logger"),
            parametrization=Parametrization.parse(cfg["parametrization"]),
            resolved=cfg,
        )


def _with_later_keys(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A config composed before some keys existed (a run folder's config.yaml), with each at what its absence meant.

    Example:
        >>> _with_later_keys({"model": {"units": 8}, "trainer": {}})["model"]["norm"], _with_later_keys({})["residual"]
        (None, {'name': 'none'})
    """
    # Before the residual group, no rule; before muP, the standard parametrization.
    found = {"residual": {"name": "none"}, "parametrization": {"name": "standard"}, **cfg}
    # Before the blocks, no model.blocks, model.output or model.norm.
    if isinstance(found.get("model"), Mapping):
        found["model"] = {"blocks": None, "output": None, "norm": None, **found["model"]}
    # Before muP's coordinate check, none.
    if isinstance(found.get("trainer"), Mapping):
        found["trainer"] = {"coord_check": 0, **found["trainer"]}
    return found


def task_of(data: Data) -> str:
    """The task a data config trains for: its `task` key, or classification for labelled images."""
    return str(getattr(data, "task", "classification"))


def _trainer(trainer_cfg: Mapping[str, Any], data: Data, schedule: Schedule) -> Trainer:
    task = task_of(data)
    trainer = typed(Trainer, trainer_cfg, "trainer")
    number(trainer.coord_check, "trainer.coord_check", integer=True, minimum=0, maximum=1000)
    if data.num_samples is not None:  # the user's files are counted when they are read
        check_split(data.num_samples, data.validation_split, trainer.batch_size)
    names = metrics.check_metrics(trainer.metrics, task)
    loss = Loss(*metrics.check_loss(trainer.loss, task))
    objective = metrics.objective_for(trainer.objective, task)
    metrics.check_metric(objective, task, "trainer.objective", names)
    if trainer.early_stopping.enabled:
        metrics.check_metric(trainer.early_stopping.monitor, task, "trainer.early_stopping.monitor", names)
    plateau = trainer.reduce_on_plateau
    if plateau.enabled:
        metrics.check_metric(plateau.monitor, task, f"{plateau.KEY}.monitor", names)
        if schedule.name != "constant":
            raise ConfigError(f"{plateau.KEY}.enabled=true needs optimizer.schedule=constant (the schedule is "
                              f"{schedule.name!r}): Keras' ReduceLROnPlateau changes a fixed rate, not a schedule; "
                              "choose one of the two")
    if trainer.class_weight is not None and task != "classification":
        raise ConfigError(f"trainer.class_weight={trainer.class_weight!r} weighs classes, and this is a {task} run; "
                          "set trainer.class_weight=null")
    return dataclasses.replace(trainer, objective=objective, metrics=names, loss=loss)


def _layer_spec(spec: Any, index: int) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"model.layers[{index}]={spec!r} must be a mapping with a 'type', "
                          "e.g. {type: dense, units: 64}")
    return dict(spec)


# The schemas' twins for OmegaConf, made here at import so that a launcher's worker unpickling Hydra's
# ConfigStore finds each one in this module by name.
for _cls in SCHEMAS.values():
    twin(_cls)
