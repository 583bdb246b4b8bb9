"""The fused model in process: every arm's Keras model as one, over the model's walk, merges included."""

import contextlib
import io

import numpy as np

import modelforge
from tests.helpers import FAST

# Two dense branches of the input, added: a graph the walk takes as the builder does.
TOY = ["+model.layers=[{type:dense,name:a,units:8},{type:dense,name:b,units:8,inputs:[inputs]},"
       "{type:add,name:sum,inputs:[a,b]},{type:dense,name:c,units:4,inputs:[a]},"
       "{type:concatenate,name:both,inputs:[sum,c]}]"]


def sessions_of(compose, seeds):
    from modelforge.run.setup import prepare

    with contextlib.redirect_stdout(io.StringIO()):
        return [prepare(modelforge.run_config(compose([*FAST, *TOY, f"seed={seed}"]))) for seed in seeds]


def test_a_graph_with_merges_fuses_and_its_forward_is_each_arms_model(compose):
    import tensorflow as tf

    from modelforge.fused.eligibility import run_refused
    from modelforge.fused.model import FusedModel

    sessions = sessions_of(compose, (0, 1, 2))
    assert run_refused(sessions[0]) is None
    fused = FusedModel(sessions)
    x = np.stack([s.dataset.x_val[:16] for s in sessions])
    logits = fused.forward(tf.constant(x), training=False)
    for a, session in enumerate(sessions):
        expected = session.model(x[a], training=False).numpy()
        got = tf.nn.softmax(logits[a]).numpy() if fused.softmax_head else logits[a].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[0], logits[1])  # each arm its own weights
