"""Data sets fetched over the network once, then read from a local cache.

modelforge's default data (scikit-learn's digits) needs no network. Larger sets such as MNIST are fetched
with `keras.utils.get_file` into Keras' cache (`$KERAS_HOME/datasets`, else `~/.keras/datasets`) or the
config's `cache_dir`, and checked against their SHA-256, so an offline machine can use a file copied there
by hand and a truncated download never trains a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelforge.core.names import FOLDER_RECORD, inside
from modelforge.errors import ConfigError, RunFailed

# Each downloadable data set's file in the cache: named by the data set, never by the URL, so a config's URL
# cannot choose the name of a file modelforge writes (a `.py` or `.pth` where Python imports from).
DATA_FILES = {"mnist": "mnist.npz"}
# What marks a folder as a run's or a sweep's (files modelforge writes there first).
_RUN_MARKS = (FOLDER_RECORD, "metrics.json", "jobs.json", ".hydra")


def check_cache_dir(cache_dir: str) -> None:
    """Refuses a cache folder where a downloaded file could be imported or could mix with a run's files: a
    `sys.path` entry or a folder inside one (the folder a command runs in excepted: `python -m` puts it first,
    and its subfolders are where data lives), and a run's or a sweep's folder or one inside it.

    Example:
        >>> import sysconfig
        >>> check_cache_dir(sysconfig.get_paths()["purelib"] + "/datasets")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data.cache_dir=... is refused: it is inside ..., where Python imports ...
    """
    import sys

    path = Path(cache_dir).expanduser().resolve()
    here = Path.cwd().resolve()
    for entry in sys.path:
        place = Path(entry or ".").resolve()
        if place != here and place != Path("/") and inside(path, place):
            raise ConfigError(f"data.cache_dir={cache_dir} is refused: it is inside {place}, where Python imports "
                              "modules from; keep downloads in a folder of their own (null: Keras' cache)")
    for folder in (path, *path.parents):
        marks = [m for m in _RUN_MARKS if (folder / m).exists()]
        if marks:
            raise ConfigError(f"data.cache_dir={cache_dir} is refused: {folder} is a run's or a sweep's folder (it "
                              f"holds {marks[0]}), which holds only what its run writes; keep downloads elsewhere")


def cache_folder(cache_dir: str | None) -> Path:
    """The folder data files are kept in: `cache_dir`, else Keras' own (`$KERAS_HOME` or ~/.keras)/datasets."""
    if cache_dir:
        check_cache_dir(cache_dir)
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "datasets"


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as hex digits, read in chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, url: str, sha256: str | None, cache_dir: str | None) -> Path:
    """The local path of a data file: the cached copy, else a fresh download into the cache.

    A cached file is never deleted or replaced: Keras' `get_file` removes a cached file whose hash differs
    and downloads it again, which on an offline machine loses the copy a user put there by hand. Here such a
    file is left where it is, and the error says which hash was expected and which was found.

    Args:
        name: the data set's config name, for messages.
        url: where to download from (`https://...`, or `file://...` for a local mirror).
        sha256: the file's expected SHA-256 hex digest; None skips the check.
        cache_dir: the folder to keep the file in (None: Keras' cache).

    Raises:
        RunFailed: the cached file's hash differs, or the file is not cached and cannot be downloaded.
    """
    fname = DATA_FILES.get(name, f"{name}.npz")
    folder = cache_folder(cache_dir)
    cached = folder / fname
    if cached.exists():
        found = sha256_of(cached) if sha256 else None
        if sha256 and found != sha256.lower():
            raise RunFailed(
                f"data={name}: {cached} has SHA-256 {found}, but {sha256.lower()} was expected; the file is kept as "
                f"it is. Replace it with the right file, move it away to download a fresh copy, or set "
                f"data.sha256=null to use it unchecked"
            )
        return cached
    import keras

    try:
        # get_file silently falls back to /tmp/.keras when the folder does not exist yet.
        folder.mkdir(parents=True, exist_ok=True)
        path = keras.utils.get_file(fname=fname, origin=url, file_hash=sha256, hash_algorithm="sha256",
                                    cache_dir=str(folder), cache_subdir="")
    except Exception as err:  # get_file raises bare Exception for network errors, ValueError for a bad hash
        raise RunFailed(
            f"data={name}: cannot fetch {url} into {folder} ({err}). Without a network, copy {fname} there "
            f"yourself (or point data.cache_dir at the folder holding it), or use data=digits, which needs no "
            f"download"
        ) from None
    return Path(path)


def load_mnist_npz(path: Path, max_samples: int | None) -> tuple[Any, Any]:
    """MNIST's training images (uint8, N x 28 x 28) and labels from Keras' `mnist.npz` layout, checked.

    The npz's test split is left alone: validation is drawn from the training images with the run seed,
    as for every modelforge data set, so sweep arms with one seed see the same split.

    Raises:
        RunFailed: the file is truncated, not an npz, lacks the arrays, or holds arrays of the wrong shape or
            labels outside 0..9 (one paragraph naming the file and what is wrong).
    """
    import numpy as np

    def bad(what: str) -> RunFailed:
        return RunFailed(f"{path} is not a usable MNIST npz: {what}. Keras' mnist.npz holds x_train "
                         "(N x 28 x 28 grey levels) and y_train (N labels 0..9); replace the file, or move it away to "
                         "download it again")

    import zipfile

    if not zipfile.is_zipfile(path):
        raise bad(f"it is not a complete npz (zip) archive ({path.stat().st_size} bytes): truncated, or another kind "
                  "of file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x_train" not in arrays.files or "y_train" not in arrays.files:
                raise bad(f"it holds {', '.join(arrays.files) or 'no arrays'}, not x_train and y_train")
            x, y = arrays["x_train"], arrays["y_train"]
    except RunFailed:
        raise
    except Exception as err:  # zipfile.BadZipFile, EOFError, OSError, ValueError: truncated or not an npz
        raise bad(f"it cannot be read ({type(err).__name__}: {err})") from None
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise bad(f"x_train has shape {list(x.shape)}, not N x 28 x 28")
    if y.ndim != 1 or len(y) != len(x):
        raise bad(f"y_train has shape {list(y.shape)}, not one label for each of the {len(x)} images")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise bad(f"y_train holds {y.dtype} labels from {y.min()} to {y.max()}, not integers 0..9")
    if max_samples is not None:
        x, y = x[:max_samples], y[:max_samples]
    return x, y.astype(np.int32)
