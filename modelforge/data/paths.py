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
    return where.resolve()
