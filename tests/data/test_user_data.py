"""The user's own data: CSV, npz, image folders and their own function, on files the tests
write; bad files refused with the file, the place and the fix, before any training."""

import json
from pathlib import Path

import numpy as np
import pytest

import modelforge
from modelforge.data.arrays import load, split_indices
from modelforge.errors import ConfigError
from tests.helpers import FAST, assert_refused, load_arrays, run_module, write_csv, write_images, write_npz

# 40 rows: a quarter (10) validates, the rest trains in batches of 8.
SMALL = ["data.validation_split=0.25", "trainer.batch_size=8"]


def dataset(compose, overrides, seed=0):
    """The config's data as a run loads it (plan first, as a run does)."""
    cfg = compose([*overrides, f"seed={seed}"])
    plan = modelforge.plan(cfg)
    run = modelforge.run_config(cfg)
    return plan, load(run.data, plan.info, run.seed, run.trainer.batch_size)


def test_csv_classes_are_mapped_in_sorted_order_and_split_with_the_run_seed(compose, tmp_path):
    x, labels = write_csv(tmp_path / "my.csv", labels=("yes", "no"))  # "no" sorts first: class 0
    plan, ds = dataset(compose, ["data=csv", f"data.path={tmp_path}/my.csv", "data.target=label", *SMALL], seed=3)
    assert plan.info.input_shape == (3,) and plan.info.num_outputs == 2 and plan.info.task == "classification"
    train, val = split_indices(40, 0.25, 3)
    expected = np.array([{"no": 0, "yes": 1}[t] for t in labels])
    np.testing.assert_array_equal(ds.x_train, x[train])
    np.testing.assert_array_equal(ds.y_val, expected[val])
    assert (len(ds.x_train), len(ds.x_val)) == (30, 10)


def test_csv_regression_with_chosen_features(compose, tmp_path):
    x, _ = write_csv(tmp_path / "t.csv")
    plan, ds = dataset(compose, ["data=csv", f"data.path={tmp_path}/t.csv", "data.target=c", "data.task=regression",
                                 "data.features=[b,a]", *SMALL])
    assert plan.info.input_shape == (2,) and plan.info.task == "regression" and plan.info.num_outputs == 1
    train, _ = split_indices(40, 0.25, 0)
    np.testing.assert_array_equal(ds.x_train, x[train][:, [1, 0]])
    np.testing.assert_array_equal(ds.y_train[:, 0], x[train][:, 2])


@pytest.mark.parametrize(("content", "words"), [
    ("", ["is empty", "header row"]),
    ("a,b,label\n", ["header but no rows"]),
    ("a,b,label\n1,2,x\n3,4\n", ["line 3 has 2 cells but the header has 3", "ragged"]),
    ("a,b,label\n1,2,x\n3,oops,y\n", ["line 3, column 'b' holds 'oops'", "not a number"]),
    ("a,b,label\n1,2,x\n3,,y\n", ["line 3, column 'b' has a missing value"]),
    ("a,b,label\n1,2,x\n3,4,x\n", ["column 'label' holds one class only ('x')", "data.task=regression"]),
    ("a,b,lable\n1,2,x\n3,4,y\n", ["no column 'label' (did you mean 'lable'?)"]),
])
def test_bad_csv_files_are_refused_with_the_file_and_the_place(compose, tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        modelforge.plan(compose(["data=csv", f"data.path={path}", "data.target=label"]))
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_a_missing_file_names_where_it_looked_and_exits_2_with_nothing_half_written(tmp_path):
    result = run_module(tmp_path, "data=csv", "data.path=nope.csv", "data.target=label")
    assert result.returncode == 2, result.stderr
    assert f"there is no file {tmp_path}/nope.csv" in result.stderr.replace("\n  ", " ")
    assert "Traceback" not in result.stderr
    # The folder says why nothing ran (as every refused run's does), and holds no result of a run.
    (record,) = (tmp_path / "outputs").rglob("metrics.json")
    assert json.loads(record.read_text())["status"] == "failed"
    assert "nope.csv" in json.loads(record.read_text())["error"]
    assert not {"init_plan.json", "history.csv", "model.keras", "checkpoint.npz"} & {
        p.name for p in record.parent.iterdir()}


def test_npz_with_validation_arrays_of_its_own(compose, tmp_path):
    rng = np.random.default_rng(5)
    x_val = rng.standard_normal((12, 3)).astype(np.float32)
    x, y = write_npz(tmp_path / "d.npz", x_val=x_val, y_val=np.array([0, 1] * 6))
    plan, ds = dataset(compose, ["data=npz", f"data.path={tmp_path}/d.npz", "data.x_val_key=x_val",
                                 "data.y_val_key=y_val", "trainer.batch_size=8"])
    np.testing.assert_array_equal(ds.x_train, x)  # no split: every training sample trains, in file order
    np.testing.assert_array_equal(ds.y_train, y)
    np.testing.assert_array_equal(ds.x_val, x_val)
    assert plan.info.num_outputs == 2


@pytest.mark.parametrize(("arrays", "overrides", "words"), [
    ({"x": np.zeros((40, 3)), "y": np.arange(40) % 2}, ["data.x_key=xs"], ["no array 'xs' (did you mean 'x'?)"]),
    ({"x": np.zeros((40, 3)), "y": np.arange(39) % 2}, [], ["40 samples but 'y' has 39"]),
    ({"x": np.zeros(40), "y": np.arange(40) % 2}, [], ["has shape [40]", "reshape(-1, 1)"]),
    ({"x": np.full((40, 3), np.nan), "y": np.arange(40) % 2}, [], ["NaN or infinite"]),
])
def test_bad_npz_files_are_refused(compose, tmp_path, arrays, overrides, words):
    np.savez(tmp_path / "d.npz", **arrays)
    assert_refused(lambda: modelforge.plan(compose(["data=npz", f"data.path={tmp_path}/d.npz", *SMALL, *overrides])),
                   *words)


@pytest.mark.parametrize("content, looks", [
    ("not a zip", "a text file whose first line is 'not a zip'"),
    ("a,b,label\n1,2,0\n", "(a CSV table?): use data=csv data.path=... data.target=<column>"),
    (b"\x93NUMPY\x01\x00", "a single .npy array, not an .npz archive: save x and y together with numpy.savez"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image: for a folder of images use data=images"),
])
def test_a_file_that_is_not_an_npz_says_what_it_looks_like(compose, tmp_path, content, looks):
    path = tmp_path / "d.npz"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match="is not an .npz archive numpy can read") as err:
        modelforge.plan(compose(["data=npz", f"data.path={path}"]))
    assert looks in str(err.value)


def test_conv_on_a_table_suggests_what_works_with_a_table(compose, tmp_path):
    write_csv(tmp_path / "t.csv", rows=60)
    with pytest.raises(ConfigError) as err:
        modelforge.plan(compose(["layer=conv", "data=csv", f"data.path={tmp_path}/t.csv", "data.target=label"]))
    said = str(err.value)
    assert "the data is a table of 3 features per sample, which conv2d cannot read" in said
    assert "layer=dense" in said and "data=digits" not in said


def test_callable_kwargs_take_new_keys_without_a_plus(compose, tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text("import numpy as np\n\ndef load(n=100):\n"
                                        "    x = np.random.default_rng(0).standard_normal((n, 4)).astype('float32')\n"
                                        "    return x, (x[:, 0] > 0).astype('int64')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose(["data=callable", "data._target_=mydata.load", "data.kwargs.n=60"])
    assert cfg.data.kwargs.n == 60
    assert modelforge.plan(cfg).info.samples == 60


def test_images_are_listed_by_class_streamed_and_decoded_to_their_pixels(compose, tmp_path):
    written = write_images(tmp_path / "imgs")
    plan, ds = dataset(compose, ["layer=conv", "data=images", f"data.path={tmp_path}/imgs",
                                 "data.validation_split=0.5", "trainer.batch_size=4"])
    assert plan.info.input_shape == (6, 5, 3) and plan.info.num_outputs == 2
    assert ds.x_train.dtype.kind == "U" and len(ds.x_train) == 10  # file paths: nothing loaded whole
    x, y = ds.probe(3)
    for path, pixels, label in zip(ds.x_train[:3], x, y, strict=True):
        np.testing.assert_allclose(pixels, written[path] / 255.0, atol=1e-7)
        assert label == ("dog" in Path(path).parts[-2])


def test_images_resized_and_grey(compose, tmp_path):
    write_images(tmp_path / "imgs", size=(9, 7))
    (tmp_path / "imgs" / "dog" / "00.png").unlink()
    write_images(tmp_path / "imgs" / "dog", classes=("more",), per_class=1, size=(4, 4))  # found in a subfolder too
    plan, ds = dataset(compose, ["layer=conv", "data=images", f"data.path={tmp_path}/imgs", "data.image_size=[8,8]",
                                 "data.color_mode=grayscale", "data.validation_split=0.5", "trainer.batch_size=4"])
    assert plan.info.input_shape == (8, 8, 1)
    x, _ = ds.probe(10)
    assert x.shape == (10, 8, 8, 1) and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize(("make", "words"), [
    (lambda root: root.mkdir(), ["has no subfolders"]),
    (lambda root: (write_images(root), (root / "bird").mkdir()), ["bird holds no images"]),
    (lambda root: write_images(root, classes=("cat",)), ["one class subfolder only ('cat')"]),
    (lambda root: (write_images(root), write_images(root, classes=("dog",), per_class=1, size=(3, 3))),
     ["mixed sizes", "set data.image_size=[6,5]"]),
    (lambda root: (write_images(root), (root / "cat" / "zz.png").write_text("not a png")), ["zz.png is not an image"]),
])
def test_bad_image_folders_are_refused(compose, tmp_path, make, words):
    root = tmp_path / "imgs"
    make(root)
    assert_refused(lambda: modelforge.plan(compose(["layer=conv", "data=images", f"data.path={root}"])), *words)


@pytest.mark.parametrize("kind", ["arrays", "split", "dataset"])
def test_a_users_function_gives_arrays_a_split_or_a_tf_dataset(compose, kind):
    kwargs = {"arrays": [], "split": ["+data.kwargs.split=true"], "dataset": ["+data.kwargs.dataset=true"]}[kind]
    plan, ds = dataset(compose, ["data=callable", "data._target_=tests.helpers.load_arrays", "data.task=regression",
                                 *kwargs])
    x, y = load_arrays()
    assert plan.info.input_shape == (5,) and plan.info.task == "regression"
    if kind == "split":
        np.testing.assert_array_equal(ds.x_val, x[40:])
        np.testing.assert_allclose(ds.y_val[:, 0], y[40:])
    else:
        train, _ = split_indices(60, 0.2, 0)
        np.testing.assert_array_equal(ds.x_train, x[train])
        np.testing.assert_allclose(ds.y_train[:, 0], y[train], rtol=1e-6)


@pytest.mark.parametrize(("overrides", "words"), [
    (["data._target_=os.system"], ["_target_='os.system' is refused"]),
    (["data._target_=tests.helpers.no_such"], ["cannot import", "no_such"]),
    (["data._target_=tests.helpers.FAST"], ["is not a function"]),
    (["data._target_=tests.helpers.load_arrays", "+data.kwargs.fail=true"],
     ["raised OSError: the data server is down"]),
])
def test_bad_functions_are_refused(compose, overrides, words):
    assert_refused(lambda: modelforge.plan(compose(["data=callable", *overrides])), *words)


def test_a_required_key_left_out_is_named(compose, tmp_path):
    write_csv(tmp_path / "t.csv")
    assert_refused(lambda: modelforge.plan(compose(["data=csv", f"data.path={tmp_path}/t.csv"])),
                   "data.target has no value")


@pytest.mark.slow
def test_csv_and_image_folders_train_from_the_command_line(tmp_path):
    write_csv(tmp_path / "my.csv")
    write_images(tmp_path / "my_images")
    csv_run = run_module(tmp_path, "data=csv", "data.path=my.csv", "data.target=label", *SMALL, *FAST)
    images_run = run_module(tmp_path, "layer=conv", "data=images", "data.path=my_images/", "data.validation_split=0.5",
                            "trainer.batch_size=4", *FAST)
    for result in (csv_run, images_run):
        assert result.returncode == 0, result.stderr
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "outputs").rglob("metrics.json"))]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert sorted(r["samples"]["train"] for r in records) == [10, 30]


def test_standardize_puts_the_training_statistics_in_the_saved_model(compose, tmp_path):
    import keras

    write_csv(tmp_path / "t.csv")
    result = modelforge.train(compose(csv_run(tmp_path)), run_dir=tmp_path / "run")
    _, ds = dataset(compose, ["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label", *SMALL])
    layer = result.model.layers[1]
    assert type(layer).__name__ == "Normalization" and layer.name == "standardize"
    np.testing.assert_allclose(np.asarray(layer.mean).reshape(-1), ds.x_train.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.variance).reshape(-1), ds.x_train.var(axis=0), rtol=1e-5)
    saved = keras.models.load_model(tmp_path / "run" / "model.keras")  # plain Keras: raw inputs in
    np.testing.assert_allclose(saved.predict(ds.x_val, verbose=0), result.model.predict(ds.x_val, verbose=0),
                               atol=1e-6)
    off = modelforge.train(compose([*csv_run(tmp_path), "data.standardize=false"]), run_dir=tmp_path / "off")
    assert "Normalization" not in {type(layer).__name__ for layer in off.model.layers}
    # build_model builds what the run built: the same layers, the standardize layer with the same statistics.
    built = modelforge.build_model(compose(csv_run(tmp_path)))
    assert [w.path for w in built.weights] == [w.path for w in result.model.weights]
    np.testing.assert_allclose(np.asarray(built.layers[1].mean), np.asarray(layer.mean), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(built.layers[1].variance), np.asarray(layer.variance), rtol=1e-6)
    other = modelforge.build_model(compose(csv_run(tmp_path)), input_shape=(3,))  # no split to take them from
    assert "Normalization" not in {type(layer).__name__ for layer in other.layers}


def csv_run(tmp_path):
    """A quick run on the CSV test file."""
    return ["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label", *SMALL, *FAST]
