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

from modelforge.errors import RunFailed


def cache_folder(cache_dir: str | None) -> Path:
    """The folder data files are kept in: `cache_dir`, else Keras' own (`$KERAS_HOME` or ~/.keras)/datasets."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "datasets"


def fetch(name: str, url: str, sha256: str | None, cache_dir: str | None) -> Path:
    """The local path of a data file, downloading it into the cache when it is missing or its hash is wrong.

    Args:
        name: the data set's config name, for messages.
        url: where to download from (`https://...`, or `file://...` for a local mirror).
        sha256: the file's expected SHA-256 hex digest; None skips the check.
        cache_dir: the folder to keep the file in (None: Keras' cache).

    Raises:
        RunFailed: the file is not cached and cannot be downloaded, or its hash does not match.
    """
    import keras

    fname = Path(url.rstrip("/")).name
    folder = cache_folder(cache_dir)
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
    """MNIST's training images (uint8, N x 28 x 28) and labels from Keras' `mnist.npz` layout.

    The npz's test split is left alone: validation is drawn from the training images with the run seed,
    as for every modelforge data set, so sweep arms with one seed see the same split.
    """
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as arrays:
            x, y = arrays["x_train"], arrays["y_train"]
    except (OSError, KeyError, ValueError) as err:
        raise RunFailed(f"{path} is not an MNIST npz with x_train and y_train ({err}); delete it to download "
                        "it again") from None
    if max_samples is not None:
        x, y = x[:max_samples], y[:max_samples]
    return x, y.astype(np.int32)
