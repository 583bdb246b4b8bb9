"""`python -m modelforge report FOLDER`: the summaries of a sweep, of a run, or of any folder of runs.

A sweep folder (one with jobs.json) gets its own summaries rebuilt in place, as the sweep wrote them. Anything
else (a run folder, a folder of separate runs) is never written into: its summaries go to a folder of their
own, `outputs/report/<date>/<time>-<pid>`, whose path is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelforge.analysis.summary import PLANNED, summarize
from modelforge.core.names import counted
from modelforge.run.folder import default_run_dir


def main(argv: list[str]) -> int:
    """Writes summary.csv, summary.md, summary.html and curves.png (and depth.png for residual models with init
    reports, transfer.png and transfer.md for sweeps over widths and learning rates), and prints summary.md."""
    parser = argparse.ArgumentParser(prog="python -m modelforge report", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a sweep folder, a run folder, or any folder holding run folders")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"modelforge: error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    out = args.folder if (args.folder / PLANNED).is_file() else default_run_dir(Path("outputs") / "report").resolve()
    try:
        summary = summarize(args.folder, out)
    except FileNotFoundError as err:
        print(f"modelforge: error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:
        print(f"modelforge: error: cannot write the summaries into {out} ({err.strerror}); run the report from a "
              "folder you can write to", file=sys.stderr)
        return 2
    print((Path(out) / "summary.md").read_text(encoding="utf-8"))
    for written, name in ((summary.transfer, "transfer.md"), (summary.coord, "coord.md")):
        if written:
            print((Path(out) / name).read_text(encoding="utf-8"))
    figures = ["curves.png", *(["depth.png"] if summary.depth else []),
               *(["transfer.png and transfer.md"] if summary.transfer else []),
               *(["coord.md and its figures"] if summary.coord else [])]
    print(f"wrote summary.csv, summary.md, summary.html and {' and '.join(figures)} in {out} "
          f"({counted(len(summary.jobs), 'run')})")
    return 0
