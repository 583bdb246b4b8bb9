"""Each fused op against the Keras layer it mirrors, in process.

Parametrized over the registry (`modelforge.fused.ops.OPS`, keyed by Keras class): each registered class has an
example layer here (a test checks it), K = 3 copies of it, each with its own random weights, are stacked into the
fused op, and its outputs and its input and weight gradients must equal each layer's, per tensor
max|fused - keras| <= 1e-6 * max|keras|, in training and inference modes (batch-norm statistics included,
dropout by its mask's statistics).
"""

import keras
import numpy as np
import pytest

from modelforge import layers as own
from modelforge.fused.ops import OPS, make_op

K = 3
BATCH = 4
TOLERANCE = 1e-6
L = keras.layers

# Each registered class: a small layer of it and one sample's input shape.
EXAMPLES = {
    L.Flatten: (lambda: L.Flatten(), (3, 4)),
    L.Activation: (lambda: L.Activation("tanh"), (3, 4)),
    L.Dropout: (lambda: L.Dropout(0.25), (40, 50)),
    L.Dense: (lambda: L.Dense(5, activation="tanh"), (6,)),
    L.Embedding: (lambda: L.Embedding(7, 3), (5,)),
    L.Conv1D: (lambda: L.Conv1D(3, 2, padding="same", activation="relu"), (6, 2)),
    L.Conv2D: (lambda: L.Conv2D(3, (2, 2), strides=(1, 2), activation="relu"), (5, 6, 2)),
    L.DepthwiseConv2D: (lambda: L.DepthwiseConv2D(2, depth_multiplier=2, activation="relu"), (5, 5, 2)),
    L.SeparableConv1D: (lambda: L.SeparableConv1D(3, 2, padding="same", activation="relu"), (6, 2)),
    L.SeparableConv2D: (lambda: L.SeparableConv2D(3, 2, padding="same", activation="relu"), (5, 5, 2)),
    L.Conv2DTranspose: (lambda: L.Conv2DTranspose(3, 2, strides=2, activation="relu"), (3, 3, 2)),
    L.MaxPooling1D: (lambda: L.MaxPooling1D(2), (6, 2)),
    L.MaxPooling2D: (lambda: L.MaxPooling2D(2), (6, 4, 2)),
    L.AveragePooling1D: (lambda: L.AveragePooling1D(2), (6, 2)),
    L.AveragePooling2D: (lambda: L.AveragePooling2D(2), (6, 4, 2)),
    L.GlobalAveragePooling1D: (lambda: L.GlobalAveragePooling1D(), (6, 2)),
    L.GlobalAveragePooling2D: (lambda: L.GlobalAveragePooling2D(), (6, 4, 2)),
    L.GlobalMaxPooling1D: (lambda: L.GlobalMaxPooling1D(), (6, 2)),
    L.GlobalMaxPooling2D: (lambda: L.GlobalMaxPooling2D(), (6, 4, 2)),
    L.BatchNormalization: (lambda: L.BatchNormalization(momentum=0.9), (4, 3)),
    L.LayerNormalization: (lambda: L.LayerNormalization(), (3, 4)),
    L.Normalization: (lambda: L.Normalization(axis=-1), (3, 4)),
    L.SimpleRNN: (lambda: L.SimpleRNN(3), (5, 2)),
    L.LSTM: (lambda: L.LSTM(3), (5, 2)),
    L.GRU: (lambda: L.GRU(3, return_sequences=True), (5, 2)),
    L.LeakyReLU: (lambda: L.LeakyReLU(negative_slope=0.2), (3, 4)),
    L.ELU: (lambda: L.ELU(), (3, 4)),
    L.ReLU: (lambda: L.ReLU(), (3, 4)),
    L.PReLU: (lambda: L.PReLU(shared_axes=[1]), (3, 4)),
    own.Gate: (lambda: own.Gate(alpha_initializer="ones"), (3, 4)),
    own.LayerScale: (lambda: own.LayerScale(), (3, 4)),
    own.Scale: (lambda: own.Scale(), (3, 4)),
    own.PositionEmbedding: (lambda: own.PositionEmbedding(), (3, 4)),
    L.MultiHeadAttention: (lambda: L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2), (5, 4)),
    # A merge's example takes a list of inputs: their shapes.
    L.Add: (lambda: L.Add(), [(3, 4), (3, 4), (3, 4)]),
    L.Concatenate: (lambda: L.Concatenate(axis=1), [(3, 4), (2, 4)]),
}
# Inputs other than standard normal floats: an embedding's token ids.
INTEGER_INPUTS = {L.Embedding}
KINDS = sorted(EXAMPLES, key=lambda cls: cls.__name__)


def close(fused, keras_value, what):
    import tensorflow as tf

    fused, keras_value = (tf.convert_to_tensor(v) for v in (fused, keras_value))  # IndexedSlices: dense
    fused, keras_value = np.asarray(fused, np.float64), np.asarray(keras_value, np.float64)
    assert fused.shape == keras_value.shape, what
    scale = max(np.abs(keras_value).max(), 1e-30)
    assert np.abs(fused - keras_value).max() <= TOLERANCE * scale, (what, np.abs(fused - keras_value).max(), scale)


def zero_but_rounding(fused, keras_value, reference):
    """The key's bias adds one constant to all of a query's logits, which the softmax ignores: its gradient is zero
    but for rounding, so the two are held near zero (against the input's gradient) rather than to each other."""
    import tensorflow as tf

    scale = np.abs(np.asarray(tf.convert_to_tensor(reference), np.float64)).max()
    for value in (fused, keras_value):
        assert np.abs(np.asarray(tf.convert_to_tensor(value), np.float64)).max() <= 1e-5 * scale


def test_every_registered_class_has_an_example_and_every_example_a_registered_class():
    assert set(EXAMPLES) == set(OPS) - {L.InputLayer}
    for cls, (make, _) in EXAMPLES.items():
        assert type(make()) is cls


def arms_of(kind, seed=0):
    """K built Keras layers of the op's example, each with its own random weights (variances kept positive)."""
    rng = np.random.default_rng(seed)
    make, shape = EXAMPLES[kind]
    layer = make()
    layers = [layer] + [type(layer).from_config(layer.get_config()) for _ in range(K - 1)]
    for each in layers:
        if isinstance(each, L.MultiHeadAttention):  # builds from its query's and value's shapes
            each.build((None, *shape), (None, *shape))
        else:
            each.build([(None, *s) for s in shape] if isinstance(shape, list) else (None, *shape))
        for weight in each.weights:
            value = rng.standard_normal(weight.shape).astype(np.float32)
            each_value = np.abs(value) + 0.5 if "variance" in weight.path else value
            weight.assign(each_value)
        if hasattr(each, "finalize_state"):  # a layer whose call reads statistics finalized from its weights
            each.finalize_state()
    return layers, shape


def sample(kind, layer, shape, seed):
    rng = np.random.default_rng(seed)
    if kind in INTEGER_INPUTS:
        return rng.integers(0, layer.input_dim, shape).astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)


def test_the_input_passes_through():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).standard_normal((K, BATCH, 3)), tf.float32)
    op = make_op([L.InputLayer(shape=(3,))] * K, lambda j: None)
    np.testing.assert_array_equal(op.run([x], False), x)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kind", KINDS, ids=lambda cls: cls.__name__)
def test_each_op_matches_its_keras_layer(kind, training):
    import tensorflow as tf

    layers, shape = arms_of(kind)
    if isinstance(shape, list):
        return check_merge(layers, shape, training)
    rng = np.random.default_rng(1)
    inputs = sample(kind, layers[0], (K, BATCH, *shape), seed=1)
    x = tf.Variable(inputs) if inputs.dtype.kind == "f" else tf.constant(inputs)
    stacked = [tf.Variable(np.stack([layer.weights[j].numpy() for layer in layers])) for j in
               range(len(layers[0].weights))]
    op = make_op(layers, lambda j: stacked[j])
    if kind is L.Dropout and training:
        out = op.run([x], True).numpy()
        kept = out != 0
        assert abs(1 - kept.mean() - layers[0].rate) < 0.03  # each value dropped with the layer's rate
        np.testing.assert_allclose(out[kept], x.numpy()[kept] / (1 - layers[0].rate), rtol=1e-6)
        return
    with tf.GradientTape(persistent=True) as tape:
        out = op.run([x], training)
        if op.activation is not None:
            out = op.activation(out)
        probe = tf.constant(rng.standard_normal(out.shape).astype(np.float32))
        fused_loss = tf.reduce_sum(out * probe)
    fused_grads = tape.gradient(fused_loss, [x, *stacked], unconnected_gradients="none")
    for a, layer in enumerate(layers):
        xa = tf.Variable(x[a]) if inputs.dtype.kind == "f" else x[a]
        with tf.GradientTape() as keras_tape:
            expected = own.call(layer, xa, training=training)
            keras_loss = tf.reduce_sum(expected * probe[a])
        keras_grads = keras_tape.gradient(keras_loss, [xa, *layer.trainable_weights])
        close(out[a], expected, f"{kind} arm {a} output")
        if keras_grads[0] is None:  # integer inputs (an embedding's tokens) have no gradient
            assert fused_grads[0] is None
        else:
            close(fused_grads[0][a], keras_grads[0], f"{kind} arm {a} input gradient")
        trainable = [j for j, w in enumerate(layer.weights) if w.trainable]
        for j, grad in zip(trainable, keras_grads[1:], strict=True):
            if layer.weights[j].path.endswith("key/bias"):
                zero_but_rounding(fused_grads[1 + j][a], grad, fused_grads[0][a])
                continue
            close(fused_grads[1 + j][a], grad, f"{kind} arm {a} gradient of {layer.weights[j].path}")
        for j, weight in enumerate(layer.weights):  # moving statistics, updated in training mode
            if not weight.trainable:
                close(stacked[j][a], weight.numpy(), f"{kind} arm {a} {weight.path}")


def check_merge(layers, shapes, training):
    """A merge: its output and every input's gradient against the Keras layer's, per arm."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    xs = [tf.Variable(rng.standard_normal((K, BATCH, *s)).astype(np.float32)) for s in shapes]
    op = make_op(layers, lambda j: None)
    with tf.GradientTape() as tape:
        out = op.run(xs, training)
        probe = tf.constant(rng.standard_normal(out.shape).astype(np.float32))
        loss = tf.reduce_sum(out * probe)
    grads = tape.gradient(loss, xs)
    for a, layer in enumerate(layers):
        mine = [tf.Variable(x[a]) for x in xs]
        with tf.GradientTape() as keras_tape:
            expected = own.call(layer, mine, training=training)
            keras_loss = tf.reduce_sum(expected * probe[a])
        close(out[a], expected, f"{type(layer).__name__} arm {a} output")
        for i, grad in enumerate(keras_tape.gradient(keras_loss, mine)):
            close(grads[i][a], grad, f"{type(layer).__name__} arm {a} gradient of input {i}")


@pytest.mark.parametrize("training", [False, True])
def test_attention_to_another_input_matches_keras(training):
    """Cross-attention: queries of 5 steps attend to values of 7 steps with other features."""
    layers = [L.MultiHeadAttention(num_heads=2, key_dim=3) for _ in range(K)]
    rng = np.random.default_rng(2)
    for layer in layers:
        layer.build((None, 5, 4), (None, 7, 6))
        for weight in layer.weights:
            weight.assign(rng.standard_normal(weight.shape).astype(np.float32))
    import tensorflow as tf

    xs = [tf.Variable(rng.standard_normal((K, BATCH, *s)).astype(np.float32)) for s in [(5, 4), (7, 6)]]
    stacked = [tf.Variable(np.stack([layer.weights[j].numpy() for layer in layers])) for j in range(8)]
    op = make_op(layers, lambda j: stacked[j])
    with tf.GradientTape() as tape:
        out = op.run(xs, training)
        probe = tf.constant(rng.standard_normal(out.shape).astype(np.float32))
        loss = tf.reduce_sum(out * probe)
    grads = tape.gradient(loss, [*xs, *stacked])
    for a, layer in enumerate(layers):
        mine = [tf.Variable(x[a]) for x in xs]
        with tf.GradientTape() as keras_tape:
            expected = layer(*mine, training=training)
            keras_loss = tf.reduce_sum(expected * probe[a])
        close(out[a], expected, f"arm {a} output")
        for i, grad in enumerate(keras_tape.gradient(keras_loss, [*mine, *layer.weights])):
            if i >= 2 and layer.weights[i - 2].path.endswith("key/bias"):
                zero_but_rounding(grads[i][a], grad, grads[0][a])
                continue
            close(grads[i][a], grad, f"arm {a} gradient {i}")


def test_attention_with_dropout_is_refused_by_name():
    from modelforge.fused.ops import layer_refused

    assert "dropout=0.1" in layer_refused(L.MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.1, name="mha"))
