"""Conventions that more than one layer relies on, each defined once: names of layers, run statuses."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

# The package that holds modelforge's config tree (conf/): Hydra's app, `compose` and the help's group lists.
CONFIG_MODULE = "modelforge.conf"
# The output layer every model ends with (softmax over the classes, or linear for regression).
HEAD = "head"
# The input layer's name in every built model.
INPUTS = "inputs"
# The Normalization layer data.standardize puts first.
STANDARDIZE = "standardize"


def activation_layer_name(layer: str, activation: str) -> str:
    """The separate Keras layer that applies a parametric activation (leaky_relu, prelu, elu) after `layer`.

    Example:
        >>> activation_layer_name("block1_dense", "leaky_relu")
        'block1_dense_leaky_relu'
    """
    return f"{layer}_{activation}"


class Status(StrEnum):
    """A run's state as `metrics.json` records it.

    Example:
        >>> Status("completed") is Status.COMPLETED, Status.COMPLETED.value
        (True, 'completed')
    """

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


# The longest file or folder name most filesystems take, in bytes (ext4, xfs, btrfs, APFS: NAME_MAX).
NAME_MAX = 255


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """A folder name the filesystem takes: `name` itself when it fits in `limit` bytes (UTF-8), else a readable
    prefix and a hash of the whole name, so different long names stay different and the same name always
    shortens the same way.

    Example:
        >>> fit_name("lr=0.1,seed=2")
        'lr=0.1,seed=2'
        >>> short = fit_name("model.layers=" + "x" * 300)
        >>> len(short.encode()), short[:13], short == fit_name("model.layers=" + "x" * 300)
        (255, 'model.layers=', True)
    """
    import hashlib

    data = name.encode()
    if len(data) <= limit:
        return name
    tag = "~" + hashlib.sha256(data).hexdigest()[:16]
    prefix = data[: limit - len(tag)].decode("utf-8", errors="ignore")  # never half a character
    return prefix + tag


def fit_path(path: str, limit: int = NAME_MAX) -> str:
    """`path` with each of its parts shortened by `fit_name` (separators kept).

    Example:
        >>> fit_path("a/b")
        'a/b'
    """
    return "/".join(fit_name(part, limit) for part in path.split("/"))


def counted(n: int, noun: str) -> str:
    """`n` and the noun, singular for one: what every message that counts says ("after 1 epoch").

    Example:
        >>> counted(1, "epoch"), counted(3, "epoch"), counted(0, "run")
        ('1 epoch', '3 epochs', '0 runs')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# modelforge's record of a folder it made (the kind of folder, when, the user's modules then): `run.owned`.
FOLDER_RECORD = ".modelforge.json"


def inside(path: Path, folder: Path, strictly: bool = False) -> bool:
    """Whether `path` is `folder` or lies below it (`strictly`: below it only), as the paths are written.

    Example:
        >>> inside(Path("/a/b/c"), Path("/a")), inside(Path("/a"), Path("/a")), inside(Path("/a"), Path("/a"), True)
        (True, True, False)
        >>> inside(Path("/ab"), Path("/a"))
        False
    """
    return folder in path.parents or (path == folder and not strictly)
