"""The one walk of a model: its nodes name their inputs, and each is visited once every input has a value.

A chain (today's `model.depth` blocks, or a `model.layers` list without `inputs`) is the case where every node
takes the one before it. The specs (shapes), the builder (Keras tensors), LSUV (a sample's activations), the
init health report's probe and the fused forward (every arm's tensors) all walk the model here, each with its
own step, and a step gets a list of inputs whatever the node: none of them knows whether the model is a chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from modelforge.core.names import STANDARDIZE, activation_layer_name
from modelforge.errors import ConfigError, closest


class Node(Protocol):
    """What the walk reads of a node: its name, and the names of the nodes (or sources) it takes."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...


N = TypeVar("N", bound=Node)
V = TypeVar("V")


def walk(nodes: Iterable[N], sources: Mapping[str, V], step: Callable[[N, list[V]], V]) -> dict[str, V]:
    """Each node's value, `step(node, [its inputs' values])`, in the nodes' order; returns every value by name.

    Args:
        nodes: in an order where every input comes first (a node names only sources or earlier nodes).
        sources: the values the model starts from (its inputs), by name.
        step: what a node makes of its inputs' values.

    Raises:
        ConfigError: a node names an input that is neither a source nor an earlier node.

    Example:
        >>> from collections import namedtuple
        >>> Add = namedtuple("Add", "name inputs")
        >>> graph = [Add("a", ("x",)), Add("b", ("x",)), Add("sum", ("a", "b"))]
        >>> walk(graph, {"x": 1}, lambda node, xs: sum(xs) + 1)["sum"]  # a = b = 1 + 1, sum = a + b + 1
        5
    """
    values = dict(sources)
    for node in nodes:
        for name in node.inputs:
            if name not in values:
                near = closest(name, values)
                raise ConfigError(f"layer {node.name!r} takes {name!r}, which is no earlier layer"
                                  + (f" (did you mean {near!r}?)" if near else "")
                                  + f"; a layer takes the model's inputs or layers listed before it: "
                                  f"{', '.join(values)}")
        values[node.name] = step(node, [values[name] for name in node.inputs])
    return values


def chained(layers: Sequence[Any], xs: list[Any], call: Callable[[Any, Any], Any]) -> Any:
    """One node's layers (a layer, then its activation layer if any) applied in turn by `call(layer, h)` to the
    node's inputs: the one input, or the list a merge takes.

    Example:
        >>> chained(["double", "inc"], [3], lambda op, h: h * 2 if op == "double" else h + 1)
        7
    """
    h = xs[0] if len(xs) == 1 else xs
    for layer in layers:
        h = call(layer, h)
    return h


def layers_of(model: Any, name: str, activation: str | None) -> list[Any]:
    """The layers the builder made for the node `name` in a built Keras model (read by name, so no Keras is
    imported here): the layer itself, then the separate layer of its parametric activation, if it has one."""
    own = activation_layer_name(name, activation) if activation else None
    found = [model.get_layer(name)]
    if own is not None and any(layer.name == own for layer in model.layers):
        found.append(model.get_layer(own))
    return found


def model_inputs(model: Any, x: Any) -> Any:
    """What the first layers of a built Keras model read: `x`, through the model's own standardization layer
    where it has one (the layers that come before any node)."""
    return model.get_layer(STANDARDIZE)(x, training=False) if any(
        layer.name == STANDARDIZE for layer in model.layers) else x
