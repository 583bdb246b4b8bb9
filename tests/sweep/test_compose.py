"""Config composition: the whole default config, group interplay, and every shipped option."""


import pytest
from omegaconf import OmegaConf

import modelforge
from tests.helpers import REPO, write_csv, write_images, write_npz

CONF = REPO / "conf"


def plain(cfg):
    return OmegaConf.to_container(cfg, resolve=True)


def test_default_config_whole(compose):
    cfg = plain(compose())
    assert cfg == {
        "activation": {"name": "auto"},
        "layer": {"type": "dense"},
        "model": {"depth": 2, "units": 64, "layers": None, "blocks": None, "output": None, "norm": None},
        "initializer": cfg["initializer"],  # checked below, rule by rule
        "residual": {"name": "none"},
        "parametrization": {"name": "standard"},
        "data": {"name": "digits", "validation_split": 0.2, "layout": "auto"},
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "trainer": {
            "epochs": 20, "batch_size": 32, "shuffle": True, "verbose": "auto", "deterministic": True,
            "diagnose": False,
            "diagnose_jacobian": False,
            "coord_check": 0,
            "objective": "auto", "metrics": None, "loss": "auto", "class_weight": None, "precision": "float32",
            "strategy": "default",
            "early_stopping": {"enabled": False, "monitor": "val_loss", "patience": 5, "min_delta": 0.0,
                               "restore_best_weights": True},
            "reduce_on_plateau": {"enabled": False, "monitor": "val_loss", "factor": 0.1, "patience": 10,
                                  "min_delta": 0.0001, "cooldown": 0, "min_lr": 0.0},
        },
        "logger": {"name": "csv"},
        "seed": 0,
    }
    assert cfg["initializer"]["name"] == "auto"
    assert cfg["initializer"]["default"] == "glorot_uniform"
    assert cfg["initializer"]["families"] == {"rectifier": "he_normal", "saturating": "glorot_uniform",
                                              "self_normalizing": "lecun_normal", "linear": "glorot_uniform"}
    assert cfg["initializer"]["rules"] == {}


def activations(cfg):
    return {spec.name: spec.activation for spec in modelforge.plan(cfg).specs}


@pytest.mark.parametrize("layer", ["lstm", "gru"])
def test_auto_activation_is_tanh_for_recurrent_cells_unless_told(compose, layer):
    cells = {f"block1_{layer}", f"block2_{layer}"}
    assert {activations(compose([f"layer={layer}"]))[name] for name in cells} == {"tanh"}
    assert {activations(compose([f"layer={layer}", "activation=relu"]))[name] for name in cells} == {"relu"}
    assert activations(compose([f"layer={layer}"]))["head"] == "softmax"


def test_auto_activation_is_relu_elsewhere_and_per_type_in_explicit_lists(compose):
    assert activations(compose([]))["block1_dense"] == "relu"
    assert activations(compose(["layer=conv"]))["block1_conv2d"] == "relu"
    cfg = compose(["data.layout=sequence",
                   "+model.layers=[{type:conv1d,filters:4,kernel_size:3},{type:gru,units:4},{type:dense,units:4}]"])
    assert activations(cfg) == {"layer1_conv1d": "relu", "layer2_gru": "tanh", "layer3_dense": "relu",
                                "head": "softmax"}


def test_auto_activation_takes_no_parameters(compose):
    with pytest.raises(modelforge.ConfigError, match="activation=tanh"):
        modelforge.plan(compose(["layer=lstm", "+activation.negative_slope=0.1"]))


def test_model_presets_pick_their_layer_and_command_line_wins(compose):
    cnn = compose(["model=cnn"])
    assert (cnn.layer.type, cnn.model.units) == ("conv2d", 32)
    assert compose(["model=cnn", "layer=dense"]).layer.type == "dense"
    assert compose(["model=rnn"]).layer.type == "lstm"


def test_variance_scaling_override(compose):
    cfg = compose(["initializer=variance_scaling", "initializer.scale=2.0", "initializer.mode=fan_avg",
                   "initializer.distribution=uniform"])
    assert plain(cfg)["initializer"] == {"name": "variance_scaling", "scale": 2.0, "mode": "fan_avg",
                                         "distribution": "uniform"}
    entry = modelforge.plan(cfg).entries[0]
    assert (entry.choice.name, entry.choice.source) == ("variance_scaling", "override")
    assert entry.target_std == pytest.approx((2.0 / ((64 + 64) / 2)) ** 0.5)


def test_typed_keys_reach_the_plan(compose):
    cfg = compose(["model.depth=3", "model.units=16", "seed=5", "trainer.epochs=2", "trainer.batch_size=8",
                   "data.validation_split=0.3", "optimizer.learning_rate=0.01"])
    plan = modelforge.plan(cfg)
    assert [e.layer for e in plan.entries if e.weight == "kernel"] == [
        "block1_dense", "block2_dense", "block3_dense", "head"]
    assert plan.entries[0].shape == (64, 16)


GROUPS = ["layer", "activation", "initializer", "data", "model", "optimizer", "trainer", "logger"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_plans(compose, group, tmp_path):
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, group
    # The user's data options read files (or call a function) to know their shape.
    write_csv(tmp_path / "t.csv")
    write_npz(tmp_path / "t.npz")
    write_images(tmp_path / "images")
    small = ["data.validation_split=0.25", "trainer.batch_size=8"]  # 40 rows: 30 to train on, 10 to validate
    user = {"synthetic": ["data.shape=[8,8,1]"], "csv": [f"data.path={tmp_path}/t.csv", "data.target=label", *small],
            "npz": [f"data.path={tmp_path}/t.npz", *small],
            "callable": ["data._target_=tests.helpers.load_arrays", "data.task=regression"],
            "images": [f"data.path={tmp_path}/images", "data.validation_split=0.5", "trainer.batch_size=4"]}
    for option in options:
        overrides = [f"{group}={option}"]
        if group == "data":
            overrides += user.get(option, [])
        cfg = compose(overrides)
        plan = modelforge.plan(cfg)
        assert plan.entries[-1].layer == "head"


def test_config_folders_hold_yaml_only():
    # Hydra's pkg:// source needs conf/__init__.py at the root it reads, and nothing below it.
    inits = {p.relative_to(CONF).as_posix() for p in CONF.rglob("__init__.py")}
    assert inits == {"__init__.py"}
