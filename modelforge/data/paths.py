"""Where the user's data files are: `data.path` as given, relative to the folder the command ran in.

Hydra 1.3 (`version_base="1.3"`) does not change the working directory, so a relative path means what it
means in the user's shell.
"""

from __future__ import annotations

from pathlib import Path

from modelforge.errors import ConfigError


def user_path(given: str, kind: str, key: str = "data.path") -> Path:
    """`given` as an absolute path that exists and is a `kind` (`file` or `folder`).

    Raises:
        ConfigError: nothing is there, or something of the other kind is; the message says where it looked.

    Example:
        >>> user_path("no/such.csv", "file")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data.path='no/such.csv': there is no file .../no/such.csv (relative paths...
    """
    path = Path(given).expanduser()
    where = path if path.is_absolute() else Path.cwd() / path
    if not where.exists():
        raise ConfigError(f"{key}={given!r}: there is no {kind} {where} (relative paths start from the folder "
                          f"the command runs in, {Path.cwd()}); give the right path, or an absolute one")
    if kind == "folder" and not where.is_dir():
        raise ConfigError(f"{key}={given!r}: {where} is a file; give the folder that holds one subfolder per class")
    if kind == "file" and where.is_dir():
        raise ConfigError(f"{key}={given!r}: {where} is a folder; give the file itself")
    if kind == "file":
        check_regular_file(where, given, key)
    return where.resolve()


def check_regular_file(where: Path, given: str, key: str) -> None:
    """Refuses what reads forever or takes the machine's memory: a device (`/dev/zero`), a pipe or a socket,
    and a file larger than half the memory free now (reading it whole, as the data options do, would not fit).

    Example:
        >>> check_regular_file(Path("/dev/zero"), "/dev/zero", "data.path")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: data.path='/dev/zero': /dev/zero is not a regular file (a device, a pipe...
    """
    import stat

    from modelforge.core.init.memory import available_memory, human

    mode = where.stat().st_mode
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{key}={given!r}: {where} is not a regular file (a device, a pipe or a socket), which "
                          "modelforge does not read; give a data file")
    size, free = where.stat().st_size, available_memory()
    if free is not None and size > free // 2:
        raise ConfigError(f"{key}={given!r}: {where} is {human(size)}, more than half the memory free now "
                          f"({human(free)}); the data options read a file whole: use a smaller file (fewer rows or "
                          "samples)")


# The first bytes of file kinds a user may hand to the wrong data option, and the option that reads them.
_SIGNATURES = (
    (b"\x93NUMPY", "a single .npy array, not an .npz archive: save x and y together with "
                   "numpy.savez(path, x=x, y=y)"),
    (b"\x89PNG", "a PNG image: for a folder of images use data=images data.path=<folder with one subfolder per "
                 "class>"),
    (b"\xff\xd8\xff", "a JPEG image: for a folder of images use data=images data.path=<folder with one subfolder "
                      "per class>"),
    (b"\x89HDF", "an HDF5 file (a Keras .h5 model or an h5py file); convert the arrays to an .npz"),
    (b"\x80", "a Python pickle, which modelforge never loads; save the arrays with numpy.savez"),
    (b"PK", "a zip archive without .npy members; write it with numpy.savez"),
)


def looks_like(path: Path) -> str:
    """What a data file seems to be, from its first bytes, for messages about a file an option cannot read.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".npz", delete=False) as f:
        ...     _ = f.write("a,b,label\\n1,2,0\\n")
        >>> looks_like(Path(f.name)).split(":")[0]
        "a text file whose first line is 'a,b,label' (a CSV table?)"
    """
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return "unreadable"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    try:
        first = head.decode("utf-8").splitlines()[0] if head.strip() else ""
    except UnicodeDecodeError:
        return "a binary file of an unknown kind"
    if not first:
        return "an empty file"
    if "," in first or "\t" in first or ";" in first:
        return (f"a text file whose first line is {first[:60]!r} (a CSV table?): use data=csv data.path=... "
                "data.target=<column>")
    return f"a text file whose first line is {first[:60]!r}"
