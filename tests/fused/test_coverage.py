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
    from modelforge.fused.trainer import run_refused
    from modelforge.run.setup import prepare

    tokens = ["data.layout=tokens", "+model.layers=[{type:embedding,input_dim:17,output_dim:4},{type:flatten}]",
              "model.units=4"]
    with contextlib.redirect_stdout(io.StringIO()):
        clipped = prepare(modelforge.run_config(compose([*tokens, "+optimizer.clipnorm=1.0"])))
        plain = prepare(modelforge.run_config(compose(tokens)))
    assert run_refused(clipped) == ("optimizer.clipnorm with an Embedding layer, which the fused model does not "
                                    "cover")
    assert run_refused(plain) is None
