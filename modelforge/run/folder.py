"""The run folder: every file written atomically, so a crash never leaves a half file that looks finished.

Contract (the README's "The run folder"): config.yaml, init_plan.json, model_summary.txt, history.csv,
metrics.json, model.keras. `metrics.json` says `running` from the first moment, and `completed` only once
every other file is in place.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import platform
import re
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

from modelforge.core.names import Status
from modelforge.errors import ConfigError

# The lock file a live run holds (flock), and the mark of this module's temporary files.
LOCK = ".lock"
TEMP = ".tmp"
# The files runs wrote atomically before temporary names carried the folder's token: what cleaning up after a
# dead run of such a folder may remove (their temporary twins only).
# A fused group's checkpoint under a sweep's .fused/ is named by 16 hex digits.
LEGACY_STEMS = ("config", "init_plan", "model_summary", "history", "metrics", "model", "checkpoint", "[0-9a-f]{16}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Written files get the mode the user's umask gives (0644 under 022), as Hydra's own files do; read once,
# since reading the umask means setting it.
FILE_MODE = 0o666 & ~_umask()


class FolderState(StrEnum):
    """What a run folder holds, as a new run or `resume` sees it."""

    EMPTY = "empty"  # no run has started here
    LIVE = "live"  # a run holds the lock now
    COMPLETED = "completed"
    DEAD = "dead"  # a run started and died without a word (kill -9, OOM): unlocked, `running` on record
    INTERRUPTED = "interrupted"  # a run stopped by a signal or Ctrl-C, with its checkpoint
    FAILED = "failed"


class FolderTaken(ConfigError):
    """A run folder that holds a completed, live or unfinished run: nothing may change it."""

_VERSIONED = ("modelforge", "keras", "tensorflow", "hydra-core", "omegaconf", "numpy", "scikit-learn")


def default_run_dir(root: str | Path = "outputs") -> Path:
    """A fresh folder name under `root`, as the CLI makes them: outputs/<date>/<time with microseconds>-<pid>."""
    now = datetime.now()
    return Path(root) / now.strftime("%Y-%m-%d") / f"{now.strftime('%H-%M-%S-%f')}-{os.getpid()}"


def versions() -> dict[str, str]:
    """Python and library versions, read from package metadata (cheap: nothing is imported)."""
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


class RunFolder:
    """One run's folder. Every write goes to a temporary file first and is renamed into place.

    Example:
        >>> import tempfile
        >>> folder = RunFolder(tempfile.mkdtemp())
        >>> folder.write_json("metrics.json", {"status": "running"}).name
        'metrics.json'
        >>> folder.read_json("metrics.json")["status"]
        'running'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self.claimed = FolderState.EMPTY  # what the folder held when this run took its lock
        # Marks this run's temporary files (recorded in metrics.json as `temp_token` when the run claims the
        # folder), so cleaning up after a dead run removes only files a run of this folder made.
        self.token: str | None = None
        # The run its checkpoints belong to (`checkpoint.owner`), once read from metrics.json.
        self.owner: dict[str, Any] | None = None

    def _atomic(self, name: str, write: Callable[[Path], object]) -> Path:
        target = self.path / name
        suffix = "".join(Path(name).suffixes)  # keeps `.keras`, which Keras insists on
        mark = f"{self.token}-" if self.token else ""
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).stem}.{mark}", suffix=f"{TEMP}{suffix}", dir=self.path)
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files, which teammates and services cannot read
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def write_text(self, name: str, text: str) -> Path:
        return self._atomic(name, lambda p: p.write_text(text, encoding="utf-8"))

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, default=_json_default) + "\n")

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        rows = list(rows)
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return self.write_text(name, buffer.getvalue())

    def write_with(self, name: str, write: Callable[[Path], object]) -> Path:
        """Atomically writes `name` with a function that writes to the path it is given."""
        return self._atomic(name, write)

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def record(self) -> dict[str, Any]:
        """metrics.json as a dict; {} when there is none, or it cannot be read."""
        try:
            found = self.read_json("metrics.json")
        except (OSError, json.JSONDecodeError):
            return {}
        return found if isinstance(found, dict) else {}

    # A folder belongs to one run: the run holds an exclusive lock (flock) on `.lock` while it lives. The
    # kernel drops the lock when the process dies, however it dies, so an unlocked `running` record is dead.

    def lock(self) -> None:
        """Takes the folder's lock for this run, or raises `FolderTaken` naming the run that holds it."""
        fd = self._open_lock(os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            record = self.record()
            raise FolderTaken(
                f"{self.path} belongs to a live run (pid {record.get('pid', '?')} on {record.get('host', '?')}, "
                f"last seen {record.get('heartbeat', '?')}); a folder holds one run: choose another run folder "
                "(hydra.run.dir=...), or wait for that run to end"
            ) from None
        self._lock_fd = fd
        self.claimed = self.state()
        self.token = str(self.record().get("temp_token") or secrets.token_hex(4))

    def _open_lock(self, flags: int) -> int:
        """Opens `.lock` without following a symlink: a link there could point anywhere outside the folder."""
        try:
            return os.open(self.path / LOCK, flags | os.O_NOFOLLOW, FILE_MODE)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise ConfigError(f"{self.path / LOCK} is a symbolic link; modelforge never writes through one. "
                                  "Remove the link (it is not a run's lock), or choose another run folder") from None
            status = self.record().get("status")
            held = f"; it holds a {status} run" if status else ""
            raise FolderTaken(f"{self.path} cannot be written ({err.strerror}){held}, and a run, even one that only "
                              "checks its folder, takes the folder's lock file first: give a folder you can write "
                              "to, or copy this one somewhere writable") from None

    @property
    def locked(self) -> bool:
        """Whether this run holds the folder's lock."""
        return self._lock_fd is not None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_live(self) -> bool:
        """Whether another open lock holds this folder now (a live run)."""
        if self._lock_fd is not None:
            return True
        if not (self.path / LOCK).exists():
            return False
        fd = self._open_lock(os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def state(self) -> FolderState:
        """What the folder holds now (see `FolderState`)."""
        if self._lock_fd is None and self.is_live():
            return FolderState.LIVE
        status = self.record().get("status")
        if status is None:
            return FolderState.EMPTY
        if status == Status.RUNNING:
            return FolderState.DEAD  # unlocked (a live run's lock was found above), or locked by this run
        if status not in set(FolderState):
            raise ConfigError(f"{self.path / 'metrics.json'} says status {status!r}, which no modelforge run writes "
                              f"({', '.join(s.value for s in Status)}); it was edited or damaged: put back the "
                              "status it had, or choose another run folder")
        return FolderState(status)

    def overrides(self) -> list[str]:
        """The command-line overrides of the job (Hydra's `.hydra/overrides.yaml`); [] for an API run."""
        path = self.path / ".hydra" / "overrides.yaml"
        if not path.exists():
            return []
        from omegaconf import OmegaConf

        return [str(item) for item in OmegaConf.to_container(OmegaConf.load(path)) or []]  # type: ignore[union-attr]

    def job_name(self) -> str:
        """A name that says which job this is: its overrides (`initializer=he_normal,seed=2`), else the folder's."""
        given = [o.lstrip("+~") for o in self.overrides() if not o.lstrip("+~").startswith("hydra")]
        return ",".join(given) or self.path.name

    def clean_temp_files(self) -> list[str]:
        """Removes what a dead run left half written, and nothing else: the temporary files carrying the token
        the folder's runs recorded (a folder from before tokens: modelforge's own file names, as mkstemp made
        them). Returns their names."""
        token = self.record().get("temp_token")
        if token:
            mine = re.compile(rf"^\.[\w.]+\.{re.escape(str(token))}-\w{{8}}{re.escape(TEMP)}")
        else:
            mine = re.compile(rf"^\.({'|'.join(LEGACY_STEMS)})\.[a-z0-9_]{{8}}{re.escape(TEMP)}")
        found = [p for p in self.path.glob(".*") if mine.match(p.name) and p.is_file() and not p.is_symlink()]
        for path in found:
            path.unlink()
        return sorted(p.name for p in found)


def writable(path: str | Path, key: str) -> Path:
    """Makes the folder `path` (and its parents) and checks a file can be written there, before a run starts.

    Raises:
        ConfigError: naming the folder, the system's reason, and the key that chooses another folder.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{key}: cannot write into {folder.resolve()} ({err.strerror or err}); choose a folder you "
                          f"can write to ({key}=...)") from None
    return folder


def identity() -> dict[str, Any]:
    """Who runs: pid and host, for metrics.json, so a dead run can be told from a live one."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
