"""`model.blocks` -> the body's layer specs: a graph of named blocks, expanded into layers named by block path.

A block is a mapping of these keys (all optional but one of `layers`, `blocks`, `merge`):

- `layers`: a short list of layer specs, as `model.layers` takes them; a spec without `type` is the `layer` group's
  (with its arguments, e.g. a conv's kernel_size), one without a width is `model.units` wide, one without
  `activation` takes the `activation` group's, and one without `name` is named by its kind and count (`conv1`).
- `blocks`: a mapping of blocks nested in this one (a stage of residual blocks), instead of `layers`.
- `repeat: N`: N copies in a chain, named `<block>1` ... `<block>N`; naming the block names its last copy.
- `input`: the block or layer it reads (by name, or a list of names for a merge, or a query and the value for a
  block that starts with attention); by default the block before it in its mapping (the first block of the model
  reads the model's inputs, a nested first block its parent's).
- `residual: true`: the block is a branch `f(x)` added to its input, `x + f(x)`. Where the branch changes the
  shape, the input goes through a projection (a 1x1 conv for images and sequences, a dense layer for flat
  data, linear and without bias), chosen from the shapes when the specs are shaped (`specs.layer_specs`).
- `norm: pre | post`: with `residual: true`, a layer normalization (named `norm`) at the branch's start (pre-LN,
  `x + f(LN(x))`) or right after the add (post-LN, `LN(x + f(x))`); by default `model.norm`'s, else none.
- `after`: an activation after the block (after its add: ResNet v1's `relu`).
- `merge: add | concatenate`: the block starts by merging the layers its `input` list names (a U-Net skip).

Each layer is named by its path, `stage1.res2.conv1` (Keras layer names cannot hold `/`, so blocks' names cannot
hold `.` or `/`); its weights' seeds derive from that path, so a sweep over `repeat` keeps the first blocks'
seeds. Graph mistakes (an unknown name, a cycle, a block nothing reads) are refused here, before any shape.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelforge.core.checks import positive_int
from modelforge.core.config.schema import MAX_LAYERS, NORM_PLACES
from modelforge.core.model.layer_types import get_layer_type
from modelforge.core.names import INPUTS
from modelforge.errors import ConfigError, closest, invalid

BLOCK_KEYS = ("layers", "blocks", "repeat", "input", "residual", "norm", "after", "merge")
MERGES = ("add", "concatenate")
# A layer spec's keys that say where it sits in a block; the builder passes neither to Keras.
BLOCK = "block"
SHORTCUT = "shortcut"
# Short names of layer kinds for the default names of a block's layers (`conv1`, `bn2`); others keep theirs.
_SHORT = {"batch_normalization": "bn", "layer_normalization": "ln", "layer_scale": "scale",
          "multi_head_attention": "mha", "position_embedding": "pos"}


@dataclass(frozen=True)
class Defaults:
    """What a block's layer spec takes when it does not say: the `layer` group's type and arguments, and the
    model's width (`model.units`); and where a residual block puts its normalization (`model.norm`)."""

    type: str
    args: Mapping[str, Any]
    units: int
    norm: str | None = None


@dataclass
class _Expansion:
    """The nodes made so far (spec mappings whose `inputs` may still hold the names a config gave), what each block
    and layer path's output is, and the blocks as the config names them (for the graph's refusals)."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)


def short_name(kind: str) -> str:
    """A layer kind's short name in default layer names.

    Example:
        >>> short_name("conv2d"), short_name("batch_normalization"), short_name("dense")
        ('conv', 'bn', 'dense')
    """
    if kind.startswith(("conv1d", "conv2d", "conv3d")) and "transpose" not in kind:
        return "conv"
    return _SHORT.get(kind, kind)


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name or "." in name or "/" in name or name == INPUTS:
        raise ConfigError(f"{where}: the name {name!r} must be a non-empty name without '.' or '/' (the path "
                          f"separators of layer names, e.g. stage1.res2.conv1) and not {INPUTS!r}")
    return name


def _block(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}={value!r} must be a mapping of block keys ({', '.join(BLOCK_KEYS)})")
    for key in value:
        if key not in BLOCK_KEYS:
            near = closest(key, BLOCK_KEYS)
            raise ConfigError(f"unknown block key '{where}.{key}'" + (f" (did you mean '{where}.{near}'?)" if near
                              else "") + f"; a block takes: {', '.join(BLOCK_KEYS)}")
    bodies = [key for key in ("layers", "blocks") if value.get(key) is not None]
    if len(bodies) == 2:
        raise ConfigError(f"{where} has both layers and blocks; a block holds one of them (nest the layers in a "
                          "block of their own)")
    if not bodies and value.get("merge") is None:
        raise ConfigError(f"{where} has no layers; give it layers: [{{type: dense}}], blocks: {{...}}, or "
                          "merge: add with input: [a, b]")
    if value.get("merge") is not None and value["merge"] not in MERGES:
        raise ConfigError(f"{where}.merge={value['merge']!r} must be one of {', '.join(MERGES)}"
                          + (f" (did you mean {near!r}?)" if (near := closest(value["merge"], MERGES)) else ""))
    if value.get("residual") not in (None, True, False):
        raise ConfigError(f"{where}.residual={value['residual']!r} must be true or false")
    if value.get("residual") and value.get("merge") is not None:
        raise ConfigError(f"{where} has residual: true and merge: {value['merge']}; a residual block adds its one "
                          "input to its branch, so give the merge a block of its own before it")
    if value.get("norm") is not None:
        if value["norm"] not in NORM_PLACES:
            raise invalid(f"{where}.norm", value["norm"], [*NORM_PLACES, "null"])
        if not value.get("residual"):
            raise ConfigError(f"{where}.norm={value['norm']} places a residual block's normalization, and {where} "
                              "has no residual: true; add it, or put a layer_normalization in its layers")
    if value.get("repeat") is not None:
        positive_int(value["repeat"], f"{where}.repeat")
    return value


def _attends(block: Mapping[str, Any]) -> bool:
    """Whether the block's first layer is an attention layer (which takes a query and a value: two inputs)."""
    layers = block.get("layers")
    first = layers[0] if isinstance(layers, (list, tuple)) and layers else None
    return isinstance(first, Mapping) and first.get("type") == "multi_head_attention"


def _inputs(value: Any, where: str, merge: Any, attends: bool = False) -> tuple[str, ...] | None:
    """The names a block's `input` gives (None: the block before it); two for a block that starts with attention
    (its query, then the value it attends to)."""
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else ()
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}.input={value!r} must be a block or layer name, or a list of them")
    if attends and merge is None and len(names) == 2:
        return names
    if merge is None and len(names) > 1:
        raise ConfigError(f"{where}.input names {len(names)} blocks ({', '.join(names)}); a block reads one, "
                          "or merges several with merge: add or merge: concatenate")
    if merge is not None and len(names) < 2:
        raise ConfigError(f"{where}.merge={merge} takes two or more inputs; name them, e.g. input: [a, b]")
    return names


def _layer(spec: Any, where: str, defaults: Defaults, counts: dict[str, int]) -> dict[str, Any]:
    """A block's layer spec with what it does not say taken from the defaults, and its own name in the block."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}={spec!r} must be a layer spec mapping, e.g. {{type: dense, units: 64}}")
    found = dict(spec)
    for key in ("inputs", BLOCK, SHORTCUT):
        if key in found:
            raise ConfigError(f"{where}.{key}: a block's layers form a chain; name what the block reads in its "
                              "input key, or give the layer a block of its own")
    if found.get("type") is None:
        found = {**defaults.args, **found, "type": defaults.type}
    try:
        kind = get_layer_type(found["type"])
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if kind.size_key and kind.size_key not in found:
        found[kind.size_key] = defaults.units
    short = short_name(kind.name)
    counts[short] = counts.get(short, 0) + 1
    name = found.get("name", f"{short}{counts[short]}")
    found["name"] = _check_name(name, f"{where}.name")
    return found


def expand(blocks: Any, output: str | None, defaults: Defaults) -> list[dict[str, Any]]:
    """The body's layer specs, in an order where each comes after what it reads, the output block's last.

    Raises:
        ConfigError: a bad block key or name, an unknown input, a cycle, or a block nothing reads.

    Example:
        >>> body = expand({"stem": {"layers": [{"type": "dense"}]},
        ...                "res": {"repeat": 2, "residual": True, "layers": [{}, {"activation": "linear"}]}},
        ...               None, Defaults("dense", {}, 8))
        >>> [(s["name"], s["inputs"]) for s in body][2:4]
        [('res1.dense2', ('res1.dense1',)), ('res1.add', ('stem.dense1', 'res1.dense2'))]
        >>> body[3]["shortcut"], body[-1]["name"]
        ('res1.shortcut', 'res2.add')
    """
    if not isinstance(blocks, Mapping) or not blocks:
        raise ConfigError(f"model.blocks={blocks!r} must be a non-empty mapping of named blocks, e.g. "
                          "{stem: {layers: [{type: dense}]}}")
    made = _Expansion()
    _children(blocks, "", [INPUTS], defaults, made, "model.blocks")
    ordered = _ordered([_resolved(spec, made) for spec in made.nodes])
    return _reaching(ordered, _output(output, ordered, made))


@dataclass(frozen=True)
class _Name:
    """A name a config gave for what a block reads, to be found from the block's scope outwards."""

    text: str
    scope: str
    where: str


def _children(blocks: Mapping[str, Any], parent: str, inputs: list[Any], defaults: Defaults, made: _Expansion,
              where: str) -> str:
    """Expands a mapping of blocks in a chain from `inputs`; returns the last one's output node."""
    current = inputs
    for name, value in blocks.items():
        here = f"{where}.{_check_name(name, where)}"
        made.written.append(f"{parent}.{name}" if parent else name)
        block = _block(value, here)
        given = _inputs(block.get("input"), here, block.get("merge"), _attends(block))
        if given is not None:
            current = [_Name(text, parent, here) for text in given]
        repeat = block.get("repeat")
        copies = [f"{name}{i}" for i in range(1, repeat + 1)] if repeat is not None else [name]
        for copy in copies:
            path = f"{parent}.{copy}" if parent else copy
            if path in made.outputs:
                raise ConfigError(f"{here}: two blocks or layers are named {path!r} (a block with repeat: N "
                                  f"names its copies {name}1 ... {name}N); rename one")
            made.outputs[path] = _copy(block, path, current, defaults, made, here)
            current = [made.outputs[path]]
        if repeat is not None:
            made.outputs.setdefault(f"{parent}.{name}" if parent else name, current[0])
    return str(current[0])


def _copy(block: Mapping[str, Any], path: str, inputs: list[Any], defaults: Defaults, made: _Expansion,
          where: str) -> str:
    """Expands one copy of a block at `path` reading `inputs`; returns its output node."""
    current = list(inputs)

    def add(spec: dict[str, Any], reads: list[Any] | None = None) -> None:
        nonlocal current
        spec.update(name=f"{path}.{spec['name']}", inputs=current if reads is None else reads, block=path)
        if spec["name"] in made.outputs:
            raise ConfigError(f"{where}: two layers are named {spec['name']!r}; give them different names")
        made.nodes.append(spec)
        made.outputs[spec["name"]] = spec["name"]
        current = [spec["name"]]
        if len(made.nodes) > MAX_LAYERS:
            raise ConfigError(f"model.blocks makes more than the {MAX_LAYERS:,} layers a model may have")

    norm = block.get("norm", defaults.norm) if block.get("residual") else None
    if block.get("merge") is not None:
        add({"type": block["merge"], "name": block["merge"]})
    if norm == "pre":
        add({"type": "layer_normalization", "name": "norm"})
    if block.get("layers") is not None:
        layers = block["layers"]
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ConfigError(f"{where}.layers={layers!r} must be a non-empty list of layer specs")
        counts: dict[str, int] = {}
        for i, spec in enumerate(layers):
            add(_layer(spec, f"{where}.layers[{i}]", defaults, counts))
    elif block.get("blocks") is not None:
        current = [_children(_block_map(block["blocks"], where), path, current, defaults, made, f"{where}.blocks")]
    if block.get("residual"):
        # The stream first, then the branch, as Keras' ResNets order an add's inputs.
        add({"type": "add", "name": "add", SHORTCUT: f"{path}.{SHORTCUT}"}, [inputs[0], *current])
    if norm == "post":
        add({"type": "layer_normalization", "name": "norm"})
    if block.get("after") is not None:
        add({"type": "activation", "name": "after", "activation": block["after"]})
    return str(current[0])


def _block_map(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where}.blocks={value!r} must be a non-empty mapping of named blocks")
    return value


def _resolved(spec: dict[str, Any], made: _Expansion) -> dict[str, Any]:
    """The spec with each input a node's name: a name a config gave is looked up from its block's scope out."""
    found = []
    for item in spec["inputs"]:
        if not isinstance(item, _Name):
            found.append(item)
            continue
        parts = item.scope.split(".") if item.scope else []
        for end in range(len(parts), -1, -1):
            key = ".".join([*parts[:end], item.text])
            if key in made.outputs:
                found.append(made.outputs[key])
                break
        else:
            near = closest(item.text, made.outputs)
            raise ConfigError(f"{item.where}.input={item.text!r} names no block or layer"
                              + (f" (did you mean {near!r}?)" if near else "")
                              + f"; blocks: {', '.join(made.written)}")
    return {**spec, "inputs": tuple(found)}


def _ordered(nodes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes in an order where each comes after what it reads (the config's order where it can), or a
    refusal naming the blocks that read each other in a cycle."""
    position = {spec["name"]: i for i, spec in enumerate(nodes)}
    waiting = {spec["name"]: {i for i in spec["inputs"] if i != INPUTS} for spec in nodes}
    readers: dict[str, list[str]] = {}
    for spec in nodes:
        for name in waiting[spec["name"]]:
            readers.setdefault(name, []).append(spec["name"])
    ready = [position[name] for name, needs in waiting.items() if not needs]
    heapq.heapify(ready)
    found = []
    while ready:
        spec = nodes[heapq.heappop(ready)]
        found.append(spec)
        for reader in readers.get(spec["name"], ()):
            waiting[reader].discard(spec["name"])
            if not waiting[reader]:
                heapq.heappush(ready, position[reader])
    if len(found) < len(nodes):
        stuck = dict.fromkeys(spec[BLOCK] for spec in nodes if waiting[spec["name"]])
        raise ConfigError(f"model.blocks: blocks {', '.join(stuck)} read each other in a cycle; a block reads "
                          "only blocks or layers that come before it in the graph")
    return found


def _output(output: str | None, nodes: Sequence[dict[str, Any]], made: _Expansion) -> dict[str, Any]:
    """The node that feeds the head: `model.output`'s, or the one block's no other block reads."""
    if output is not None:
        if output not in made.outputs:
            near = closest(output, made.outputs)
            raise ConfigError(f"model.output={output!r} names no block or layer" + (f" (did you mean {near!r}?)"
                              if near else "") + f"; blocks: {', '.join(made.written)}")
        return next(spec for spec in nodes if spec["name"] == made.outputs[output])
    taken = {name for spec in nodes for name in spec["inputs"]}
    ends = [spec for spec in nodes if spec["name"] not in taken]
    blocks = list(dict.fromkeys(spec[BLOCK] for spec in ends))
    if len(blocks) > 1:
        raise ConfigError(f"model.blocks: blocks {', '.join(blocks)} are read by no other block; name the one "
                          f"that feeds the head, e.g. model.output={blocks[-1]}, and have the others read by a block")
    return ends[-1]


def _reaching(nodes: Sequence[dict[str, Any]], last: dict[str, Any]) -> list[dict[str, Any]]:
    """The specs, refusing a block whose output never reaches `last` (it would train nothing)."""
    needed = {last["name"]}
    for spec in reversed(nodes):
        if spec["name"] in needed:
            needed.update(spec["inputs"])
    idle = list(dict.fromkeys(spec[BLOCK] for spec in nodes if spec["name"] not in needed))
    if idle:
        raise ConfigError(f"model.blocks: block {idle[0]!r} is not on the way to the head (model.output: "
                          f"{last[BLOCK]!r}), so it would train nothing; have a later block read it, or leave "
                          "it out")
    return list(nodes)


def projection(add: Mapping[str, Any], stream: tuple[int, ...], branch: tuple[int, ...]) -> dict[str, Any] | None:
    """The layer that takes a residual block's stream to its branch's shape (None: the shapes match already).

    A dense layer for flat data; a 1x1 convolution for sequences, images and volumes, strided where the branch
    shrinks the steps or the image. Linear and without bias: the branch carries the block's nonlinearity.

    Example:
        >>> add = {"name": "res1.add", "shortcut": "res1.shortcut", "block": "res1", "inputs": ("stem", "res1.conv2")}
        >>> projection(add, (8, 8, 16), (4, 4, 32))["strides"], projection(add, (16,), (32,))["type"]
        ([2, 2], 'dense')
    """
    if stream == branch:
        return None
    spec = {"name": add[SHORTCUT], "inputs": (add["inputs"][0],), BLOCK: add.get(BLOCK), "activation": "linear",
            "use_bias": False}
    if len(stream) == len(branch) == 1:
        return {**spec, "type": "dense", "units": branch[0]}
    strides = [_stride(a, b) for a, b in zip(stream[:-1], branch[:-1], strict=False)]
    if len(stream) != len(branch) or len(stream) > 4 or None in strides:
        raise ConfigError(f"block {add.get(BLOCK)!r}: its branch turns shape {list(stream)} into {list(branch)}, and "
                          "no projection of the shortcut matches that (a 1x1 convolution can change the channels "
                          "and shrink each side by a whole stride); keep the branch's rank and sizes, or set "
                          "residual: false")
    return {**spec, "type": f"conv{len(stream) - 1}d", "filters": branch[-1], "kernel_size": 1, "strides": strides}


def _stride(size: int, out: int) -> int | None:
    """The stride of a 1x1 convolution (no padding) that takes `size` steps to `out`, or None."""
    for stride in range(1, size + 1):
        if -(-size // stride) == out:
            return stride
    return None
