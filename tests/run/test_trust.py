"""Issue 17, in process: what a config may import, data that must never train, checkpoints that survive damage,
folders that hold only what modelforge wrote. Each fault is caused, not described."""

import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import modelforge
from modelforge.core.config import digest
from modelforge.core.config.targets import TRUST_ENV, allowed_module, import_target, is_users_own
from modelforge.errors import ConfigError
from modelforge.run import checkpoint
from modelforge.run.folder import RunFolder
from tests.helpers import REPO, assert_refused, on_a_small_disk, write_csv, write_images, write_npz

SMALL = ["model.units=4", "model.depth=1", "trainer.batch_size=4"]


# Point 2: an allowlist decided before anything is imported.
def _loaders(marker):
    """Targets a hostile config could name, each with kwargs that would leave `marker` behind if they ran."""
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "timeit.timeit": [f"+data.kwargs.stmt=\"{code}\"", "+data.kwargs.number=1"],
        "pydoc.pipepager": ["+data.kwargs.text=x", f"+data.kwargs.cmd='touch {marker}'"],
        "tensorflow.io.gfile.rmtree": [f"+data.kwargs.path='{marker.parent}'"],
        "numpy.savetxt": [f"+data.kwargs.fname='{marker}'", "+data.kwargs.X=[1]"],
        "cProfile.run": [f"+data.kwargs.statement=\"{code}\""],
        "subprocess.Popen": [f"+data.kwargs.args=[touch,'{marker}']"],
        "os.system": [f"+data.kwargs.command='touch {marker}'"],
        "builtins.eval": [f"+data.kwargs.source=\"{code}\""],
        "keras.utils.get_file": [f"+data.kwargs.fname='{marker}'", "+data.kwargs.origin=file:///etc/hostname"],
    }


@pytest.mark.parametrize("target", sorted(_loaders(Path("m"))))
def test_hostile_targets_are_refused_before_import_and_leave_no_trace(compose, tmp_path, target):
    marker = tmp_path / "keep" / "marker"
    marker.parent.mkdir()
    top = target.split(".")[0]
    was_imported = top in sys.modules
    with pytest.raises(ConfigError) as err:
        modelforge.plan(compose(["data=callable", f"data._target_={target}", *_loaders(marker)[target]]))
    assert f"_target_={target!r} is refused" in str(err.value)
    assert f"{TRUST_ENV}={top}" in str(err.value)  # how to trust it, outside the config
    assert not marker.exists() and marker.parent.is_dir()
    if not was_imported:
        assert top not in sys.modules  # refused from its spec alone: the module never ran


def test_the_users_own_code_is_allowed_and_a_reexport_is_not(compose, tmp_path, monkeypatch):
    package = tmp_path / "my_project"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "loaders.py").write_text(
        "import numpy as np\nfrom os import system  # a door a config must not open\n\n"
        "def load(n=30):\n    rng = np.random.default_rng(0)\n    x = rng.standard_normal((n, 3))\n"
        "    return x.astype('float32'), (x[:, 0] > 0).astype('int64')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert is_users_own("my_project") and not is_users_own("json") and not is_users_own("numpy")
    plan = modelforge.plan(compose(["data=callable", "data._target_=my_project.loaders.load", "+data.kwargs.n=60",
                                    *SMALL]))
    assert plan.info.input_shape == (3,)
    with pytest.raises(ConfigError, match="'my_project.loaders.system' is refused") as err:
        import_target("my_project.loaders.system", "data._target_", "function")
    # The module the user wrote is named, and nothing suggests trusting the standard library's `posix`.
    assert "'my_project' only re-exports it from 'posix'" in str(err.value) and TRUST_ENV not in str(err.value)
    with pytest.raises(ConfigError, match="there is no module 'my_projekt' on this Python's path") as err:
        import_target("my_projekt.loaders.load", "data._target_", "function")
    assert "installed package" not in str(err.value)


def test_trust_comes_from_the_environment_only(compose, monkeypatch):
    assert not allowed_module("sklearn.datasets")
    monkeypatch.setenv(TRUST_ENV, "sklearn")
    assert allowed_module("sklearn.datasets")
    plan = modelforge.plan(compose(["data=callable", "data._target_=sklearn.datasets.load_iris",
                                    "+data.kwargs.return_X_y=true"]))
    assert plan.info.input_shape == (4,) and plan.info.num_outputs == 3
    monkeypatch.delenv(TRUST_ENV)
    assert_refused(lambda: modelforge.run_config({**modelforge.compose(["data=digits"]), "trusted_modules": ["os"]}),
                   "cannot say which packages to trust")


def test_initializer_targets_are_keras_initializer_classes_only(compose):
    cfg = compose(["~initializer", "+initializer._target_=keras.initializers.HeNormal"])
    assert {e.choice.name for e in modelforge.plan(cfg).entries if e.weight == "kernel"} == {"custom"}
    for target, words in (("keras.utils.get_file", "is refused"), ("keras.initializers.get", "is not a class"),
                          ("tests.warm.Cold", "not a keras.initializers.Initializer"),
                          ("modelforge.errors.ConfigError", "may name only the modelforge objects made for it")):
        assert_refused(
            lambda target=target: modelforge.plan(compose(["~initializer", f"+initializer._target_={target}"])),
            words)


# Point 6: bad data never trains.
def _refused(compose, overrides):
    with pytest.raises(ConfigError) as err:
        modelforge.plan(compose([*overrides, *SMALL]))
    return " ".join(str(err.value).split())


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e400", "-1e39"])
def test_csv_cells_beyond_float32_are_named_with_line_column_and_count(compose, tmp_path, cell):
    write_csv(tmp_path / "t.csv", rows=60)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], cell, 1)
    lines[7] = lines[7].replace(lines[7].split(",")[1], cell, 1)
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    said = _refused(compose, ["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label"])
    assert "has 2 values" in said and "first at line 4, column 'b'" in said and "t.csv" in said


def test_a_csv_value_inside_float32s_range_is_taken(compose, tmp_path):
    write_csv(tmp_path / "t.csv", rows=60)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    lines[3] = "3e38," + lines[3].split(",", 1)[1]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    assert modelforge.plan(compose(["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label", *SMALL]))


def test_a_csv_that_is_not_utf8_names_the_byte_and_the_key(compose, tmp_path):
    write_csv(tmp_path / "t.csv", rows=60, labels=("no", "oui"))
    raw = (tmp_path / "t.csv").read_bytes().replace(b"oui", "ouï".encode("latin-1"))
    (tmp_path / "t.csv").write_bytes(raw)
    said = _refused(compose, ["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label"])
    offset = raw.index(b"\xef")
    assert f"byte {offset}" in said and "data.encoding=latin-1" in said
    plan = modelforge.plan(compose(["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label",
                                    "data.encoding=latin-1", *SMALL]))
    assert plan.info.num_outputs == 2


def test_npz_labels_with_nan_and_inputs_with_nan_are_named(compose, tmp_path):
    x, y = write_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "labels.npz", x=x, y=np.where(np.arange(len(y)) == 5, np.nan, y.astype(float)))
    said = _refused(compose, ["data=npz", f"data.path={tmp_path}/labels.npz"])
    assert "data.y_key" in said and "'y' has 1 value" in said and "sample 5" in said
    x[2, 1] = np.nan
    np.savez(tmp_path / "inputs.npz", x=x, y=y)
    said = _refused(compose, ["data=npz", f"data.path={tmp_path}/inputs.npz"])
    assert "'x' has 1 value" in said and "sample 2, index [1]" in said


def test_an_npz_whose_header_declares_a_huge_shape_is_refused_before_loading(compose, tmp_path):
    write_npz(tmp_path / "ok.npz")
    with zipfile.ZipFile(tmp_path / "ok.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = members["x.npy"][:128].decode("latin-1")
    members["x.npy"] = (header.replace("(40, 3)", "(4000000000, 3)").encode("latin-1")[:128]
                        + members["x.npy"][128:])
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    said = _refused(compose, ["data=npz", f"data.path={tmp_path}/huge.npz"])
    assert "declares shape [4000000000, 3]" in said and "damaged or truncated" in said
    (tmp_path / "not.npz").write_text("a,b\n1,2\n")
    said = _refused(compose, ["data=npz", f"data.path={tmp_path}/not.npz"])
    assert "is not an .npz archive numpy can read" in said and "(a CSV table?)" in said


RETURNS = {
    "one_d": ("np.zeros(20, 'float32'), np.zeros(20)", "returned x of shape [20]"),
    "strings": ("np.array([['a', 'b']] * 20), np.zeros(20)", "returned x of <U1 values"),
    "ragged": ("[[1.0, 2.0], [3.0]] * 10, [0, 1] * 10", "numpy cannot make one array"),
    "none": ("np.zeros((20, 2)), None", "returned None for y"),
    "widths": ("((np.zeros((20, 2)), np.arange(20) % 2), (np.zeros((5, 3)), np.arange(5) % 2))",
               "validation inputs of shape [3] per sample but training inputs of [2]"),
    "nan": ("np.full((20, 2), np.nan), np.arange(20) % 2", "x has 40 values that are NaN"),
    "exits": ("sys.exit(0)", "raised SystemExit: 0"),
}


@pytest.mark.parametrize("case", sorted(RETURNS))
def test_a_callables_result_is_checked(compose, tmp_path, monkeypatch, case):
    body, words = RETURNS[case]
    (tmp_path / f"loader_{case}.py").write_text(f"import sys\nimport numpy as np\n\ndef load():\n    return {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert words in _refused(compose, ["data=callable", f"data._target_=loader_{case}.load"])


def test_a_truncated_image_is_named_before_training_and_remembered_when_good(compose, tmp_path, capsys):
    root = tmp_path / "imgs"
    write_images(root)
    bad = root / "dog" / "03.png"
    bad.write_bytes(bad.read_bytes()[:60])  # a valid header, then nothing
    for resize in ([], ["data.image_size=[6,5]"]):
        cfg = compose(["layer=conv", "data=images", f"data.path={root}", *resize, *SMALL, "trainer.epochs=1",
                       "trainer.verbose=0", "data.validation_split=0.5"])
        with pytest.raises(ConfigError, match=f"{bad} cannot be decoded as an image"):
            modelforge.train(cfg, run_dir=tmp_path / f"run{len(resize)}")
        assert not (tmp_path / f"run{len(resize)}" / "history.csv").exists()
    write_images(root)  # repaired: it trains, and the next run does not decode the folder again
    cfg = compose(["layer=conv", "data=images", f"data.path={root}", *SMALL, "trainer.epochs=1", "trainer.verbose=0",
                   "data.validation_split=0.5"])
    capsys.readouterr()
    first = modelforge.train(cfg, run_dir=tmp_path / "good")
    assert first["status"] == "completed"
    assert "checked 20 images by decoding each once" in capsys.readouterr().out
    modelforge.train(cfg, run_dir=tmp_path / "again")
    assert "checked" not in capsys.readouterr().out


def test_an_image_damaged_in_place_with_its_size_and_mtime_kept_is_decoded_again(compose, tmp_path):
    """The verified-images memory is keyed on the inode and status-change time too: bytes overwritten in place,
    the size kept and the mtime set back, are checked again and named."""
    root = tmp_path / "imgs"
    write_images(root)
    cfg = compose(["layer=conv", "data=images", f"data.path={root}", *SMALL, "trainer.epochs=1", "trainer.verbose=0",
                   "data.validation_split=0.5"])
    assert modelforge.train(cfg, run_dir=tmp_path / "good")["status"] == "completed"
    bad = root / "dog" / "03.png"
    before = bad.stat()
    data = bad.read_bytes()
    with open(bad, "r+b") as f:  # the same size, garbage after the header
        f.seek(60)
        f.write(b"\0" * (len(data) - 60))
    os.utime(bad, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (bad.stat().st_size, bad.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(ConfigError, match=f"{bad} cannot be decoded as an image"):
        modelforge.train(cfg, run_dir=tmp_path / "damaged")


# Point 4: checkpoints in two generations.
def _generation(folder, value, size=8):
    checkpoint.write_arrays(folder, "c.npz", {"w": np.full(size, value, dtype=np.float32)}, {"epochs_done": value})


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "bytes", "missing"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, damage):
    folder = RunFolder(tmp_path)
    _generation(folder, 1)
    _generation(folder, 2)
    latest = tmp_path / "c.npz"
    raw = latest.read_bytes()
    if damage == "truncated":
        latest.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        latest.write_bytes(b"")
    elif damage == "garbage":
        latest.write_bytes(os.urandom(len(raw)))
    elif damage == "bytes":  # a whole zip whose array is not what the digest says
        with np.load(latest) as found:
            state = found["state"]
        np.savez(latest, w=np.full(8, 9, dtype=np.float32), state=state)
    else:
        latest.unlink()
    arrays, state = checkpoint.read_arrays(latest)
    assert state["epochs_done"] == 1 and arrays["w"][0] == 1
    assert "continuing from c.prev.npz (after epoch 1)" in capsys.readouterr().out
    checkpoint.previous(latest).write_bytes(b"")
    assert checkpoint.read_arrays(latest) is None
    assert "starts again from its first epoch" in capsys.readouterr().out


FILLS_UP = """
import os
import numpy as np
import pytest
from modelforge.run import checkpoint
from modelforge.run.folder import RunFolder
from tests.run.test_trust import _generation

mount = os.environ["DISK"]
folder = RunFolder(mount)
_generation(folder, 1, size=1000)  # 4 KB
with pytest.raises(OSError) as err:
    _generation(folder, 2, size=100_000)  # 400 KB: the disk fills in the middle of the write
assert err.value.errno == 28  # ENOSPC
arrays, state = checkpoint.read_arrays(checkpoint.Path(mount) / "c.npz")
assert state["epochs_done"] == 1 and arrays["w"].shape == (1000,)
assert not [p for p in os.listdir(mount) if ".tmp" in p]
print("held")
"""


def test_a_full_disk_while_writing_leaves_the_previous_generation(tmp_path):
    done = on_a_small_disk(tmp_path / "small", "64k", '"$PY" -c "$CHECK"', cwd=REPO, env={"CHECK": FILLS_UP})
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "held", done.stderr


# Point 3: the digest of the result-affecting keys.
def test_result_neutral_keys_may_change_and_others_may_not(compose):
    cfg = modelforge.run_config(compose(["trainer.epochs=2"])).resolved
    recorded = digest.record(cfg)
    quieter = {**cfg, "trainer": {**cfg["trainer"], "verbose": 2}, "logger": {"name": "tensorboard"}}
    assert digest.changes(recorded, quieter) == []
    other = {**cfg, "seed": 3, "optimizer": {**cfg["optimizer"], "learning_rate": 0.5}}
    assert digest.changes(recorded, other) == [("optimizer.learning_rate", 0.001, 0.5), ("seed", 0, 3)]


# Point 7: folders.
def test_resume_removes_only_its_own_temporary_files(tmp_path):
    folder = RunFolder(tmp_path)
    folder.lock()
    folder.write_json("metrics.json", {"status": "running", "temp_token": folder.token})
    folder.unlock()
    (tmp_path / ".notes.tmp.txt").write_text("the user's")
    (tmp_path / f".metrics.{folder.token}-abcd1234.tmp.json").write_text("half")
    assert RunFolder(tmp_path).clean_temp_files() == [f".metrics.{folder.token}-abcd1234.tmp.json"]
    assert (tmp_path / ".notes.tmp.txt").read_text() == "the user's"


def test_a_lock_that_is_a_symlink_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(outside)
    assert_refused(lambda: RunFolder(tmp_path / "run").lock(), "is a symbolic link")
    assert not outside.exists()


def test_an_unknown_status_names_the_file(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "finished"}))
    assert_refused(lambda: RunFolder(tmp_path).lock(), "metrics.json says status 'finished'")


def test_a_resume_that_cannot_start_leaves_the_run_resumable(compose, tmp_path):
    write_csv(tmp_path / "t.csv", rows=60)
    cfg = compose(["data=csv", f"data.path={tmp_path}/t.csv", "data.target=label", *SMALL, "trainer.epochs=1",
                   "trainer.verbose=0"])
    modelforge.train(cfg, run_dir=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({**record, "status": "interrupted"}))
    (tmp_path / "t.csv").rename(tmp_path / "moved.csv")  # the data is gone when the resume starts
    assert_refused(lambda: modelforge.resume(tmp_path / "run"), "t.csv")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "interrupted" and "a resume could not start" in record["error"]
    (tmp_path / "moved.csv").rename(tmp_path / "t.csv")
    assert modelforge.resume(tmp_path / "run")["status"] == "completed"


def test_the_trust_a_command_started_with_is_the_trust_it_keeps(monkeypatch):
    """Hydra sets a job's env_set variables in the process before the job runs: after the front door froze the
    trust, a variable set later is not read."""
    from modelforge.core.config import targets

    monkeypatch.setattr(targets, "_frozen", {})
    monkeypatch.delenv(TRUST_ENV, raising=False)
    targets.freeze_trust()
    monkeypatch.setenv(TRUST_ENV, "os,posix")
    assert targets.trusted_names() == frozenset() and not allowed_module("os")
    assert_refused(lambda: import_target("os.system", "data._target_", "data-loading function"), "is refused")


@pytest.mark.parametrize("target", ["modelforge.data.downloads.fetch", "modelforge.analysis.summary.summarize",
                                    "modelforge.run.folder.RunFolder"])
def test_modelforge_objects_not_made_for_configs_are_refused(compose, tmp_path, monkeypatch, target):
    """Some of modelforge writes where it is told (a download's cache, a summary's folder): a config may name only
    the entry points, and a module of the user's that re-exports another modelforge object opens no door."""
    assert_refused(lambda: modelforge.plan(compose(["data=callable", f"data._target_={target}"])),
                   "may name only the modelforge objects made for it")
    module, _, name = target.rpartition(".")
    (tmp_path / f"mf_reexport_{name}.py").write_text(f"from {module} import {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert_refused(lambda: import_target(f"mf_reexport_{name}.{name}", "data._target_", "data-loading function"),
                   "may name only the modelforge objects made for it")


@pytest.mark.parametrize(("option", "path"), [("csv", "/dev/zero"), ("npz", "/dev/urandom"), ("csv", "fifo"),
                                              ("npz", "fifo")])
def test_a_data_path_that_is_not_a_regular_file_is_refused_before_reading(compose, tmp_path, option, path):
    """A device reads forever (24 GB, then the OOM killer) and a FIFO hangs: both refused, naming the path."""
    if path == "fifo":
        path = str(tmp_path / "pipe")
        os.mkfifo(path)
    extra = ["data.target=label"] if option == "csv" else []
    assert_refused(lambda: modelforge.plan(compose([f"data={option}", f"data.path={path}", *extra, *SMALL])),
                   "is not a regular file")


def test_a_data_file_larger_than_half_the_free_memory_is_refused_naming_its_size(compose, tmp_path, monkeypatch):
    from modelforge.core.init import memory

    table = tmp_path / "t.csv"
    write_csv(table, 200)
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * table.stat().st_size - 2)
    with pytest.raises(ConfigError, match=r"more than half the memory free now") as err:
        modelforge.plan(compose(["data=csv", f"data.path={table}", "data.target=label", *SMALL]))
    assert str(table) in str(err.value)


def test_modelforges_own_hand_offs_are_named_in_one_list_and_none_is_trust():
    """Every `MODELFORGE_*` variable the package reads is the trust the user gives, the image cache the user
    chooses, or one of modelforge's hand-offs between its processes (`HANDOFFS`); a config can set none of them."""
    import re

    from modelforge.core.config.targets import HANDOFFS, widens
    from modelforge.run.lifecycle import RESUME_ENV
    from modelforge.run.tracking import PARENT_ENV
    from modelforge.system.quiet import ENV as TF_LOGS

    package = Path(modelforge.__file__).parent
    named = {m for path in package.rglob("*.py") for m in re.findall(r"MODELFORGE_[A-Z_]+", path.read_text())}
    assert named - {TRUST_ENV, "MODELFORGE_CACHE"} == set(HANDOFFS)
    assert {RESUME_ENV, PARENT_ENV, TF_LOGS} == set(HANDOFFS) and TRUST_ENV not in HANDOFFS
    assert all(widens(name) for name in (*HANDOFFS, TRUST_ENV))
