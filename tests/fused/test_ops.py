"""Each fused op against the Keras layer it mirrors, and the fused optimizer against Keras' optimizers, in process.

Parametrized over the registry (`modelforge.fused.ops.OPS`): a new op is covered by its registry line and its
`example()`. K = 3 Keras layers of the example, each with its own random weights, are stacked into the fused
op; its outputs and its input and weight gradients must equal each layer's, per tensor
max|fused - keras| <= 1e-6 * max|keras|, in training and inference modes (batch-norm statistics included,
dropout by its mask's statistics).
"""

import numpy as np
import pytest

from modelforge.fused.ops import OPS, make_op

K = 3
BATCH = 4
TOLERANCE = 1e-6


def close(fused, keras_value, what):
    import tensorflow as tf

    fused, keras_value = (tf.convert_to_tensor(v) for v in (fused, keras_value))  # IndexedSlices: dense
    fused, keras_value = np.asarray(fused, np.float64), np.asarray(keras_value, np.float64)
    assert fused.shape == keras_value.shape, what
    scale = max(np.abs(keras_value).max(), 1e-30)
    assert np.abs(fused - keras_value).max() <= TOLERANCE * scale, (what, np.abs(fused - keras_value).max(), scale)


def arms_of(kind, seed=0):
    """K built Keras layers of the op's example, each with its own random weights (variances kept positive)."""
    rng = np.random.default_rng(seed)
    made = OPS[kind].example(kind)
    if made is None:
        return None, None
    layer, shape = made
    layers = [layer] + [type(layer).from_config(layer.get_config()) for _ in range(K - 1)]
    for each in layers:
        each.build((None, *shape))
        for weight in each.weights:
            value = rng.standard_normal(weight.shape).astype(np.float32)
            each_value = np.abs(value) + 0.5 if "variance" in weight.path else value
            weight.assign(each_value)
        if hasattr(each, "finalize_state"):  # a layer whose call reads statistics finalized from its weights
            each.finalize_state()
    return layers, shape


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kind", sorted(OPS))
def test_each_op_matches_its_keras_layer(kind, training):
    import tensorflow as tf

    layers, shape = arms_of(kind)
    rng = np.random.default_rng(1)
    if layers is None:  # InputLayer: the op passes its input through
        x = tf.constant(rng.standard_normal((K, BATCH, 3)), tf.float32)
        op = make_op([__import__("keras").layers.InputLayer(shape=(3,))] * K, lambda j: None)
        np.testing.assert_array_equal(op.run(x, training), x)
        return
    inputs = OPS[kind].sample(layers[0], (K, BATCH, *shape), seed=1)
    x = tf.Variable(inputs) if inputs.dtype.kind == "f" else tf.constant(inputs)
    stacked = [tf.Variable(np.stack([layer.weights[j].numpy() for layer in layers])) for j in
               range(len(layers[0].weights))]
    op = make_op(layers, lambda j: stacked[j])
    if kind == "Dropout" and training:
        out = op.run(x, True).numpy()
        kept = out != 0
        assert abs(1 - kept.mean() - layers[0].rate) < 0.03  # each value dropped with the layer's rate
        np.testing.assert_allclose(out[kept], x.numpy()[kept] / (1 - layers[0].rate), rtol=1e-6)
        return
    with tf.GradientTape(persistent=True) as tape:
        out = op.run(x, training)
        if op.activation is not None:
            out = op.activation(out)
        probe = tf.constant(rng.standard_normal(out.shape).astype(np.float32))
        fused_loss = tf.reduce_sum(out * probe)
    fused_grads = tape.gradient(fused_loss, [x, *stacked], unconnected_gradients="none")
    for a, layer in enumerate(layers):
        xa = tf.Variable(x[a]) if inputs.dtype.kind == "f" else x[a]
        with tf.GradientTape() as keras_tape:
            expected = layer(xa, training=training)
            keras_loss = tf.reduce_sum(expected * probe[a])
        keras_grads = keras_tape.gradient(keras_loss, [xa, *layer.trainable_weights])
        close(out[a], expected, f"{kind} arm {a} output")
        if keras_grads[0] is None:  # integer inputs (an embedding's tokens) have no gradient
            assert fused_grads[0] is None
        else:
            close(fused_grads[0][a], keras_grads[0], f"{kind} arm {a} input gradient")
        trainable = [j for j, w in enumerate(layer.weights) if w.trainable]
        for j, grad in zip(trainable, keras_grads[1:], strict=True):
            close(fused_grads[1 + j][a], grad, f"{kind} arm {a} gradient of {layer.weights[j].path}")
        for j, weight in enumerate(layer.weights):  # moving statistics, updated in training mode
            if not weight.trainable:
                close(stacked[j][a], weight.numpy(), f"{kind} arm {a} {weight.path}")
