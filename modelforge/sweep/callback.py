"""The Hydra callback that writes a sweep's summaries when the multirun ends (see `hydra.callbacks`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from modelforge.analysis.summary import summarize


class SweepSummary(Callback):
    """Summarizes the sweep folder when a multirun ends; a failed job fails the sweep (exit status 1)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        try:
            summary = summarize(root)
        except FileNotFoundError:
            return
        print(f"sweep summary: {root / 'summary.md'}")
        if summary.failed:
            print(f"modelforge: error: {len(summary.failed)} of {len(summary.jobs)} jobs did not complete; "
                  f"see {root / 'summary.md'}", file=sys.stderr)
            sys.exit(1)
