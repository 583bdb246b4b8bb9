"""trainer.strategy=mirrored: one run data-parallel over two logical CPU devices, its
replicas in sync, its result the single-device run's within float tolerance for the same global batch."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

# Logical devices must be made before TensorFlow starts, so each run is its own process.
SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import modelforge

strategy, out = sys.argv[1], sys.argv[2]
cfg = modelforge.compose([f"trainer.strategy={strategy}", "trainer.epochs=3", "trainer.verbose=0",
                          "model.units=16", "trainer.batch_size=64"])
result = modelforge.train(cfg, run_dir=out + "/run")
replicas = [[np.array_equal(c.numpy(), v.value.values[0].numpy()) for c in v.value.values]
            for v in result.model.trainable_variables] if strategy == "mirrored" else []
np.savez(out + "/weights.npz", *[v.numpy() for v in result.model.trainable_variables])
json.dump({"history": result.history, "replicas": [len(r) for r in replicas],
           "in_sync": all(all(r) for r in replicas)}, open(out + "/out.json", "w"))
"""


def run(tmp_path, strategy):
    out = tmp_path / strategy
    out.mkdir()
    done = subprocess.run([sys.executable, "-c", SCRIPT, strategy, str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "out.json").read_text()), np.load(out / "weights.npz"), done.stdout


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    mirrored, mirrored_weights, said = run(tmp_path, "mirrored")
    single, single_weights, _ = run(tmp_path, "default")
    assert "MirroredStrategy over 2 devices" in said
    assert set(mirrored["replicas"]) == {2} and mirrored["in_sync"]
    for key, values in single["history"].items():
        np.testing.assert_allclose(mirrored["history"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for name in single_weights.files:
        np.testing.assert_allclose(mirrored_weights[name], single_weights[name], rtol=1e-4, atol=1e-5)
