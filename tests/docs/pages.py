"""The fenced blocks of README.md and docs/*.md with their docs-test marks, and what running them means.

A mark is an HTML comment on the lines right above a block (`<!-- docs-test: KIND ARGS -->`) or anywhere on the
page for every block of it (`<!-- docs-test-page: KIND ARGS -->`). docs/architecture.md lists the kinds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = {"skip", "exit", "append", "replace", "write", "output"}
LANGUAGES = {"bash", "yaml", "python", "text"}
MARK = re.compile(r"<!-- docs-test(-page)?: (\w+)\s*(.*?) -->")
FENCE = re.compile(r"^```(\w*)$")
# Commands that take no training overrides: `append` leaves them as they are.
NO_OVERRIDES = re.compile(r"python -m modelforge (report|resume)\b|--help|--cfg")
# A modelforge command up to where the shell takes over: a comment, `&`, `&&`, `||` or `;`.
COMMAND = re.compile(r"^(?P<cmd>.*?python -m modelforge\b.*?)(?P<tail>\s*(?:&&|&|\|\||;|#).*)?$")


@dataclass
class Block:
    """One fenced block: its page, the line its fence opens on, its language, its text and its marks."""

    page: Path
    line: int
    lang: str
    text: str
    marks: list[tuple[str, str]] = field(default_factory=list)

    def mark(self, kind: str) -> list[str]:
        return [args for k, args in self.marks if k == kind]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def path(self) -> str | None:
        """Where a yaml block (its `# path` first line) or a `write` python block goes."""
        if self.mark("write"):
            return self.mark("write")[0]
        first = self.text.splitlines()[0] if self.text else ""
        found = re.match(r"#\s*(\S+\.ya?ml)\b", first)
        return found.group(1) if found else None


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, with its own marks and the page's."""
    lines = page.read_text().splitlines()
    page_marks = [(m.group(2), m.group(3)) for line in lines for m in MARK.finditer(line) if m.group(1)]
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j] == "```")
        own, k = [], i - 1
        while k >= 0 and (m := MARK.fullmatch(lines[k].strip())) and not m.group(1):
            own.insert(0, (m.group(2), m.group(3)))
            k -= 1
        found.append(Block(page, i + 1, opened.group(1), "\n".join(lines[i + 1:end]), page_marks + own))
        i = end + 1
    return found


def printed(expected: str, output: str) -> list[str]:
    r"""The lines of an `output` block that no line of `output` matches, in order: `...` stands for what varies
    (paths, times, ids, training figures), and a run of spaces for any run of spaces.

    Example:
        >>> printed("loss: ...  done\nnext", "start\nloss: 0.31 done\nnext")
        []
        >>> printed("next\nloss: ...", "loss: 0.31\nnext")
        ['loss: ...']
    """
    lines, at, missing = output.splitlines(), 0, []
    for want in expected.splitlines():
        pattern = re.compile(r"\s+".join(".*".join(re.escape(part) for part in word.split("...")) for word in
                                         want.strip().split()))
        found = next((i for i in range(at, len(lines)) if pattern.fullmatch(lines[i].strip())), None)
        if found is None:
            missing.append(want)
        else:
            at = found + 1
    return missing


def script(block: Block) -> str:
    """A bash block as the test runs it: replacements made, overrides appended, continuations kept."""
    text = block.text
    for args in block.mark("replace"):
        old, new = (part.strip() for part in args.split("=>"))
        text = text.replace(old, new)
    extra = " ".join(block.mark("append"))
    if not extra:
        return text
    out = []
    for line in text.replace("\\\n", "\x00").splitlines():
        found = COMMAND.match(line)
        if found and not NO_OVERRIDES.search(found.group("cmd")):
            line = f"{found.group('cmd')} {extra}{found.group('tail') or ''}"
        out.append(line)
    return "\n".join(out).replace("\x00", "\\\n")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.

    >>> slug("Glorot & Bengio 2010: the standard init")
    'glorot--bengio-2010-the-standard-init'
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    """Relative link targets of a page (outside code), `path#anchor` or `#anchor`."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+://", t)]
