"""Each layer's place in a residual model, read from the graph's structure alone (never from names a user typed).

A residual block is an `add` of two inputs where one path is a branch `f(x)` and the other the stream `x`: either
one input is an ancestor of the other (an identity shortcut), or both leave one common node, and the side with
fewer kernels is the shortcut (a projection; on a tie the first input, as Keras' ResNets order an add's
inputs). In a branch, the kernel layers are `branch_in`, `branch_mid` and
`branch_out` in order (one kernel alone is `branch_out`), a normalization after the last kernel is `branch_out`
too, a gate or LayerScale is `gate`; a projection's kernel is `shortcut`; the head is `readout`; every other layer
with weights is on the stream, `stem`. `L` is the model's number of residual branches and `m` a branch's number
of kernel layers: what depth-aware rules (Fixup, depth-scaled branch ends) read. A model with no residual block
has no places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelforge.core.model.specs import LayerSpec
from modelforge.core.names import HEAD, INPUTS

# Layer types that scale a branch's output by learned factors.
GATES = ("gate", "layer_scale")
NORMS = ("batch_normalization", "layer_normalization")
PLACES = ("stem", "branch_in", "branch_mid", "branch_out", "shortcut", "gate", "readout")


@dataclass(frozen=True)
class Block:
    """One residual block: its `add` layer, the input that ends its branch and the one that carries the stream."""

    name: str
    branch_end: str
    stream: str


@dataclass(frozen=True)
class Place:
    """Where one layer sits.

    Attributes:
        place: one of `PLACES`.
        block: the residual block (its `add` layer's name) whose branch or shortcut holds it; None on the stream.
        branches: L, the residual branches of the whole model.
        depth: m, the kernel layers of its block's branch (0 outside a block).
    """

    place: str
    block: str | None
    branches: int
    depth: int


def _ancestors(specs: Sequence[LayerSpec]) -> dict[str, set[str]]:
    """Each node's ancestors (the model's inputs among them), in one pass over the specs' order."""
    found: dict[str, set[str]] = {INPUTS: set()}
    for spec in specs:
        found[spec.name] = set().union(*({i, *found[i]} for i in spec.inputs))
    return found


def _kernels(names: set[str], specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    return [s for s in specs if s.name in names and any(w.role == "kernel" for w in s.weights)]


def _sides(add: LayerSpec, up: dict[str, set[str]], specs: Sequence[LayerSpec]) -> tuple[set[str], set[str]] | None:
    """The branch's nodes and the shortcut's (empty for an identity), or None when the add is no residual."""
    if len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
        return None
    a, b = add.inputs
    for stream, end in ((a, b), (b, a)):
        if stream in up[end]:
            return {n for n in up[end] | {end} if stream in up[n]}, set()
    common = (up[a] | {a}) & (up[b] | {b})
    order = {INPUTS: -1, **{s.name: i for i, s in enumerate(specs)}}
    source = max(common, key=order.__getitem__)
    side_a, side_b = ({n for n in up[x] | {x} if source in up[n]} for x in (a, b))
    fewer_a = len(_kernels(side_a, specs)) <= len(_kernels(side_b, specs))
    return (side_b, side_a) if fewer_a else (side_a, side_b)


def _branch_places(branch: set[str], specs: Sequence[LayerSpec]) -> dict[str, str]:
    kernels = [s.name for s in _kernels(branch, specs)]
    found = {name: "branch_mid" for name in kernels}
    if kernels:
        found[kernels[0]] = "branch_in"
        found[kernels[-1]] = "branch_out"
    order = [s.name for s in specs]
    last = order.index(kernels[-1]) if kernels else -1
    for spec in specs:
        if spec.name in branch and spec.type in GATES:
            found[spec.name] = "gate"
        elif spec.name in branch and spec.type in NORMS:
            found[spec.name] = "branch_out" if order.index(spec.name) > last else "branch_mid"
    return found


def residual_blocks(specs: Sequence[LayerSpec]) -> list[Block]:
    """The model's residual blocks in order, each with the add's input that ends its branch and the stream's."""
    up = _ancestors(specs)
    found = []
    for add in specs:
        sides = _sides(add, up, specs) if add.type == "add" else None
        if sides is not None:
            branch_end = next(i for i in add.inputs if i in sides[0])
            found.append(Block(add.name, branch_end, next(i for i in add.inputs if i != branch_end)))
    return found


def with_branch_ends(specs: Sequence[LayerSpec], kind: str) -> list[LayerSpec]:
    """The specs with a layer of `kind` (`gate`, `layer_scale`) at each residual branch's end: named
    `<branch end>_<kind>`, right after the branch's last layer, and read by the block's add in its place.

    Example:
        >>> [(s.name, s.inputs) for s in with_branch_ends(_example_graph(), "gate")][2:4]
        [('f_gate', ('f',)), ('res', ('stem', 'f_gate'))]
    """
    from dataclasses import replace

    from modelforge.core.model.layer_types import get_layer_type

    ends = {b.branch_end: b.name for b in residual_blocks(specs)}
    found: list[LayerSpec] = []
    for spec in specs:
        if spec.name in ends.values():
            spec = replace(spec, inputs=tuple(f"{i}_{kind}" if i in ends and ends[i] == spec.name else i
                                              for i in spec.inputs))
        found.append(spec)
        if spec.name in ends:
            shape = spec.output_shape
            found.append(LayerSpec(f"{spec.name}_{kind}", kind, None, {}, None, {}, shape, shape,
                                   get_layer_type(kind).weights(shape, {}), None, (spec.name,)))
    return found


def _example_graph() -> list[LayerSpec]:
    """A stem and one block of one kernel, for the examples."""
    from modelforge.core.model.layer_types import Weight

    kernel = [Weight("kernel", (4, 4), "kernel", "kernel_initializer", (4, 4))]
    return [LayerSpec("stem", "dense", None, {}, None, {}, (4,), (4,), kernel, None, (INPUTS,)),
            LayerSpec("f", "dense", None, {}, None, {}, (4,), (4,), kernel, None, ("stem",)),
            LayerSpec("res", "add", None, {}, None, {}, (4,), (4,), [], None, ("stem", "f"))]


def places(specs: Sequence[LayerSpec]) -> dict[str, Place]:
    """Every layer's place, by layer name (empty for a model without residual blocks).

    Example:
        >>> from modelforge.core.model.specs import LayerSpec
        >>> def node(name, kind, inputs, kernel=True):
        ...     from modelforge.core.model.layer_types import Weight
        ...     weights = [Weight("kernel", (4, 4), "kernel", "kernel_initializer", (4, 4))] if kernel else []
        ...     return LayerSpec(name, kind, None, {}, None, {}, (4,), (4,), weights, None, inputs)
        >>> graph = [node("stem", "dense", ("inputs",)), node("f1", "dense", ("stem",)), node("f2", "dense", ("f1",)),
        ...          node("res", "add", ("stem", "f2"), kernel=False), node("head", "dense", ("res",))]
        >>> {name: (p.place, p.block, p.branches, p.depth) for name, p in places(graph).items()}["f2"]
        ('branch_out', 'res', 1, 2)
    """
    up = _ancestors(specs)
    blocks = [(add.name, sides) for add in specs if add.type == "add" and (sides := _sides(add, up, specs))]
    if not blocks:
        return {}
    found: dict[str, Place] = {}
    # Smaller branches first: a layer in nested blocks takes the innermost one's place.
    for block, (branch, shortcut) in sorted(blocks, key=lambda b: len(b[1][0])):
        depth = len(_kernels(branch, specs))
        for name, place in _branch_places(branch, specs).items():
            found.setdefault(name, Place(place, block, len(blocks), depth))
        for spec in _kernels(shortcut, specs):
            found.setdefault(spec.name, Place("shortcut", block, len(blocks), depth))
    for spec in specs:
        if spec.weights and spec.name not in found:
            found[spec.name] = Place("readout" if spec.name == HEAD else "stem", None, len(blocks), 0)
    return found
