"""Each layer's place in a residual model, read from the graph's structure alone (never from names a user typed).

An attention layer's four projections each have their own place (`attn_query`, `attn_key`, `attn_value`,
`attn_output`: `weight_place`); in a model with attention, a branch without attention is a Transformer block's MLP,
its kernels `ffn_in`, `ffn_mid`, `ffn_out`. Embeddings (token and position) outside branches are `embedding`.

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

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from modelforge.core.model.specs import LayerSpec
from modelforge.core.names import HEAD, INPUTS

# Layer types that scale a branch's output by learned factors.
GATES = ("gate", "layer_scale")
NORMS = ("batch_normalization", "layer_normalization")
ATTENTION = "multi_head_attention"
# An attention layer's projections, each its own place: the layer's weights are named `<projection>/kernel`.
ATTENTION_PLACES = {"query": "attn_query", "key": "attn_key", "value": "attn_value", "attention_output": "attn_output"}
EMBEDDINGS = ("embedding", "position_embedding")
PLACES = ("stem", "embedding", "branch_in", "branch_mid", "branch_out", "ffn_in", "ffn_mid", "ffn_out",
          *ATTENTION_PLACES.values(), "shortcut", "gate", "readout")
# The places that end a branch: what zero_last zeroes and scaled divides.
BRANCH_ENDS = ("branch_out", "ffn_out", "attn_output")


@dataclass(frozen=True)
class Block:
    """One residual block: its `add` layer, the input that ends its branch and the one that carries the stream,
    and the `model.blocks` block that made it (None in a model written layer by layer)."""

    name: str
    branch_end: str
    stream: str
    block: str | None

    @property
    def path(self) -> str:
        """How the block is named: its path in `model.blocks`, else its add's name."""
        return self.block or self.name


@dataclass(frozen=True)
class Place:
    """Where one layer sits.

    Attributes:
        place: one of `PLACES`.
        block: the residual block (its path in `model.blocks`, else its `add` layer's name) whose branch or shortcut
            holds it; None on the stream.
        branches: L, the residual branches of the whole model.
        depth: m, the kernel layers of its block's branch (0 outside a block).
    """

    place: str
    block: str | None
    branches: int
    depth: int


class _Graph:
    """The specs as a graph: each node's inputs, its position in the specs' order (the model's inputs first), and
    whether it has a kernel. Reads walk back from a block's add only as far as the block reaches, so a deep model
    costs what its blocks hold, not the square of its depth."""

    def __init__(self, specs: Sequence[LayerSpec]) -> None:
        self.specs = specs
        self.inputs = {spec.name: spec.inputs for spec in specs}
        self.order = {INPUTS: -1, **{spec.name: i for i, spec in enumerate(specs)}}
        self.kernel = {spec.name: any(w.role == "kernel" for w in spec.weights) for spec in specs}
        self.type = {spec.name: spec.type for spec in specs}
        self.attention = ATTENTION in self.type.values()

    def kernels(self, names: set[str]) -> list[str]:
        """The nodes of `names` that have a kernel, in the specs' order."""
        return sorted((n for n in names if self.kernel.get(n)), key=self.order.__getitem__)

    def between(self, start: str, end: str) -> set[str] | None:
        """The nodes on paths from `start` (left out) to `end` (kept); None when `start` is no ancestor of `end`."""
        seen: set[str] = set()
        stack, reached = [end], False
        while stack:
            node = stack.pop()
            if node == start:
                reached = True
            elif node not in seen and self.order[node] > self.order[start]:
                seen.add(node)
                stack.extend(self.inputs.get(node, ()))
        if not reached:
            return None
        # Of the ancestors of `end` after `start`, those that descend from it.
        found = {start}
        for node in sorted(seen, key=self.order.__getitem__):
            if any(i in found for i in self.inputs[node]):
                found.add(node)
        return found - {start}

    def meet(self, a: str, b: str) -> str:
        """The latest node both `a` and `b` descend from (the model's inputs at the latest)."""
        sides = {a: {0}, b: {1}}
        heap = [(-self.order[a], a), (-self.order[b], b)]
        done: set[str] = set()
        while heap:
            _, node = heapq.heappop(heap)
            if node in done:
                continue
            done.add(node)
            if sides[node] == {0, 1}:
                return node
            for i in self.inputs.get(node, ()):
                if i not in sides:
                    sides[i] = set()
                    heapq.heappush(heap, (-self.order[i], i))
                sides[i] |= sides[node]
        return INPUTS

    def sides(self, add: LayerSpec) -> tuple[set[str], set[str]] | None:
        """The branch's nodes and the shortcut's (empty for an identity), or None when the add is no residual."""
        if len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
            return None
        a, b = add.inputs
        for stream, end in ((a, b), (b, a)):
            branch = self.between(stream, end)
            if branch is not None:
                return branch, set()
        source = self.meet(a, b)
        side_a, side_b = ({*(self.between(source, x) or set())} for x in (a, b))
        fewer_a = len(self.kernels(side_a)) <= len(self.kernels(side_b))
        return (side_b, side_a) if fewer_a else (side_a, side_b)

    def branch_places(self, branch: set[str]) -> dict[str, str]:
        kernels = self.kernels(branch)
        # A Transformer's MLP: a branch without attention in a model with attention.
        kind = "ffn" if self.attention and not any(self.type[n] == ATTENTION for n in branch) else "branch"
        found = {name: f"{kind}_mid" for name in kernels}
        if kernels:
            found[kernels[0]] = f"{kind}_in"
            found[kernels[-1]] = f"{kind}_out"
        last = self.order[kernels[-1]] if kernels else -1
        for name in branch:
            if self.type[name] in GATES:
                found[name] = "gate"
            elif self.type[name] in NORMS:
                found[name] = "branch_out" if self.order[name] > last else "branch_mid"
        return found

    def blocks(self) -> list[tuple[LayerSpec, tuple[set[str], set[str]]]]:
        """Each residual block's add, with its branch's and its shortcut's nodes, in the specs' order."""
        return [(add, sides) for add in self.specs if add.type == "add" and (sides := self.sides(add))]


def residual_blocks(specs: Sequence[LayerSpec]) -> list[Block]:
    """The model's residual blocks in order, each with the add's input that ends its branch and the stream's."""
    found = []
    for add, (branch, _) in _Graph(specs).blocks():
        branch_end = next(i for i in add.inputs if i in branch)
        found.append(Block(add.name, branch_end, next(i for i in add.inputs if i != branch_end), add.block))
    return found


def with_branch_ends(specs: Sequence[LayerSpec], kind: str) -> list[LayerSpec]:
    """The specs with a layer of `kind` (`gate`, `layer_scale`) at each residual branch's end: named
    `<block path>.<kind>` (`<branch end>_<kind>` in a model written layer by layer), right after the branch's last
    layer, and read by the block's add in its place.

    Example:
        >>> [(s.name, s.inputs) for s in with_branch_ends(_example_graph(), "gate")][2:4]
        [('f_gate', ('f',)), ('res', ('stem', 'f_gate'))]
    """
    from dataclasses import replace

    from modelforge.core.model.layer_types import get_layer_type

    blocks = {b.branch_end: b for b in residual_blocks(specs)}
    named = {end: f"{b.block}.{kind}" if b.block else f"{end}_{kind}" for end, b in blocks.items()}
    adds = {b.name for b in blocks.values()}
    found: list[LayerSpec] = []
    for spec in specs:
        if spec.name in adds:
            spec = replace(spec, inputs=tuple(named[i] if i in blocks and blocks[i].name == spec.name else i
                                              for i in spec.inputs))
        found.append(spec)
        if spec.name in blocks:
            shape = spec.output_shape
            found.append(LayerSpec(named[spec.name], kind, None, {}, None, {}, shape, shape,
                                   get_layer_type(kind).weights(shape, {}), None, (spec.name,),
                                   blocks[spec.name].block))
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
    graph = _Graph(specs)
    blocks = graph.blocks()
    if not blocks:
        return {}
    found: dict[str, Place] = {}
    # Smaller branches first: a layer in nested blocks takes the innermost one's place.
    for add, (branch, shortcut) in sorted(blocks, key=lambda b: len(b[1][0])):
        depth = len(graph.kernels(branch))
        for name, place in graph.branch_places(branch).items():
            found.setdefault(name, Place(place, add.block or add.name, len(blocks), depth))
        for name in graph.kernels(shortcut) + [n for n in shortcut if graph.type[n] == "scale"]:
            found.setdefault(name, Place("shortcut", add.block or add.name, len(blocks), depth))
    for spec in specs:
        if spec.weights and spec.name not in found:
            outside = "readout" if spec.name == HEAD else "embedding" if spec.type in EMBEDDINGS else "stem"
            found[spec.name] = Place(outside, None, len(blocks), 0)
    return found


def weight_place(place: str, layer_type: str, weight: str) -> str:
    """A weight's place: its layer's, but each of an attention layer's projections its own (its bias with it).

    Example:
        >>> weight_place("branch_out", "multi_head_attention", "value/kernel"), weight_place("stem", "dense", "bias")
        ('attn_value', 'stem')
    """
    if layer_type == ATTENTION:
        return ATTENTION_PLACES[weight.split("/")[0]]
    return place


def with_shortcut_scales(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """The specs with a fixed `scale` layer on each residual block's shortcut, read by the add in the stream's
    place: DeepNorm's `alpha x + f(x)`. Named `<block path>.shortcut_scale` (`<add>_shortcut_scale` in a model
    written layer by layer).

    Example:
        >>> [(s.name, s.inputs) for s in with_shortcut_scales(_example_graph())][2:]
        [('res_shortcut_scale', ('stem',)), ('res', ('res_shortcut_scale', 'f'))]
    """
    from dataclasses import replace

    from modelforge.core.model.layer_types import get_layer_type

    blocks = {b.name: b for b in residual_blocks(specs)}
    found: list[LayerSpec] = []
    for spec in specs:
        block = blocks.get(spec.name)
        if block is not None:
            name = f"{block.block}.shortcut_scale" if block.block else f"{spec.name}_shortcut_scale"
            shape = spec.output_shape
            found.append(LayerSpec(name, "scale", None, {}, None, {}, shape, shape,
                                   get_layer_type("scale").weights(shape, {}), None, (block.stream,), block.block))
            spec = replace(spec, inputs=tuple(name if i == block.stream else i for i in spec.inputs))
        found.append(spec)
    return found
