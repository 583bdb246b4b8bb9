"""`python -m modelforge report FOLDER`: (re)builds the summaries of a sweep or of any folder of runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelforge.analysis.summary import summarize


def main(argv: list[str]) -> int:
    """Writes summary.csv, summary.md and curves.png into FOLDER and prints summary.md."""
    parser = argparse.ArgumentParser(prog="python -m modelforge report", description=main.__doc__)
    parser.add_argument("folder", type=Path, help="a sweep folder, or any folder holding run folders")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"modelforge: error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        summary = summarize(args.folder)
    except FileNotFoundError as err:
        print(f"modelforge: error: {err}", file=sys.stderr)
        return 2
    print((args.folder / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote summary.csv, summary.md and curves.png in {args.folder} ({len(summary.jobs)} runs)")
    return 0
