"""The run folder: every file written atomically, so a crash never leaves a half file that looks finished.

Contract (the README's "The run folder"): config.yaml, init_plan.json, model_summary.txt, history.csv,
metrics.json, model.keras. `metrics.json` says `running` from the first moment, and `completed` only once
every other file is in place.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from modelforge.core.names import Status

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

    def _atomic(self, name: str, write: Callable[[Path], object]) -> Path:
        target = self.path / name
        suffix = "".join(Path(name).suffixes)  # keeps `.keras`, which Keras insists on
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).stem}.", suffix=f".tmp{suffix}", dir=self.path)
        os.close(fd)
        try:
            write(Path(tmp))
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

    def claim(self) -> None:
        """Refuses a folder that already holds a finished run: nothing ever overwrites one."""
        metrics = self.path / "metrics.json"
        if metrics.exists():
            try:
                status = json.loads(metrics.read_text(encoding="utf-8")).get("status")
            except (json.JSONDecodeError, AttributeError):
                status = None
            if status == Status.COMPLETED:
                raise FileExistsError(f"{self.path} already holds a completed run; choose another run folder")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
