"""summary.html: the sweep's summary and its curves in one self-contained page (no network needed).

The page is made from summary.md, whose few forms it knows (headings, paragraphs, pipe tables, bold), with
curves.png inlined as a data URI.
"""

from __future__ import annotations

import base64
import html as html_lib
import re
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.3rem; word-break: break-all; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } tr.best td { background: #eef7ee; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _inline(text: str) -> str:
    """Escapes `text` and turns **bold** into <strong>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html_lib.escape(text))


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def markdown_to_html(markdown: str) -> str:
    """The HTML of modelforge's own summary.md.

    Example:
        >>> print(markdown_to_html("# T\\n\\n| a | b |\\n| --- | --- |\\n| **x** (best) | 1 |\\n"))
        <h1>T</h1>
        <table>
        <tr><th>a</th><th>b</th></tr>
        <tr class="best"><td><strong>x</strong> (best)</td><td>1</td></tr>
        </table>
    """
    out: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if not table:
            return
        rows = [_cells(line) for line in table if not re.fullmatch(r"\|(\s*-+\s*\|)+", line.strip())]
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>")
        for row in rows[1:]:
            best = ' class="best"' if "(best)" in row[0] else ""
            out.append(f"<tr{best}>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def html(root: Path, curves: Path, markdown: str) -> str:
    """The whole page: the summary's text and table, then the curves, inlined."""
    image = ""
    if curves.exists():
        data = base64.b64encode(curves.read_bytes()).decode("ascii")
        image = f'<h2>Curves</h2>\n<img alt="objective per epoch" src="data:image/png;base64,{data}">'
    return (f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>modelforge summary: {html_lib.escape(root.name)}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n{markdown_to_html(markdown)}\n{image}\n</body>\n</html>\n")
