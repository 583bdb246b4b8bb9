"""One probe batch through a freshly built model, layer by layer, with the loss's gradients at every step.

The report (`diagnose`) reads what this measures: each layer's pre-activation s and output, d(loss)/ds (the
back-propagated gradient of Glorot & Bengio 2010's Figure 7), and d(loss)/dW for every kernel. Layers that
apply their activation inside (Dense, Conv) are run with it swapped out for a moment, so s is seen; a
separate activation layer (LeakyReLU, PReLU) takes s as its input. TensorFlow's tape does the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelforge.core.init.plan import Plan
from modelforge.core.model.graph import chained, layers_of, walk
from modelforge.core.model.specs import LayerSpec
from modelforge.core.names import INPUTS, STANDARDIZE
from modelforge.initializers.lsuv import pre_activation

# Keras activation layers: their input is the pre-activation of the layer before them.
ACTIVATION_LAYERS = ("LeakyReLU", "PReLU", "ELU", "ReLU", "Activation", "Softmax")


@dataclass
class Step:
    """One layer of the probe: its pre-activation (None where it has none), its output, and the gradients."""

    layer: Any
    pre: Any
    out: Any
    pre_grad: Any = None
    out_grad: Any = None  # for a merge (a residual block's add): the stream's gradient
    kernel_grads: dict[str, Any] = field(default_factory=dict)


def _pre_and_out(layer: Any, h: Any) -> tuple[Any, Any]:
    """The layer's pre-activation and output for input h (the recurrent cells' activations stay inside)."""
    import keras

    from modelforge.layers import call  # Keras' layers: imported when a probe runs, not with the report's module

    if type(layer).__name__ in ACTIVATION_LAYERS:
        return h, layer(h, training=False)
    activation = getattr(layer, "activation", None)
    if activation is None or hasattr(layer, "cell") or activation is keras.activations.linear:
        return None, call(layer, h, training=False)
    pre = pre_activation(layer, h)
    return pre, activation(pre)


def is_kernel(weight: Any) -> bool:
    """Whether a variable is a kernel (the policy's concern) rather than a bias or a statistic."""
    return "kernel" in weight.name or weight.name == "embeddings"


def loss_function(task: str) -> Any:
    import keras

    if task == "classification":
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.MeanSquaredError()


def run_probe(model: Any, plan: Plan, x: Any, y: Any) -> tuple[list[Step], float]:
    """Every non-input layer of `model` (as `build` made it from `plan`) on the batch, walked in the plan's order
    (`core.model.graph.walk`), with the gradients.

    Returns:
        One `Step` per layer, in order, and the loss of the batch.
    """
    import tensorflow as tf

    from modelforge.layers import weight_name

    steps: list[Step] = []

    def probe(layer: Any, h: Any) -> Any:
        pre, out = _pre_and_out(layer, h)
        steps.append(Step(layer, pre, out))
        return out

    def step(spec: LayerSpec, xs: list[Any]) -> Any:
        return chained(layers_of(model, spec.name, spec.activation), xs, probe)

    names = {layer.name for layer in model.layers}
    with tf.GradientTape() as tape:
        h = tf.convert_to_tensor(x)
        if STANDARDIZE in names:
            h = probe(model.get_layer(STANDARDIZE), h)
        h = walk(plan.specs, {INPUTS: h}, step)[plan.specs[-1].name]
        loss = loss_function(plan.info.task)(y, h)
    kernels = [(step, w) for step in steps for w in step.layer.trainable_weights if is_kernel(w)]
    merges = [s for s in steps if type(s.layer).__name__ == "Add"]
    watched = [s.pre for s in steps if s.pre is not None] + [s.out for s in merges]
    grads = tape.gradient(loss, watched + [w for _, w in kernels])
    pre_grads = iter(grads[:len(watched)])
    for found in steps:
        if found.pre is not None:
            found.pre_grad = next(pre_grads)
    for found in merges:
        found.out_grad = next(pre_grads)
    for (found, weight), grad in zip(kernels, grads[len(watched):]):
        # An embedding's gradient comes as rows (IndexedSlices): the report reads it whole.
        found.kernel_grads[weight_name(found.layer, weight)] = (tf.zeros_like(weight) if grad is None else
                                                                tf.convert_to_tensor(grad))
    return steps, float(loss)


def jacobian_condition(model: Any, upto: str, x: Any) -> list[float]:
    """For each sample of `x`: the largest over the smallest singular value of d(layer `upto`'s output)/d(input).

    Infinite where the smallest is zero (the map loses a direction entirely).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    inner = keras.Model(model.input, model.get_layer(upto).output)
    x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = inner(x, training=False)
        flat = tf.reshape(out, (tf.shape(out)[0], -1))
    jac = tape.batch_jacobian(flat, x).numpy().reshape(len(x), flat.shape[-1], -1)
    found = []
    for matrix in jac:
        values = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
        found.append(float(values[0] / values[-1]) if values[-1] > 0 else float("inf"))
    return found
