"""What a run says on the terminal, and in its folder's `modelforge.log`.

In a sweep each line a job prints starts with its label (`[3/9]`), so jobs that run side by side can be told
apart; the same lines, with every epoch's metrics, go to the run folder's `modelforge.log`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

RUN_LOG = "modelforge.log"


@dataclass
class Place:
    """Where a run sits in a sweep, for what it prints.

    Attributes:
        label: `[3/9]` in a sweep, empty for a single run.
        epoch_lines: one line per epoch instead of Keras' per-step bars (jobs running side by side).
        first_of_plan: whether this job prints the plan table with this digest (once per distinct plan).
        compact: the job's epochs ran elsewhere (an arm of a fused group, whose group printed the progress):
            it prints one result line, and its plan, memory and epochs go to its log only.
    """

    label: str = ""
    epoch_lines: bool = False
    first_of_plan: Callable[[str], bool] = field(default=lambda digest: True)
    compact: bool = False


log = logging.getLogger("modelforge.run")
# Only the run's own log file gets these (the terminal gets `say`'s lines); Hydra's handlers would repeat them.
log.propagate = False
_label = ""


def say(text: str) -> None:
    """Prints `text`, each line with the job's label in a sweep (what the log gets is `log`'s to say)."""
    prefix = f"{_label} " if _label else ""
    # One write per call: jobs side by side share the terminal, and a line must not be split between them.
    sys.stdout.write("".join(f"{prefix}{line}\n" for line in text.splitlines()))
    sys.stdout.flush()


@contextlib.contextmanager
def run_log(folder: Path, label: str = "") -> Iterator[logging.Logger]:
    """While a run lives: `say` prefixes its lines with `label`, and `log` writes to the folder's log file."""
    global _label
    handler = logging.FileHandler(folder / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    saved, _label = _label, label
    try:
        yield log
    finally:
        _label = saved
        log.removeHandler(handler)
        handler.close()
