"""Reuse across projects: the wheel, another app composing modelforge's groups, config packs, saved models."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import modelforge
from tests.helpers import FAST, REPO, assert_refused, overlay_venv, run_dirs, run_module

PACK_CONF = REPO / "examples" / "config_pack" / "mf_extra_pack" / "conf"


def run(py, *args, cwd, timeout=600):
    return subprocess.run([str(py), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_carries_everything_and_other_project_runs_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(dist), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("modelforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert len(yamls) >= 48
    assert {f"modelforge/conf/{y}" for y in yamls} <= names
    # The one config tree ships once: every YAML file in the wheel is one of conf/'s, at one place.
    assert sorted(n for n in names if n.endswith(".yaml")) == sorted(f"modelforge/conf/{y}" for y in yamls)
    assert [n for n in names if n.startswith("modelforge/conf/") and n.endswith(".py")] == [
        "modelforge/conf/__init__.py"]
    assert "hydra_plugins/modelforge_searchpath/searchpath.py" in names
    assert "hydra_plugins/__init__.py" not in names

    # A fresh venv that sees the dev venv's TensorFlow and friends (not its modelforge), with modelforge
    # installed from the wheel.
    py = overlay_venv(tmp_path / "venv")
    site = run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    installed = run(py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    app = tmp_path / "elsewhere" / "other_project"
    app.mkdir(parents=True)
    for path in (REPO / "examples" / "other_project").rglob("*"):
        if path.is_file():
            (app / path.relative_to(REPO / "examples" / "other_project")).parent.mkdir(parents=True, exist_ok=True)
            (app / path.relative_to(REPO / "examples" / "other_project")).write_bytes(path.read_bytes())
    trained = run(py, "app.py", "epochs=2", "model.units=16", cwd=app)
    assert trained.returncode == 0, trained.stderr
    assert f"modelforge from {site}/modelforge" in trained.stdout
    assert "own initializer scheme 'warm_start_from_checkpoint'" in trained.stdout
    (run_dir,) = run_dirs(app / "outputs")
    assert {"model.keras", "init_plan.json", "history.csv"} <= {p.name for p in run_dir.iterdir()}

    swept = run(py, "app.py", "-m", "modelforge/initializer@model.initializer=glob(*)", "dry_run=true", cwd=app)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.count("modelforge chose") == len(list((REPO / "conf" / "initializer").glob("*.yaml")))

    # modelforge's own CLI from the wheel, from a folder with no config of its own.
    alone = run(py, "-m", "modelforge", "trainer.epochs=1", "model.units=4", "trainer.verbose=0",
                cwd=tmp_path / "elsewhere")
    assert alone.returncode == 0, alone.stderr

    # A user's pip-installed config pack adds options to modelforge's groups.
    # Installed from a copy: setuptools builds in the source folder, and the checkout is not written into.
    shutil.copytree(REPO / "examples" / "config_pack", tmp_path / "config_pack")
    pack = run(py, "-m", "pip", "install", "-q", "--no-deps", str(tmp_path / "config_pack"), cwd=tmp_path)
    assert pack.returncode == 0, pack.stderr
    helped = run(py, "-m", "modelforge", "--help", cwd=tmp_path / "elsewhere")
    for option in ("he_gain2", "scaled_normal", "softsign"):
        assert option in helped.stdout
    (tmp_path / "pack_run").mkdir()
    pack_args = ("-m", "modelforge", "initializer=scaled_normal", "activation=softsign", "trainer.epochs=1",
                 "model.units=4", "trainer.verbose=0")
    # An installed package's class is imported only once the user trusts it, outside the config.
    untrusted = run(py, *pack_args, cwd=tmp_path / "pack_run")
    assert_refused(untrusted, "MODELFORGE_TRUSTED_MODULES=mf_extra_pack")
    custom = subprocess.run([str(py), *pack_args], cwd=tmp_path / "pack_run", capture_output=True, text=True,
                            timeout=600, env={**os.environ, "MODELFORGE_TRUSTED_MODULES": "mf_extra_pack"})
    assert custom.returncode == 0, custom.stderr
    assert "ScaledNormal" in custom.stdout
    (model,) = Path(tmp_path / "pack_run" / "outputs").rglob("model.keras")
    loaded = run(py, "-c", f"import mf_extra_pack.inits, keras; keras.models.load_model(r'{model}'); print('ok')",
                 cwd=tmp_path)
    assert loaded.stdout.strip().endswith("ok"), loaded.stderr

    # The user's own project, installed editable: its files stay in the project, so its loader is the user's.
    project = tmp_path / "my_project"
    (project / "my_loaders").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "my-loaders"\nversion = "0"\n'
                                            '[tool.setuptools]\npackages = ["my_loaders"]\n')
    (project / "my_loaders" / "__init__.py").write_text(
        "import numpy as np\n\ndef load():\n    x = np.random.default_rng(0).standard_normal((60, 4))\n"
        "    return x.astype('float32'), (x[:, 0] > 0).astype('int64')\n")
    editable = run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(project),
                   cwd=tmp_path)
    assert editable.returncode == 0, editable.stderr
    own = run(py, "-m", "modelforge", "data=callable", "data._target_=my_loaders.load", "trainer.epochs=1",
              "model.units=4", "trainer.verbose=0", cwd=tmp_path / "elsewhere")
    assert own.returncode == 0, own.stderr


def test_other_app_composes_namespaced_groups_beside_its_own():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "examples" / "other_project" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["modelforge/initializer@model.initializer=variance_scaling",
                                           "model.initializer.scale=3.0"])
    assert cfg.initializer.scheme == "warm_start_from_checkpoint"  # the app's own group
    assert cfg.model.initializer.name == "variance_scaling" and cfg.model.initializer.scale == 3.0
    assert cfg.model.layer.type == "dense" and cfg.model.activation.name == "tanh"
    mf = modelforge.compose(["model.units=8"], groups={"layer": cfg.model.layer, "activation": cfg.model.activation,
                                                       "initializer": cfg.model.initializer})
    kernels = [e for e in modelforge.plan(mf).entries if e.weight == "kernel"]
    assert {(e.choice.name, e.choice.source) for e in kernels} == {("variance_scaling", "override")}
    assert kernels[0].target_std == pytest.approx((3.0 / 64) ** 0.5)


@pytest.mark.slow
def test_other_apps_help_lists_no_launcher_it_cannot_use_and_its_launchers_run(tmp_path):
    """The namespace holds modelforge's groups, not its `hydra/` options (Hydra takes launchers from its own
    group only); modelforge's launchers are stored there by its plugins, and run in another app's sweep."""
    import shutil
    import subprocess
    import sys

    app = shutil.copytree(REPO / "examples" / "other_project", tmp_path / "app")
    helped = subprocess.run([sys.executable, "app.py", "--help"], cwd=app, capture_output=True, text=True,
                            timeout=300)
    assert helped.returncode == 0 and "modelforge/initializer: auto, " in helped.stdout
    assert "modelforge/hydra" not in helped.stdout
    swept = subprocess.run([sys.executable, "app.py", "-m", "hydra/launcher=parallel", "dry_run=true",
                            "modelforge/initializer@model.initializer=he_normal,glorot_uniform"], cwd=app,
                           capture_output=True, text=True, timeout=300)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.count("built modelforge with") == 2 and "[('glorot_uniform', 'override')]" in swept.stdout


@pytest.mark.parametrize("layer", ["lstm", "gru", "conv", "conv1d"])
def test_other_app_picks_every_namespaced_layer_option(layer):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "examples" / "other_project" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"modelforge/layer@model.layer={layer}",
                                           "modelforge/activation@model.activation=auto"])
    assert set(cfg) == {"model", "initializer", "project", "seed", "epochs", "dry_run"}
    mf = modelforge.compose(["model.units=4"], groups={"layer": cfg.model.layer, "activation": cfg.model.activation,
                                                       "initializer": cfg.model.initializer})
    body = [spec for spec in modelforge.plan(mf).specs if spec.name.startswith("block1_")]
    assert body[0].type == cfg.model.layer.type
    assert body[0].activation == ("tanh" if layer in ("lstm", "gru") else "relu")


def test_config_pack_through_searchpath(compose):
    cfg = compose([f"hydra.searchpath=[file://{PACK_CONF}]", "initializer=he_gain2", "activation=softsign"])
    entry = modelforge.plan(cfg).entries[0]
    assert (entry.choice.name, entry.choice.params["scale"], entry.choice.source) == ("variance_scaling", 4.0,
                                                                                     "override")
    cfg = compose([f"hydra.searchpath=[file://{PACK_CONF}]", "activation=softsign"])
    entry = modelforge.plan(cfg).entries[0]
    assert (entry.choice.name, entry.choice.source) == ("lecun_uniform", "policy:softsign")


@pytest.mark.slow
def test_config_pack_folder_from_the_environment_shows_in_help_and_globs(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFORGE_CONFIG_PATH", str(PACK_CONF))
    monkeypatch.setenv("PYTHONPATH", str(PACK_CONF.parents[1]))  # the pack's ScaledNormal class
    result = run_module(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "he_gain2" in result.stdout and "softsign" in result.stdout and "scaled_normal" in result.stdout
    swept = run_module(tmp_path, "plan", "-m", "initializer=glob(*)", "model.depth=1")
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.count("plan saved") == len(list((REPO / "conf" / "initializer").glob("*.yaml"))) + 2


SAVED = {
    "dense_leaky": ["activation=leaky_relu"],
    "conv_prelu": ["layer=conv", "activation=prelu"],
    "depthwise": ["+model.layers=[{type:depthwise_conv2d,kernel_size:3,depth_multiplier:2},"
                  "{type:separable_conv2d,filters:4,kernel_size:3}]"],
    "lstm": ["layer=lstm"],
    "tokens": ["data.layout=tokens", "+model.layers=[{type:embedding,input_dim:17,output_dim:4},{type:gru,units:4}]"],
}


@pytest.mark.slow
def test_saved_models_load_in_plain_keras(compose, tmp_path):
    for name, overrides in SAVED.items():
        modelforge.train(compose([*FAST, *overrides]), run_dir=tmp_path / name)
    code = ("import sys, keras, numpy\n"
            "for name in sys.argv[1:]:\n"
            "    m = keras.models.load_model(f'{name}/model.keras')\n"
            "    numpy.save(f'{name}/weights.npy', numpy.concatenate([w.numpy().ravel() for w in m.weights]))\n"
            "print(sorted(k for k in sys.modules if k.startswith('modelforge')))\n")
    result = subprocess.run([sys.executable, "-c", code, *SAVED], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    import keras

    for name in SAVED:
        here = keras.models.load_model(tmp_path / name / "model.keras")
        there = np.load(tmp_path / name / "weights.npy")
        np.testing.assert_array_equal(np.concatenate([w.numpy().ravel() for w in here.weights]), there)


@pytest.mark.slow
def test_editable_install_with_extras_keeps_the_plugin_working(tmp_path):
    # The README's extras line, `pip install -e '.[sweeps,slurm]'`, into a fresh venv (dependencies seen
    # through the dev venv): the editable install must stay a plain .pth of the checkout, which Hydra's
    # pkgutil plugin scan sees, so another app still finds modelforge/initializer/... .
    py = overlay_venv(tmp_path / "venv")
    installed = run(py, "-m", "pip", "install", "-q", "--no-deps", "-e", f"{REPO}[sweeps,slurm]", cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (pth,) = site.glob("__editable__*modelforge*.pth")
    assert pth.read_text().strip() == str(REPO)
    app = REPO / "examples" / "other_project"
    result = run(py, str(app / "app.py"), "modelforge/initializer@model.initializer=lecun_normal", "dry_run=true",
                 f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "('lecun_normal', 'override')" in result.stdout and f"modelforge from {REPO / 'modelforge'}" in result.stdout
