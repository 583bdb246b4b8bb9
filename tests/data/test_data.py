"""Data: shapes per layout, seeded splits shared by every arm, synthetic data of any shape."""

import numpy as np
import pytest

from modelforge.core.config.schema import RunConfig
from modelforge.data import arrays as data
from tests.helpers import assert_refused, composed_plain

DIGITS = {"name": "digits", "validation_split": 0.2, "layout": "auto"}


def typed(cfg):
    """The typed data config, checked as the front door checks it."""
    return RunConfig.from_mapping({**composed_plain(), "data": cfg}).data


def describe(cfg, layout):
    return typed(cfg).describe(layout)


@pytest.mark.parametrize(("layout", "shape"), [("flat", (64,)), ("image", (8, 8, 1)), ("sequence", (8, 8))])
def test_digits_layouts(layout, shape):
    info = describe(DIGITS, layout)
    assert info.input_shape == shape
    ds = data.load(typed(DIGITS), info, seed=0)
    assert ds.x_train.shape[1:] == shape
    assert len(ds.x_train) + len(ds.x_val) == 1797
    assert len(ds.x_val) == round(1797 * 0.2)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert set(np.unique(ds.y_train)) == set(range(10))


def test_explicit_layout_beats_the_layer():
    assert describe({**DIGITS, "layout": "flat"}, "image").input_shape == (64,)


def test_split_is_seeded_and_shared_across_layouts():
    flat = data.load(typed(DIGITS), describe(DIGITS, "flat"), seed=4)
    image = data.load(typed(DIGITS), describe(DIGITS, "image"), seed=4)
    np.testing.assert_array_equal(flat.x_val, image.x_val.reshape(len(image.x_val), 64))
    np.testing.assert_array_equal(flat.y_train, image.y_train)
    other = data.load(typed(DIGITS), describe(DIGITS, "flat"), seed=5)
    assert not np.array_equal(flat.y_val, other.y_val)
    train, val = data.split_indices(100, 0.25, seed=4)
    assert len(val) == 25 and not set(train) & set(val) and set(train) | set(val) == set(range(100))


def test_synthetic_classification_and_regression():
    cfg = {"name": "synthetic", "task": "classification", "num_samples": 200, "shape": [6, 4, 2],
           "num_classes": 3, "num_targets": 1, "noise": 0.1, "validation_split": 0.5}
    info = describe(cfg, "flat")
    assert (info.input_shape, info.num_outputs) == ((6, 4, 2), 3)
    ds = data.load(typed(cfg), info, seed=1)
    assert ds.x_train.shape == (100, 6, 4, 2) and set(np.unique(ds.y_train)) <= {0, 1, 2}
    again = data.load(typed(cfg), info, seed=1)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    reg = {**cfg, "task": "regression", "num_targets": 2}
    rinfo = describe(reg, "flat")
    rds = data.load(typed(reg), rinfo, seed=1)
    assert rinfo.task == "regression" and rds.y_train.shape == (100, 2) and rds.y_train.dtype == np.float32


@pytest.mark.parametrize(("cfg", "word"), [
    ({"name": "mnistt", "validation_split": 0.2}, "mnistt"),
    ({**DIGITS, "layout": "cube"}, "cube"),
    ({"name": "synthetic", "task": "ranking", "num_samples": 10, "shape": [4], "num_classes": 2, "num_targets": 1,
      "noise": 0.0, "validation_split": 0.2}, "ranking"),
    ({"name": "synthetic", "task": "classification", "num_samples": 10, "shape": [0], "num_classes": 2,
      "num_targets": 1, "noise": 0.0, "validation_split": 0.2}, "data.shape"),
    ({**DIGITS, "layuot": "flat"}, "did you mean 'data.layout'"),
])
def test_bad_data_config(cfg, word):
    assert_refused(lambda: describe(cfg, "flat"), word)
