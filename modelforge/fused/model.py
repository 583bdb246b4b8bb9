"""The fused model: every arm's layers as fused ops over stacked variables, its forward pass over the model's walk,
and its gradients with what the optimizer's rule needs of ops whose gradient Keras takes per occurrence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modelforge.core.model.graph import chained, layers_of, walk
from modelforge.core.names import INPUTS

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf
    from numpy.typing import NDArray

    from modelforge.fused.ops import Op
    from modelforge.run.setup import Session


class FusedModel:
    """Every arm's Keras model as one: an op per layer, its variables stacked with every arm's initial weights.

    Attributes:
        ops: one per layer of the Keras model, in its order.
        node_ops: each plan node's ops (its layer, then its activation layer if it has one).
        leading: the ops before any node (the input, its standardization).
        trainable: the trainable stacked variables, in the ops' order (what the optimizer updates).
        every_variable: every stacked variable, trainable or not (batch-norm statistics), in a fixed order.
        by_path: a Keras weight's path in the first arm's model -> its stacked variable.
        softmax_head: whether the head is a softmax whose logits the loss takes.
    """

    def __init__(self, sessions: Sequence[Session]) -> None:
        import numpy as np
        import tensorflow as tf

        from modelforge.fused.ops import make_op

        first = sessions[0]
        self.by_path: dict[str, tf.Variable] = {}
        self.ops: list[Op] = []
        for index in range(len(first.model.layers)):
            def stacked(j: int, index: int = index) -> tf.Variable:
                found = tf.Variable(np.stack([s.model.layers[index].weights[j].numpy() for s in sessions]))
                self.by_path[first.model.layers[index].weights[j].path] = found
                return found

            self.ops.append(make_op([s.model.layers[index] for s in sessions], stacked))
        named = {layer.name: op for layer, op in zip(first.model.layers, self.ops, strict=True)}
        self.specs = first.plan.specs
        self.node_ops = {spec.name: [named[layer.name] for layer in layers_of(first.model, spec.name, spec.activation)]
                         for spec in self.specs}
        in_nodes = {id(op) for ops in self.node_ops.values() for op in ops}
        self.leading = [op for op in self.ops if id(op) not in in_nodes]
        self.trainable = [v for op in self.ops for v, trains in zip(op.variables, op.trainable, strict=True) if trains]
        self.every_variable = list(self.by_path.values())
        head = self.ops[-1].activation
        self.softmax_head = first.run.task == "classification" and getattr(head, "__name__", "") == "softmax"
        self.weight_paths = [w.path for w in first.model.weights]

    def head_softmax(self) -> Callable[[tf.Tensor], tf.Tensor] | None:
        """The head's softmax, where the model gives its logits (None: it gives its outputs)."""
        return self.ops[-1].activation if self.softmax_head else None

    def arm_weights(self, a: int) -> list[NDArray[np.float32]]:
        """Arm a's weights in the order of its Keras model's get_weights()."""
        import numpy as np

        return [np.asarray(self.by_path[path][a].numpy()) for path in self.weight_paths]

    def forward(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        """(arms, batch, ...) inputs to (arms, batch, outputs): logits for a softmax head, else outputs. The
        ops before any node first, then the model's walk in its plan's order (`core.model.graph.walk`), each
        node's ops on its inputs."""
        def run(op: Op, h: tf.Tensor | list[tf.Tensor]) -> tf.Tensor:
            out = op.run(h if isinstance(h, list) else [h], training)
            if op.activation is not None and not (self.softmax_head and op is self.ops[-1]):
                out = op.activation(out)
            return out

        h = x
        for op in self.leading:
            h = run(op, h)
        outputs = walk(self.specs, {INPUTS: h}, lambda spec, xs: chained(self.node_ops[spec.name], xs, run))
        return outputs[self.specs[-1].name]

    def gradients(self, tape: tf.GradientTape, total: tf.Tensor, scale: list[float] | None,
                  second_moments: bool) -> tuple[list[tf.Tensor], list[tf.Tensor | None] | None]:
        """Each trainable variable's gradient and, where `second_moments` (an optimizer that takes them per
        occurrence), what ops with a `second_moments` hook give in place of the gradient's square (None
        elsewhere; None for all when no op has one)."""
        hooked = [op for op in self.ops if op.second_moments is not None] if second_moments else []
        tapped = [t for op in hooked for t in op.tapped]
        found = tape.gradient(total, [*self.trainable, *tapped])
        grads, taps = list(found[:len(self.trainable)]), found[len(self.trainable):]
        if not hooked:
            return grads, None
        squares: list[tf.Tensor | None] = [None] * len(self.trainable)
        index = {id(v): i for i, v in enumerate(self.trainable)}
        for op in hooked:
            mine, taps = taps[:len(op.tapped)], taps[len(op.tapped):]
            assert op.second_moments is not None
            for j, summed in op.second_moments(list(mine), scale).items():
                squares[index[id(op.variables[j])]] = summed
        return grads, squares
