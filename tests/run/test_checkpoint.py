"""The checkpoint in process: two generations with a digest, the fall-back order, and a model's and
its optimizer's variables round-tripped exactly."""

import numpy as np
import pytest

from modelforge.run import checkpoint
from modelforge.run.checkpoint import CHECKPOINT, Progress, previous, read_arrays, write_arrays
from modelforge.run.folder import RunFolder


def arrays(value):
    return {"w": np.full((2, 3), value, np.float32), "step": np.array(value, np.int64)}


@pytest.fixture
def folder(tmp_path):
    return RunFolder(tmp_path)


def test_two_generations_the_latest_read_first(folder):
    write_arrays(folder, CHECKPOINT, arrays(1), {"epochs_done": 1})
    write_arrays(folder, CHECKPOINT, arrays(2), {"epochs_done": 2})
    latest = folder.path / CHECKPOINT
    assert latest.is_file() and previous(latest).is_file() and previous(latest).name == "checkpoint.prev.npz"
    found, state = read_arrays(latest)
    assert state["epochs_done"] == 2 and state["digest"] == checkpoint.arrays_digest(arrays(2))
    assert np.array_equal(found["w"], arrays(2)["w"]) and found["step"] == 2


@pytest.mark.parametrize("damage", ["truncated", "empty", "other bytes", "missing"])
def test_a_damaged_latest_falls_back_to_the_previous_one_and_says_so(folder, damage, capsys):
    write_arrays(folder, CHECKPOINT, arrays(1), {"epochs_done": 1})
    write_arrays(folder, CHECKPOINT, arrays(2), {"epochs_done": 2})
    latest = folder.path / CHECKPOINT
    if damage == "truncated":
        latest.write_bytes(latest.read_bytes()[:200])
    elif damage == "empty":
        latest.write_bytes(b"")
    elif damage == "missing":
        latest.unlink()
    else:  # a whole npz whose arrays are not the ones its digest was made of
        good = read_arrays(latest)
        assert good is not None
        with open(latest, "wb") as f:
            np.savez(f, w=np.zeros((2, 3), np.float32), step=np.array(2), state=np.frombuffer(
                __import__("json").dumps(good[1]).encode(), np.uint8))
    found, state = read_arrays(latest)
    assert state["epochs_done"] == 1 and found["step"] == 1
    said = capsys.readouterr()
    assert "continuing from checkpoint.prev.npz (after epoch 1)" in said.out + said.err


def test_neither_generation_readable_starts_over(folder, capsys):
    write_arrays(folder, CHECKPOINT, arrays(1), {"epochs_done": 1})
    write_arrays(folder, CHECKPOINT, arrays(2), {"epochs_done": 2})
    for path in (folder.path / CHECKPOINT, previous(folder.path / CHECKPOINT)):
        path.write_bytes(b"not a zip")
    assert read_arrays(folder.path / CHECKPOINT) is None
    said = capsys.readouterr()
    assert "starts again from its first epoch" in said.out + said.err
    assert read_arrays(folder.path / "nothing.npz") is None  # no checkpoint at all: nothing said, nothing read


def test_a_model_and_its_optimizer_round_trip_exactly(folder):
    import keras

    def model():
        keras.utils.set_random_seed(0)
        made = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="hidden"),
                                 keras.layers.Dense(2, name="head")], name="net")
        made.compile(optimizer=keras.optimizers.Adam(0.01, name="adam"), loss="mse")
        return made

    trained = model()
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.random.default_rng(1).normal(size=(32, 2))
    trained.fit(x, y, epochs=2, verbose=0)
    progress = Progress(2, [{"loss": 1.0}, {"loss": 0.5}], False, {"wait": 1, "best": 0.5}, {})
    best = [w * 2 for w in trained.get_weights()]
    checkpoint.save(folder, trained, progress, best)
    fresh = model()
    assert checkpoint.exists(folder)
    loaded, best_loaded = checkpoint.load(folder, fresh)
    assert loaded == progress
    assert all(np.array_equal(a, b) for a, b in zip(best_loaded, best, strict=True))
    for a, b in zip(trained.variables + trained.optimizer.variables, fresh.variables + fresh.optimizer.variables,
                    strict=True):
        assert a.path == b.path and np.array_equal(a.numpy(), b.numpy()), a.path
    checkpoint.remove(folder)
    assert not checkpoint.exists(folder)
