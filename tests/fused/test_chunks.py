"""A fused chunk's checkpoint belongs to its chunk, and one process at a time trains it."""

import subprocess
import sys

import pytest

import modelforge
from modelforge.api import run_config
from modelforge.errors import ConfigError
from modelforge.fused.groups import Job, chunk_digest, training_alone

HOLD = """
import sys, time
from pathlib import Path
from modelforge.fused.groups import training_alone
with training_alone(Path(sys.argv[1]), "fused group 1"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_chunk_another_process_trains_is_refused_naming_it(tmp_path):
    checkpoint = tmp_path / ".fused" / "0123456789abcdef.npz"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(checkpoint)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"fused group 2 is being trained by another process now \(pid "
                                              rf"{holder.pid}"):
            with training_alone(checkpoint, "fused group 2"):
                pass
    finally:
        holder.kill()
        holder.wait()  # the holder is gone, and its lock with it
    with training_alone(checkpoint, "fused group 2"):
        assert checkpoint.with_suffix(".lock").is_file()


def test_a_chunks_checkpoint_is_bound_to_every_arms_config():
    def chunk(*seeds, rate=0.001):
        return [Job(i, [], None, run=run_config(modelforge.compose([f"seed={s}", f"optimizer.learning_rate={rate}"])))
                for i, s in enumerate(seeds)]

    assert chunk_digest(chunk(0, 1)) == chunk_digest(chunk(0, 1))
    # what fuses (seeds, learning rates) names the same checkpoint file, but another chunk's is not restored
    assert chunk_digest(chunk(0, 1)) != chunk_digest(chunk(0, 2))
    assert chunk_digest(chunk(0, 1)) != chunk_digest(chunk(0, 1, rate=0.01))
