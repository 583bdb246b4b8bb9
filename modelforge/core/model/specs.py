"""Config -> validated layer specs with their shapes. Pure: no Keras.

The body comes either from `model.depth` blocks of the `layer` group's type, `model.units` wide, or from
the explicit `model.layers` list. A head chosen from the data follows: softmax over the classes, or a
linear layer for regression, with a Flatten before it when the body's output is not flat. Every spec's
input and output shape is worked out here, so shape mistakes fail before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelforge.core.checks import number, positive_int
from modelforge.core.config.datasets import DataInfo
from modelforge.core.config.schema import ActivationChoice, RunConfig, task_of
from modelforge.core.model.blocks import BLOCK, SHORTCUT, Defaults, expand, projection
from modelforge.core.model.graph import walk
from modelforge.core.model.layer_types import VALUE_SHAPE, LayerType, Weight, get_layer_type
from modelforge.core.names import HEAD, INPUTS
from modelforge.core.registry import get_activation
from modelforge.errors import ConfigError, closest

# Keys of a layer spec that modelforge reads itself; every other key goes to the Keras constructor.
_SPEC_KEYS = ("type", "name", "activation", "initializer", "inputs", BLOCK, SHORTCUT)
# Keys of the `layer` group that shape a block rather than its main layer.
_BLOCK_KEYS = ("type", "pool_size")
_RANK_NAMES = {2: "(timesteps, features): sequences", 3: "(height, width, channels): images",
               4: "(depth, height, width, channels): volumes"}
_LAYOUT_HINT = {
    "image": "use data=digits with data.layout=auto or image (8x8x1 images), or data=synthetic "
    "data.shape=[8,8,1]",
    "sequence": "use data=digits with data.layout=auto or sequence (8 rows of 8 pixels), or data=synthetic "
    "data.shape=[12,4]",
    "tokens": "use data=digits with data.layout=auto or tokens (64 grey levels 0..16, vocabulary 17)",
}


@dataclass(frozen=True)
class LayerSpec:
    """One layer, validated and shaped.

    Attributes:
        name: the Keras layer name; unique within the model.
        type: a name in `layer_types.LAYER_TYPES`.
        activation: the activation's name (None for layers without one).
        activation_params: parameters of a parametric activation (leaky_relu's negative_slope).
        initializer: the kernel initializer set on this layer itself, or None.
        activation_policy: the activation config's own policy rule (its `policy` key), or None.
        args: everything passed on to the Keras constructor (units/filters, kernel_size, ...).
        input_shape: one sample's input shape (a merge's: its first input's).
        output_shape: one sample's output shape.
        weights: the weights the layer creates.
        inputs: the layers it takes, by name (`inputs`: the model's own), in order; in a chain, the one before.
        block: the path of the `model.blocks` block that holds it (`stage1.res2`); None outside blocks.
    """

    name: str
    type: str
    activation: str | None
    activation_params: dict[str, Any]
    initializer: Any
    args: dict[str, Any]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weights: list[Weight] = field(default_factory=list)
    activation_policy: Any = None
    inputs: tuple[str, ...] = (INPUTS,)
    block: str | None = None

    @property
    def layer_type(self) -> LayerType:
        return get_layer_type(self.type)


AUTO_ACTIVATION = "auto"


def _activation(value: Any, default: ActivationChoice, kind: LayerType) -> tuple[str, dict[str, Any], Any]:
    """Reads an activation given as a name, a mapping with `name`, or nothing (then `default`).

    `auto` (the default option of the `activation` group) is the layer type's own: tanh for recurrent cells,
    relu otherwise. Returns the name, its parameters, and its own policy rule: an activation config may carry
    `policy` (an initializer name or mapping) so that a config pack adds an activation together with its rule.
    """
    if value is None:
        value = {"name": default.name, **default.params, "policy": default.policy}
    if isinstance(value, Mapping):
        name = value.get("name")
        given = {k: v for k, v in value.items() if k not in ("name", "policy")}
        rule = value.get("policy")
    else:
        name, given, rule = value, {}, None
    if name == AUTO_ACTIVATION:
        if given or rule is not None:
            raise ConfigError(f"activation {AUTO_ACTIVATION!r} takes no parameters or policy; name the activation "
                              f"itself (e.g. activation={kind.default_activation}) to set them")
        name = kind.default_activation
    act = get_activation(name)
    unknown = sorted(set(given) - set(act.params))
    if unknown:
        valid = ", ".join(act.params) or "none"
        raise ConfigError(f"activation {act.name!r} takes no parameter {', '.join(unknown)}; valid: {valid}")
    return act.name, {**act.params, **given}, rule


def _body_from_blocks(run: RunConfig) -> list[dict[str, Any]]:
    depth, units, block = run.model.depth, run.model.units, run.layer
    kind = get_layer_type(block.type)
    if kind.size_key is None:
        raise ConfigError(f"layer.type={kind.name!r} cannot make blocks: it has no units or filters")
    extra = dict(block.args)
    pool = block.pool_size
    dims = kind.name[-2:] if kind.name[-2:] in ("1d", "2d", "3d") else None
    body: list[dict[str, Any]] = []
    for i in range(1, depth + 1):
        spec = {"type": kind.name, "name": f"block{i}_{kind.name}", kind.size_key: units, **extra}
        if kind.recurrent:
            spec["return_sequences"] = i < depth
        body.append(spec)
        if pool and dims:
            body.append({"type": f"max_pooling{dims}", "name": f"block{i}_pool", "pool_size": pool})
    return body


def _body_from_list(layers: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
    body = []
    for i, item in enumerate(layers, start=1):
        spec = dict(item)
        try:
            get_layer_type(spec["type"])
        except ConfigError as err:
            raise ConfigError(f"model.layers[{i - 1}]: {err}") from None
        for key in (BLOCK, SHORTCUT):  # what model.blocks writes into the specs it makes
            if key in spec:
                raise ConfigError(f"model.layers[{i - 1}].{key}: a key model.blocks sets on the layers it makes; "
                                  "write the block in model.blocks, or leave the key out")
        spec.setdefault("name", f"layer{i}_{spec['type']}")
        body.append(spec)
    return body


def wanted_layout(body: Sequence[Mapping[str, Any]]) -> str:
    """The data layout the first shape-sensitive layer of the body asks for."""
    for spec in body:
        layout = get_layer_type(spec["type"]).layout
        if layout:
            return layout
    return "flat"


def raw_body(run: RunConfig) -> list[dict[str, Any]]:
    """The body as plain spec mappings, before shapes: `model.blocks`, `model.layers`, or `model.depth` blocks."""
    if run.model.blocks is not None:
        defaults = Defaults(run.layer.type, run.layer.args, run.model.units, run.model.norm)
        return expand(run.model.blocks, run.model.output, defaults)
    return _body_from_list(run.model.layers) if run.model.layers is not None else _body_from_blocks(run)


def _head(info: DataInfo) -> dict[str, Any]:
    activation = "softmax" if info.task == "classification" else "linear"
    return {"type": "dense", "name": HEAD, "units": info.num_outputs, "activation": activation}


# The user's own data sets, which modelforge cannot reshape: a hint for them names what works with what they have.
USER_DATA = ("csv", "npz", "callable", "images")


def _table_hint(shape: tuple[int, ...], kind: LayerType) -> str:
    """For the user's table (one row of features per sample) under a layer that needs images or sequences."""
    features = shape[0]
    square = int(features ** 0.5)
    grid = (f", or, if each row is a {square}x{square} image flattened, reshape it yourself into an npz "
            f"(x of shape [n, {square}, {square}, 1]) and use data=npz" if square * square == features > 1 else "")
    return (f"the data is a table of {features} features per sample, which {kind.name} cannot read; for a table "
            "use dense layers: layer=dense (the default), or model.layers of dense, dropout and normalization "
            "layers" + grid)


def _shape_error(spec: Mapping[str, Any], kind: LayerType, shape: tuple[int, ...], first: bool,
                 info: DataInfo) -> ConfigError:
    needs = _RANK_NAMES.get(kind.input_rank or 0, f"rank {kind.input_rank}")
    message = (
        f"layer {spec['name']!r} ({kind.name}) needs inputs of shape {needs}, but gets shape {list(shape)}"
    )
    if first and len(shape) == 1 and info.name in USER_DATA:
        message += f": {_table_hint(shape, kind)}"
    elif first and kind.layout in _LAYOUT_HINT:
        message += f": the data cannot be shaped that way; {_LAYOUT_HINT[kind.layout]}"
    else:
        message += "; add a layer that reshapes, or reorder model.layers"
    return ConfigError(message)


def _check_tokens(spec: Mapping[str, Any], info: DataInfo, first: bool) -> None:
    """An Embedding needs integer tokens: the first layer, on token data, with room for every token."""
    if not first or info.vocab_size is None:
        raise ConfigError(
            f"layer {spec['name']!r} (embedding) needs integer tokens as its input, so it must come first and "
            f"the data must be tokens; {_LAYOUT_HINT['tokens']}"
        )
    if isinstance(spec.get("input_dim"), int) and spec["input_dim"] < info.vocab_size:
        raise ConfigError(
            f"layer {spec['name']!r} (embedding): input_dim={spec['input_dim']} is smaller than the data's "
            f"vocabulary of {info.vocab_size} tokens; use input_dim: {info.vocab_size} or more"
        )


def _merged(spec: Mapping[str, Any], kind: LayerType, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The one input shape a layer reads (a merge's output shape is its own rule's)."""
    if kind.merge is not None:
        if len(shapes) < 2:
            raise ConfigError(f"layer {spec['name']!r} ({kind.name}) takes two or more inputs; name them, e.g. "
                              "inputs: [block1, block2]")
        try:
            return kind.merge(shapes, _args(spec))
        except ConfigError as err:
            raise ConfigError(f"layer {spec['name']!r} ({kind.name}): {err}") from None
    if kind.attends and len(shapes) == 2:  # a query and the value it attends to
        if len(shapes[1]) != len(shapes[0]):
            raise ConfigError(f"layer {spec['name']!r} ({kind.name}) attends from queries of shape "
                              f"{list(shapes[0])} to values of shape {list(shapes[1])}; both must be sequences "
                              "(steps, features)")
        return shapes[0]
    if len(shapes) != 1:
        takes = "one input, or a query and a value" if kind.attends else "one input"
        raise ConfigError(f"layer {spec['name']!r} ({kind.name}) takes {takes}, not {len(shapes)}; merge them "
                          "first with an add or concatenate layer")
    return shapes[0]


def _resolve(spec: dict[str, Any], shapes: list[tuple[int, ...]], default_act: ActivationChoice,
             info: DataInfo, inputs: tuple[str, ...] = (INPUTS,)) -> LayerSpec:
    kind = get_layer_type(spec["type"])
    name = spec["name"]
    first = INPUTS in inputs
    shape = _merged(spec, kind, shapes)  # a merge's output shape, which its table entry passes on
    if kind.input_rank is not None and len(shape) != kind.input_rank:
        raise _shape_error(spec, kind, shape, first, info)
    if kind.layout == "tokens":
        _check_tokens(spec, info, first)
        spec = {**spec, "input_dim": spec.get("input_dim", info.vocab_size)}  # by default, the data's vocabulary
    elif first and info.vocab_size is not None:
        raise ConfigError(f"data.layout=tokens gives integer tokens, which only an embedding layer can take first; "
                          f"layer {name!r} is {kind.name}")
    if kind.size_key:
        if kind.size_key not in spec:
            raise _missing(spec, kind.size_key, kind, "units: 64" if kind.size_key == "units" else "filters: 32")
        positive_int(spec.get(kind.size_key), f"model.layers[{name}].{kind.size_key}")
    if kind.name.startswith(("conv", "depthwise_conv", "separable_conv")) and "kernel_size" not in spec:
        raise _missing(spec, "kernel_size", kind, "kernel_size: 3")
    if kind.name == "dropout":
        number(spec.get("rate"), f"model.layers[{name}].rate", minimum=0, maximum=1, open_max=True)
    activation: str | None = None
    act_params: dict[str, Any] = {}
    act_rule: Any = None
    if kind.has_activation:
        try:
            activation, act_params, act_rule = _activation(spec.get("activation"), default_act, kind)
        except ConfigError as err:
            raise ConfigError(f"layer {name!r}: {err}") from None
    elif spec.get("activation") is not None:
        raise ConfigError(f"layer {name!r} ({kind.name}) takes no activation")
    args = _args(spec)
    try:
        out = kind.output_shape(shape, args)
        weights = kind.weights(shape, {**args, VALUE_SHAPE: shapes[-1]} if kind.attends else args)
    except ConfigError as err:
        raise ConfigError(f"layer {name!r} ({kind.name}): {err}") from None
    if spec.get("initializer") is not None and not any(w.role == "kernel" for w in weights):
        raise ConfigError(f"layer {name!r} ({kind.name}) has no kernel to take an initializer")
    return LayerSpec(name, kind.name, activation, act_params, spec.get("initializer"), args, shapes[0], out,
                     weights, act_rule, inputs, spec.get(BLOCK))


def _missing(spec: Mapping[str, Any], key: str, kind: LayerType, example: str) -> ConfigError:
    """A required argument is missing: name it, and the given key that was probably meant."""
    near = closest(key, [k for k in spec if k not in _SPEC_KEYS])
    meant = f"; did you mean {key!r} where it says {near!r}?" if near else ""
    return ConfigError(f"layer {spec['name']!r} ({kind.name}) needs {key}, e.g. {example}{meant}")


def _args(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _SPEC_KEYS}


def _described(run: RunConfig, layout: str, input_shape: tuple[int, ...] | None) -> DataInfo:
    """The config's own description of its data; the user's data without one is described by its shape."""
    describe = getattr(run.data, "describe", None)
    if describe is not None:
        return describe(layout)  # type: ignore[no-any-return]
    if input_shape is None:
        raise ConfigError(f"data={run.data.name} is described by reading it; plan it with modelforge.plan(cfg), "
                          "or give input_shape")
    # Without reading the data: its outputs are unknown, so the head is sized as a binary classifier's.
    return DataInfo(run.data.name, input_shape, task_of(run.data), 2 if task_of(run.data) == "classification" else 1)


def layer_specs(run: RunConfig, input_shape: tuple[int, ...] | None = None,
                info: DataInfo | None = None) -> tuple[list[LayerSpec], DataInfo]:
    """Turns a run config into shaped layer specs, body then head.

    Args:
        run: the checked run config.
        input_shape: one sample's shape, for data the config does not describe (None: the data's own).
        info: the data's description, for the user's data, which is described by reading it
            (`modelforge.data.sources.describe`); None: the config's own description.

    Returns:
        The specs and the data description they were shaped for.

    Raises:
        ConfigError: a bad type, size, activation, or a shape the data cannot give.
    """
    body = raw_body(run)
    if info is None:
        info = _described(run, wanted_layout(body), input_shape)
    if input_shape is not None:
        if not input_shape:
            raise ConfigError(f"input_shape={input_shape!r} must be a non-empty tuple of positive integers")
        for size in input_shape:
            positive_int(size, f"input_shape={input_shape!r}: each size")
        info = replace(info, input_shape=tuple(input_shape), vocab_size=None)
    default_act = run.activation
    specs: list[LayerSpec] = []

    def shaped(node: _Pending, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        inputs = node.inputs
        if SHORTCUT in node.spec and (shortcut := projection(node.spec, shapes[0], shapes[1])) is not None:
            specs.append(_resolve(shortcut, shapes[:1], default_act, info, shortcut["inputs"]))
            shapes, inputs = [specs[-1].output_shape, shapes[1]], (shortcut["name"], inputs[1])
        specs.append(_resolve(node.spec, shapes, default_act, info, inputs))
        return specs[-1].output_shape

    nodes = _nodes(body)
    shape = walk(nodes, {INPUTS: info.input_shape}, shaped)[nodes[-1].name]
    last = nodes[-1].name
    if len(shape) > 1:
        specs.append(_resolve({"type": "flatten", "name": "flatten"}, [shape], default_act, info, (last,)))
        shape, last = specs[-1].output_shape, "flatten"
    specs.append(_resolve(_head(info), [shape], default_act, info, (last,)))
    return specs, info


@dataclass(frozen=True)
class _Pending:
    """A body layer before its shape is known: its spec mapping and the layers it takes."""

    name: str
    inputs: tuple[str, ...]
    spec: dict[str, Any]


def _nodes(body: Sequence[dict[str, Any]]) -> list[_Pending]:
    """The body as a graph: each layer takes the layers its `inputs` name, else the one before it; names are
    unique, and every layer but the last feeds a later one (a layer whose output nothing takes would train
    nothing)."""
    nodes: list[_Pending] = []
    for spec in body:
        if spec["name"] in (INPUTS, *(n.name for n in nodes)):
            raise ConfigError(f"two layers are named {spec['name']!r}; layer names must be unique (and not "
                              f"{INPUTS!r}, the model's inputs)")
        given = spec.get("inputs")
        if given is None:
            inputs = (nodes[-1].name if nodes else INPUTS,)
        elif isinstance(given, (list, tuple)) and given and all(isinstance(n, str) for n in given):
            inputs = tuple(given)
        else:
            raise ConfigError(f"layer {spec['name']!r}: inputs={given!r} must be a list of earlier layers' names "
                              f"(or {INPUTS!r}, the model's inputs)")
        nodes.append(_Pending(spec["name"], inputs, spec))
    walk(nodes, {INPUTS: None}, lambda node, xs: None)  # each input names an earlier layer
    taken = {name for node in nodes for name in node.inputs}
    for node in nodes[:-1]:
        if node.name not in taken:
            raise ConfigError(f"layer {node.name!r}: no later layer takes its output, so it would train nothing; "
                              "name it in a later layer's inputs, or leave it out")
    return nodes
