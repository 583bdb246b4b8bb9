"""data=mnist: the real download code, run against small npz files the tests write (no network needed)."""

import hashlib
import inspect
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import modelforge
from modelforge.data import arrays as data
from modelforge.errors import RunFailed
from tests.helpers import FAST, assert_refused

# An address nothing answers on: a test that reaches it would fail, so passing proves the cache was used.
UNREACHABLE = "file:///nonexistent-modelforge-mirror/mnist.npz"


def write_npz(path, n=60, seed=0):
    """A small file in the layout of Keras' mnist.npz; returns its arrays and SHA-256."""
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
              "y_train": np.arange(n, dtype=np.uint8) % 10,
              "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "y_test": np.arange(5, dtype=np.uint8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays, hashlib.sha256(path.read_bytes()).hexdigest()


def mnist_cfg(compose, cache, sha, url=UNREACHABLE, *extra):
    return compose(["data=mnist", f"data.cache_dir={cache}", f"data.sha256={sha}", f"data.url={url}", *extra])


@pytest.mark.parametrize(("layout", "shape"), [("flat", (784,)), ("image", (28, 28, 1)), ("sequence", (28, 28))])
def test_mnist_reads_the_cached_file_in_every_layout(compose, tmp_path, layout, shape):
    arrays, sha = write_npz(tmp_path / "mnist.npz")
    cfg = modelforge.compose(["data=mnist"]).data
    keras_loader = inspect.getsource(keras.datasets.mnist.load_data)  # the shipped default is Keras' own copy
    assert cfg.sha256 in keras_loader and cfg.url.rsplit("/", 1)[0] + "/" in keras_loader
    d = modelforge.run_config(mnist_cfg(compose, tmp_path, sha)).data
    info = d.describe(layout)
    assert (info.input_shape, info.num_outputs, info.vocab_size) == (shape, 10, None)
    ds = data.load(d, info, seed=3)
    assert (len(ds.x_train), len(ds.x_val)) == (48, 12)
    assert ds.x_train.shape[1:] == shape and ds.x_train.dtype == np.float32
    train, val = data.split_indices(60, 0.2, seed=3)
    expected = arrays["x_train"][train].reshape(48, *shape) / 255.0
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_val, arrays["y_train"][val])


def test_mnist_tokens_and_max_samples(compose, tmp_path):
    arrays, sha = write_npz(tmp_path / "mnist.npz")
    d = modelforge.run_config(mnist_cfg(compose, tmp_path, sha, UNREACHABLE, "data.layout=tokens",
                                        "data.max_samples=50")).data
    info = d.describe("flat")
    assert (info.input_shape, info.vocab_size) == ((784,), 256)
    ds = data.load(d, info, seed=0)
    assert len(ds.x_train) + len(ds.x_val) == 50 and ds.x_train.dtype == np.int32
    assert set(np.concatenate([ds.y_train, ds.y_val])) == set(arrays["y_train"][:50])


def test_mnist_downloads_into_an_empty_cache_and_checks_the_hash(compose, tmp_path):
    source = tmp_path / "mirror" / "mnist.npz"
    _, sha = write_npz(source)
    cache = tmp_path / "cache"
    d = modelforge.run_config(mnist_cfg(compose, cache, sha, source.as_uri())).data
    data.load(d, d.describe("flat"), seed=0)
    assert (cache / "mnist.npz").read_bytes() == source.read_bytes()


def test_a_hand_copied_file_with_another_hash_is_kept_and_named(compose, tmp_path):
    # The README's offline path: a user copies mnist.npz into the cache by hand; its hash differs.
    _, found = write_npz(tmp_path / "mnist.npz")
    before = (tmp_path / "mnist.npz").read_bytes()
    d = modelforge.run_config(mnist_cfg(compose, tmp_path, "0" * 64)).data
    with pytest.raises(RunFailed) as err:
        data.load(d, d.describe("flat"), seed=0)
    message = str(err.value)
    assert str(tmp_path / "mnist.npz") in message and found in message and "0" * 64 in message
    assert "data.sha256=null" in message
    assert (tmp_path / "mnist.npz").read_bytes() == before  # never deleted, never replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz"]


def test_no_cached_file_and_no_network_fails_clearly(compose, tmp_path):
    d = modelforge.run_config(mnist_cfg(compose, tmp_path / "empty", "0" * 64)).data
    with pytest.raises(RunFailed) as err:
        data.load(d, d.describe("flat"), seed=0)
    message = str(err.value)
    assert UNREACHABLE in message and str(tmp_path / "empty") in message and "data=digits" in message


def _truncated(path):
    write_npz(path)
    path.write_bytes(path.read_bytes()[:2000])


def _not_a_zip(path):
    path.write_bytes(b"not an npz")


def _other_arrays(path):
    np.savez(path, images=np.zeros((4, 28, 28), np.uint8))


def _wrong_shape(path):
    np.savez(path, x_train=np.zeros((4, 27, 27), np.uint8), y_train=np.zeros(4, np.uint8))


def _labels_out_of_range(path):
    np.savez(path, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.array([0, 3, 12, 9], np.uint8))


@pytest.mark.parametrize(("make", "words"), [
    (_truncated, ["not a complete npz (zip) archive", "truncated"]),
    (_not_a_zip, ["not a complete npz (zip) archive (10 bytes)"]),
    (_other_arrays, ["holds images", "not x_train and y_train"]),
    (_wrong_shape, ["x_train has shape [4, 27, 27]"]),
    (_labels_out_of_range, ["labels from 0 to 12"]),
])
def test_a_corrupt_cached_file_gets_one_paragraph(compose, tmp_path, make, words):
    make(tmp_path / "mnist.npz")
    d = modelforge.run_config(compose(["data=mnist", f"data.cache_dir={tmp_path}", "data.sha256=null",
                                       f"data.url={UNREACHABLE}"])).data
    with pytest.raises(RunFailed) as err:
        data.load(d, d.describe("flat"), seed=0)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'mnist.npz'} is not a usable MNIST npz") and "\n" not in message
    for word in words:
        assert word in message
    assert (tmp_path / "mnist.npz").exists()


@pytest.mark.parametrize(("override", "word"), [("data.sha256=abc", "data.sha256"), ("data.url=''", "data.url"),
                                                ("data.max_samples=1", "data.max_samples"),
                                                ("data.layout=cube", "cube")])
def test_bad_mnist_config(compose, override, word):
    assert_refused(lambda: modelforge.plan(compose(["data=mnist", override])), word)


def test_mnist_run_end_to_end_and_a_failed_fetch_marks_the_run_failed(compose, tmp_path):
    _, sha = write_npz(tmp_path / "cache" / "mnist.npz", n=80)
    metrics = modelforge.train(mnist_cfg(compose, tmp_path / "cache", sha, UNREACHABLE, "layer=conv", *FAST),
                               run_dir=tmp_path / "run")
    assert metrics["status"] == "completed"
    assert metrics["samples"] == {"train": 64, "validation": 16}
    plan = json.loads((tmp_path / "run" / "init_plan.json").read_text())
    assert plan[0]["shape"] == [3, 3, 1, 8]  # 28x28x1 images into the first Conv2D

    with pytest.raises(RunFailed):
        modelforge.train(mnist_cfg(compose, tmp_path / "empty", sha), run_dir=tmp_path / "failed")
    record = json.loads((tmp_path / "failed" / "metrics.json").read_text())
    assert record["status"] == "failed" and UNREACHABLE in record["error"]
    assert not (tmp_path / "failed" / "model.keras").exists()


def test_the_cache_names_files_by_data_set_and_refuses_folders_code_is_imported_from(compose, tmp_path):
    """A URL cannot choose the name of the file written (`evil.pth`), and a cache folder where Python imports from
    (site-packages) or inside a run folder is refused before anything is fetched."""
    import sysconfig

    from modelforge.data.downloads import fetch

    source = tmp_path / "served" / "evil.pth"
    source.parent.mkdir()
    source.write_text("import os; os.system('touch pwned')\n")
    cache = tmp_path / "cache"
    path = fetch("mnist", source.as_uri(), None, str(cache))
    assert path == cache / "mnist.npz" and not list(cache.glob("*.pth"))
    purelib = sysconfig.get_paths()["purelib"]
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    for folder, words in ((purelib, "where Python imports modules from"), (run / "data", "a run's or a sweep's")):
        assert_refused(lambda folder=folder: fetch("mnist", source.as_uri(), None, str(folder)), words)
    assert not (Path(purelib) / "mnist.npz").exists() and not (run / "data" / "mnist.npz").exists()
