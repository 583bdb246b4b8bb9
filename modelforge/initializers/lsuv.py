"""LSUV, layer-sequential unit-variance initialization (Mishkin & Matas 2016, "All you need is a good init").

Kernels start orthogonal (the plan's base); then, in the model's order (`core.model.graph.walk`), each kernel is
rescaled until its layer's pre-activation output on a sample of training inputs has the target variance. When it
rescales, converges and stops is decided in `modelforge.core.lsuv`; this module measures.
Measured before the activation: measuring after it (as one public Keras implementation does) cannot converge
for tanh, whose output variance stays below 1 whatever the scale. A recurrent layer is measured on x.W, its
input kernel applied to every time step of the sample; its recurrent kernel keeps its orthogonal default.
"""

from __future__ import annotations

from typing import Any

from modelforge.core import lsuv as decisions
from modelforge.core.init.plan import Plan, PlanEntry
from modelforge.core.model.graph import chained, layers_of, model_inputs, walk
from modelforge.core.model.specs import LayerSpec
from modelforge.core.names import INPUTS


def layer_weight(layer: Any, name: str) -> Any:
    """The variable called `name` (`kernel`, `pointwise_kernel`) of a Keras layer, a recurrent cell's included."""
    for weight in layer.weights:
        if weight.name == name:
            return weight
    raise KeyError(f"{layer.name} has no weight {name!r}")


def pre_activation(layer: Any, x: Any) -> Any:
    """A layer's output before its own activation (Dense, Conv and the like apply it inside): the layer called
    with its activation swapped for linear for that one call. The init health report reads it the same way."""
    import keras

    activation = getattr(layer, "activation", None)
    if activation is None:
        return layer(x, training=False)
    layer.activation = keras.activations.linear
    try:
        return layer(x, training=False)
    finally:
        layer.activation = activation


def _variance(layer: Any, kernel: Any, x: Any) -> float:
    import keras

    # A recurrent layer's input kernel: x.W over every time step (its activations act inside the recurrence).
    pre = keras.ops.matmul(x, kernel) if hasattr(layer, "cell") else pre_activation(layer, x)
    pre = keras.ops.cast(pre, "float32")
    return float(keras.ops.convert_to_numpy(keras.ops.var(pre)))


def rescale(layer: Any, entry: PlanEntry, x: Any) -> dict[str, Any]:
    """Rescales one kernel until its layer's pre-activation variance on `x` is within the tolerance.

    Returns:
        What was measured: the total `scale` applied, the rounds (`iterations`), the final `variance`,
        whether it `converged`, and the `std` the kernel's values ended with.
    """
    import keras

    params = entry.computed or {}
    kernel = layer_weight(layer, entry.weight)
    variance, scale, rounds = _variance(layer, kernel, x), 1.0, 0
    while (factor := decisions.next_factor(variance, rounds, params)) is not None:
        kernel.assign(kernel * factor)
        scale, rounds = scale * factor, rounds + 1
        variance = _variance(layer, kernel, x)
    std = float(keras.ops.convert_to_numpy(keras.ops.std(kernel)))
    return {"scale": scale, "iterations": rounds, "variance": variance,
            "converged": decisions.converged(variance, params), "std": std}


def lsuv(model: Any, plan: Plan, sample: Any) -> dict[str, dict[str, Any]]:
    """Runs LSUV over a freshly built model, walking it in the plan's order; returns weight path -> what
    `rescale` measured.

    Each layer is measured on the sample as the layers before it, already rescaled, transform it.
    """
    import keras

    targets = {entry.layer: entry for entry in plan.computed("lsuv")}
    measured: dict[str, dict[str, Any]] = {}

    def measure(spec: LayerSpec, xs: list[Any]) -> Any:
        layers = layers_of(model, spec.name, spec.activation)
        entry = targets.get(spec.name)
        if entry is not None:
            measured[entry.path] = rescale(layers[0], entry, xs[0])
        return chained(layers, xs, lambda layer, h: layer(h, training=False))

    walk(plan.specs, {INPUTS: model_inputs(model, keras.ops.convert_to_tensor(sample))}, measure)
    return measured
