"""modelforge's own Keras layers (`modelforge.layers`): the plan sets their weights, and a saved model that holds
them loads once modelforge is imported, whichever of Keras and modelforge is imported first."""

import subprocess
import sys

import numpy as np
import pytest

import modelforge
from tests.helpers import FAST

GATED = ["+model.layers=[{type:dense,units:8},{type:gate},{type:layer_scale}]"]


def test_the_plan_starts_a_gate_at_zero_and_layerscale_at_caits_value(compose):
    model = modelforge.build_model(compose([*FAST, *GATED]))
    plan = modelforge.plan(compose([*FAST, *GATED]))
    (alpha,) = plan.for_layer("layer2_gate")
    (gamma,) = plan.for_layer("layer3_layer_scale")
    assert (alpha.choice.name, alpha.choice.source) == ("zeros", "default:gate")
    assert (gamma.choice.name, gamma.choice.params, gamma.choice.source) == (
        "constant", {"value": 0.1}, "default:layer_scale")
    assert float(model.get_layer("layer2_gate").alpha.numpy()) == 0.0
    np.testing.assert_array_equal(model.get_layer("layer3_layer_scale").gamma.numpy(), np.full(8, 0.1, np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("imports", ["import modelforge, keras", "import keras, modelforge"])
def test_a_saved_model_with_them_loads_once_modelforge_is_imported(compose, tmp_path, imports):
    model = modelforge.build_model(compose([*FAST, *GATED]))
    model.get_layer("layer2_gate").alpha.assign(0.5)
    path = tmp_path / "gated.keras"
    model.save(path)
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (f"{imports}, numpy as np, sys\nm = keras.saving.load_model({str(path)!r}, safe_mode=True)\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))\n"
            "print(type(m.get_layer('layer2_gate')).__module__, float(m.get_layer('layer2_gate').alpha.numpy()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["modelforge.layers", "0.5"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), rtol=1e-6)
    plain = subprocess.run([sys.executable, "-c", f"import keras\nkeras.saving.load_model({str(path)!r})"],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode != 0 and "Gate" in plain.stderr  # plain Keras does not know modelforge's layers


def test_importing_modelforge_imports_neither_keras_nor_its_layers():
    code = ("import sys, modelforge\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'modelforge.layers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
