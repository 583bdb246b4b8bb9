"""Which folders modelforge may write into: empty ones, and its own, each of one kind.

A command writes only into a folder that does not exist yet, holds nothing, or holds modelforge's own record
of the same kind (`.modelforge.json`: a run, a sweep, a plan, a diagnosis, a report). A folder holding anything
else is the user's, and is refused naming a file in it, before Hydra writes its log there. Folders written
before the record existed are known by the file their kind always wrote (`LEGACY`). Inside a folder that is
ours, no name modelforge or Hydra writes may be a symbolic link: every write would follow it out of the folder
(a folder reached through a link above it, `outputs -> /mnt/big`, is fine).
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelforge.core.config.targets import narrow_user_modules, own_modules, started_at, user_modules
from modelforge.core.names import FOLDER_RECORD
from modelforge.run.folder import LOCK, FolderTaken, RunFolder, now

# modelforge's record of a folder it made: what kind of folder it is, when it was made, the user's modules then.
MARK = FOLDER_RECORD
# Hydra's record of a job, written by modelforge once the job holds its folder.
HYDRA_SUBDIR = ".hydra"


class Kind(StrEnum):
    """What a folder of modelforge's holds: one kind per command that writes a folder."""

    RUN = "run"
    SWEEP = "sweep"
    PLAN = "plan"
    DIAGNOSE = "diagnose"
    REPORT = "report"


# How folders made before the record are known, first match wins: a run by its metrics.json, a sweep by the
# jobs.json its callback wrote (or Hydra's multirun.yaml), a diagnosis by its report, a plan by its plan.
LEGACY: tuple[tuple[str, Kind], ...] = (
    ("metrics.json", Kind.RUN), ("jobs.json", Kind.SWEEP), ("multirun.yaml", Kind.SWEEP),
    ("init_report.json", Kind.DIAGNOSE), ("init_plan.json", Kind.PLAN),
)


class NotOurs(FolderTaken):
    """A folder that holds the user's files, or another kind of modelforge folder: nothing is written there."""


def recorded_kind(path: Path) -> Kind | None:
    """The kind of modelforge folder `path` is, from its record or (made before records) its files; None when
    it is not modelforge's.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> recorded_kind(folder) is None
        True
        >>> mark(folder, Kind.PLAN)
        >>> recorded_kind(folder)
        <Kind.PLAN: 'plan'>
    """
    record = path / MARK
    if record.is_file() and not record.is_symlink():
        try:
            return Kind(json.loads(record.read_text(encoding="utf-8"))["kind"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    for name, kind in LEGACY:
        if (path / name).is_file() and not (path / name).is_symlink():
            return kind
    return None


def mark(path: Path, kind: Kind) -> None:
    """Records `path` as modelforge's folder of `kind`, unless it already holds a record, with the user's own
    modules as the command found them (what its jobs elsewhere and a later `resume` may import)."""
    if not (path / MARK).exists():
        found = user_modules()
        users = sorted(own_modules() if found is None else found)
        RunFolder(path).write_json(MARK, {"kind": kind.value, "made": now(), "started": started_at(),
                                          "user_modules": users})


def keep_recorded_modules(path: Path) -> None:
    """Narrows this process's user modules to those the folder's run or sweep recorded when it first started."""
    record = kind_record(path)
    recorded, started = record.get("user_modules"), record.get("started")
    if isinstance(recorded, list) and isinstance(started, int | float):
        narrow_user_modules([str(name) for name in recorded], float(started))


def _links(path: Path) -> list[Path]:
    """The symbolic links among a folder's entries and its `.hydra/` entries."""
    found = [p for p in path.iterdir() if p.is_symlink()]
    hydra = path / HYDRA_SUBDIR
    if hydra.is_dir() and not hydra.is_symlink():
        found += [p for p in hydra.iterdir() if p.is_symlink()]
    return sorted(found)


def check_ours(path: str | Path, kind: Kind, key: str, allow: tuple[str, ...] = ()) -> None:
    """Refuses a folder a command of `kind` may not write into (see the module's docstring). `allow`: names a
    job's folder may already hold before the job starts (Hydra's job log).

    Raises:
        NotOurs: the folder holds files modelforge did not write, another kind of modelforge folder, or a
            symbolic link where modelforge or Hydra would write; the message names one and the key to change.
    """
    folder = Path(os.path.abspath(path))  # named in full in messages; links above it are not resolved
    if not os.path.lexists(folder):
        return
    if not folder.is_dir():
        raise NotOurs(f"{key}: {folder} is a file, not a folder; choose a folder ({key}=...)")
    links = _links(folder)
    if links:
        raise NotOurs(f"{key}: {links[0]} in {folder} is a symbolic link, and modelforge never writes through one "
                      f"(it could point anywhere); remove the link, or choose another folder ({key}=...)")
    entries = sorted(p.name for p in folder.iterdir() if p.name not in (*allow, LOCK))
    if not entries:
        return
    found = recorded_kind(folder)
    if found is None:
        raise NotOurs(f"{key}: {folder} holds files modelforge did not write ({entries[0]}, {len(entries)} in all), "
                      "and modelforge writes only into an empty folder or one of its own; choose another folder "
                      f"({key}=...)")
    if found != kind:
        raise NotOurs(f"{key}: {folder} is a modelforge {found} folder, not a {kind} folder; a {kind} goes into an "
                      f"empty folder or a {kind} folder of its own: choose another folder ({key}=...)")


def kind_record(path: Path) -> dict[str, Any]:
    """The folder's record as a dict; {} when there is none or it cannot be read."""
    try:
        found = json.loads((path / MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
