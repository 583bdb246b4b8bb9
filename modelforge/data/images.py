"""`data=images`: a folder of class subfolders, listed and checked without TensorFlow, streamed while training.

The folder follows `keras.utils.image_dataset_from_directory`'s layout and rules: one subfolder per class,
classes in sorted order, images found in each subfolder and below, the same file types. modelforge lists the
files itself instead of calling that function: its order comes from a shuffle buffer that carries its state
from epoch to epoch, and here epoch e's order is a function of (seed, e) alone, as for every other data set
(`modelforge.data.batches`), so paired sweep arms and resumed runs see the same batches. Images are decoded,
resized and scaled to [0, 1] inside the `tf.data` pipeline, a batch at a time: the set is never loaded whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelforge.core.config.schema import ImagesData
from modelforge.data.paths import user_path
from modelforge.errors import ConfigError

# The file types image_dataset_from_directory reads.
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


@dataclass
class ImageFolder:
    """The image files of a folder, their class indices, the class names, and one image's shape."""

    paths: Any  # numpy array of str
    labels: Any  # numpy int32 array
    classes: tuple[str, ...]
    shape: tuple[int, int, int]


def _size_of(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header (Pillow reads no pixels for this)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as err:
        raise ConfigError(f"data.path: {path} is not an image modelforge can read ({err}); remove it or replace "
                          "it") from None
    return height, width


def list_images(data: ImagesData) -> ImageFolder:
    """Lists `data.path`'s images by class; with no `data.image_size`, checks they share one size.

    Raises:
        ConfigError: a missing or empty folder, fewer than two classes, a class with no images, or images of
            mixed sizes with no resize set.
    """
    import numpy as np

    root = user_path(data.path, "folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"data.path: {root} has no subfolders; put each class's images in a subfolder named after "
                          f"the class ({root}/cat/1.png, {root}/dog/2.png, ...)")
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = sorted(str(p) for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not found:
            raise ConfigError(f"data.path: {root / name} holds no images ({', '.join(EXTENSIONS)}); every class "
                              "subfolder needs some, or remove the empty one")
        paths += found
        labels += [index] * len(found)
    if len(classes) < 2:
        raise ConfigError(f"data.path: {root} has one class subfolder only ({classes[0]!r}); classification needs "
                          "at least two")
    if data.image_size is not None:
        height, width = data.image_size
    else:
        sizes: dict[tuple[int, int], str] = {}
        for path in paths:
            sizes.setdefault(_size_of(Path(path)), path)
            if len(sizes) > 1:
                (first, a), (second, b) = sizes.items()
                raise ConfigError(f"data.path: the images in {root} have mixed sizes ({a} is {first[0]}x{first[1]}, "
                                  f"{b} is {second[0]}x{second[1]}, as height x width) and data.image_size is null; "
                                  f"set data.image_size=[{first[0]},{first[1]}] to resize them all")
        ((height, width),) = sizes
    return ImageFolder(np.array(paths), np.array(labels, dtype=np.int32), tuple(classes),
                       (int(height), int(width), data.channels))


def decoder(data: ImagesData, shape: tuple[int, int, int]) -> Callable[[Any], Any]:
    """A `tf.data` map function: an image file's path to its pixels, resized and scaled to [0, 1] (float32)."""
    import tensorflow as tf

    height, width, channels = shape

    def decode(path: Any) -> Any:
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        if data.image_size is not None:
            image = tf.image.resize(image, (height, width), method=data.interpolation)
        image = tf.ensure_shape(tf.cast(image, tf.float32), (height, width, channels))
        return image / 255.0

    return decode


def cache_dir() -> Path:
    """Where modelforge keeps what it worked out about the user's files (never inside their data folder):
    `$MODELFORGE_CACHE`, else `$XDG_CACHE_HOME/modelforge`, else `~/.cache/modelforge`."""
    import os

    given = os.environ.get("MODELFORGE_CACHE")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelforge"


def _stamp(path: str) -> str:
    """What says a file is the one verified before: its path, size and modification time, and its inode and
    status-change time, which a write in place changes even when it keeps the size and sets the mtime back."""
    found = Path(path).stat()
    return f"{path}|{found.st_size}|{found.st_mtime_ns}|{found.st_ino}|{found.st_ctime_ns}"


def verify_images(data: ImagesData, folder: ImageFolder, decode: Callable[[Any], Any]) -> tuple[int, float]:
    """Decodes every image once, eagerly, with the decoder training uses, so a damaged file is named before
    training instead of failing inside an epoch. Files already verified (same path, size, modification time, inode
    and status-change time, same decoder settings) are skipped; the verified list is kept under `cache_dir()`
    and written atomically, so workers side by side can only repeat work, never lose or mix it.

    Returns:
        How many images were decoded now, and the seconds it took.

    Raises:
        ConfigError: naming the first image that does not decode, and why.
    """
    import hashlib
    import json
    import os
    import tempfile
    import time

    settings = f"{Path(data.path).resolve()}|{folder.shape}|{data.image_size}|{data.interpolation}"
    cache = cache_dir() / "images" / f"{hashlib.sha256(settings.encode()).hexdigest()[:20]}.json"
    try:
        known = set(json.loads(cache.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        known = set()
    todo = [(str(p), _stamp(str(p))) for p in folder.paths]
    todo = [(p, stamp) for p, stamp in todo if stamp not in known]
    started = time.perf_counter()
    for path, stamp in todo:
        try:
            decode(path)
        except Exception as err:  # noqa: BLE001 (TensorFlow's errors for a bad file vary by format)
            detail = " ".join(str(getattr(err, "message", err)).split())[:200]
            raise ConfigError(f"data.path: {path} cannot be decoded as an image ({type(err).__name__}: {detail}); "
                              "remove or replace it") from None
        known.add(stamp)
    if todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.stem}.", suffix=".tmp", dir=cache.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(sorted(known), f)
        os.replace(tmp, cache)
    return len(todo), time.perf_counter() - started
