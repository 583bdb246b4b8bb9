"""How a sweep ends before its jobs are done, in one place: the summaries of what it did, one line saying how to
continue it, and the exit status of the signal (143 for SIGTERM, 130 for Ctrl-C) or of bad input (2).

What was under way when the signal came (the fused trainer, the wait for chunks on Ray or submitit, the process
pool, the writing of the fused jobs' folders) raises `SweepStopped`, a run stopped inside a sweep raises
`RunInterrupted`, and a group checkpoint this modelforge cannot read is a `ConfigError`; nothing below this
module exits.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from modelforge.errors import ConfigError, RunInterrupted, SweepStopped


def end(sweep_dir: Path, stop: SweepStopped | RunInterrupted, summaries: bool = True) -> NoReturn:
    """Ends a stopped sweep: its summaries (where this process is the one that writes them), one line on stderr
    saying how to continue it (a run's own line for a `RunInterrupted`), and the signal's exit status."""
    if summaries:
        from modelforge.sweep.callback import write_summaries

        write_summaries(sweep_dir, interrupted=True)
    if isinstance(stop, RunInterrupted):
        line = f"modelforge: {stop}"
    else:
        line = (f"modelforge: sweep stopped by {signal.Signals(stop.signum).name}{stop.during}; {stop.continues}: "
                f"python -m modelforge resume {sweep_dir}")
    print(line, file=sys.stderr, flush=True)
    sys.exit(stop.exit_status)


@contextlib.contextmanager
def ends_cleanly(sweep_dir: Path, summaries: bool = True) -> Iterator[None]:
    """Around a launcher's work: a `SweepStopped` ends the sweep by `end`, a `ConfigError` with its paragraph
    and exit 2 (no summaries: nothing was trained). `summaries=False` in a chunk's own process, whose driver
    writes them."""
    try:
        yield
    except SweepStopped as stop:
        end(sweep_dir, stop, summaries)
    except ConfigError as err:
        print(f"modelforge: error: {err}", file=sys.stderr)
        sys.exit(2)
