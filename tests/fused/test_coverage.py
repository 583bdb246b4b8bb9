"""What fuses is stated once, in the op registry and the optimizer table: docs/sweeps.md's lines are checked
against them, and a layer without an op is refused by name."""

import re

import keras
import pytest

from modelforge.core.config.keys import KEYS
from modelforge.core.registry import ARM_SCALARS
from modelforge.fused.ops import OPS, covered, layer_refused, make_op
from tests.helpers import REPO

PAGE = (REPO / "docs" / "sweeps.md").read_text()


def marked(name):
    (found,) = re.findall(rf"<!-- {name} -->(.*?)<!-- /{name} -->", PAGE, re.S)
    return " ".join(found.split())


def test_the_sweeps_page_lists_what_the_registry_and_the_optimizer_table_fuse():
    assert marked("fused-layers") == "Layers: " + ", ".join(covered()) + "."
    optimizers = "; ".join(f"{name} ({', '.join(scalars)})" for name, scalars in ARM_SCALARS.items())
    assert marked("fused-optimizers") == f"Optimizers, with the arguments each arm may set: {optimizers}."


def test_the_per_arm_keys_of_a_group_come_from_the_optimizer_table():
    per_arm = {key.split(".", 1)[1] for key, meaning in KEYS.items()
               if key.startswith("optimizer.") and meaning.per_arm}
    assert per_arm == {key for scalars in ARM_SCALARS.values() for key in scalars}


def test_a_layer_without_an_op_is_refused_by_name():
    layer = keras.layers.Conv3D(2, 2, name="volume")
    assert "Conv3D" not in OPS
    reason = layer_refused(layer)
    assert reason.startswith("its model has a Conv3D layer (volume)")
    with pytest.raises(ValueError) as err:
        make_op([layer], lambda j: None)
    assert str(err.value) == reason


def test_clipping_with_an_embedding_does_not_fuse(compose):
    import contextlib
    import io

    import modelforge
    from modelforge.fused.eligibility import run_refused
    from modelforge.run.setup import prepare

    tokens = ["data.layout=tokens", "+model.layers=[{type:embedding,input_dim:17,output_dim:4},{type:flatten}]",
              "model.units=4"]
    with contextlib.redirect_stdout(io.StringIO()):
        clipped = prepare(modelforge.run_config(compose([*tokens, "+optimizer.clipnorm=1.0"])))
        plain = prepare(modelforge.run_config(compose(tokens)))
    assert run_refused(clipped) == ("optimizer.clipnorm with an Embedding layer, which the fused model does not "
                                    "cover")
    assert run_refused(plain) is None


class Wide(keras.layers.Dense):
    """A Dense that changes only a default: it computes what Dense does, so it fuses through Dense's op."""

    def __init__(self, units=7, **kwargs):
        super().__init__(units, **kwargs)


class Squared(keras.layers.Dense):
    """A Dense that computes its own way."""

    def call(self, inputs):
        return super().call(inputs) ** 2


def test_a_subclass_fuses_through_its_parents_op_only_when_it_computes_as_its_parent():
    import numpy as np
    import tensorflow as tf

    from modelforge.fused.ops import op_for

    assert op_for(Wide) is OPS[keras.layers.Dense] and op_for(Squared) is None
    layers = [Wide(name=f"wide{a}") for a in range(2)]
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    for layer in layers:
        layer.build((None, 4))
    stacked = [tf.Variable(np.stack([layer.weights[j].numpy() for layer in layers])) for j in range(2)]
    out = make_op(layers, lambda j: stacked[j]).run([tf.constant(x)], False)
    for a, layer in enumerate(layers):
        np.testing.assert_allclose(out[a], layer.call(x[a]) if layer.activation is None else layer(x[a]), rtol=1e-6)
    reason = layer_refused(Squared(3, name="sq"))
    assert reason.startswith("its model has a Squared layer (sq): Squared overrides call of Dense")
