"""The docs run: every block of README.md and docs/*.md is run as its page gives it, or says why not.

Each page runs in a fresh temporary folder holding a copy of examples/, its blocks in order, so a file one block
writes is there for the next. The marks are listed in docs/architecture.md ("The docs test").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import warm
from tests.docs.pages import KINDS, LANGUAGES, PAGES, ROOT, Block, anchors, blocks, links, printed, script, slug

ALL = [b for page in PAGES for b in blocks(page)]


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    long = [f"{i}: {len(line)}" for i, line in enumerate(lines, 1) if len(line) > 120]
    assert not long, f"README.md lines over 120 characters: {long}"
    for page in PAGES[1:]:  # the table of contents names every page
        assert f"(docs/{page.name})" in (ROOT / "README.md").read_text(), page.name


@pytest.mark.parametrize("block", ALL, ids=[b.where for b in ALL])
def test_every_block_runs_or_says_why(block: Block) -> None:
    assert block.lang in LANGUAGES, f"{block.where}: a block's language is one of {sorted(LANGUAGES)}"
    assert {kind for kind, _ in block.marks} <= KINDS, f"{block.where}: marks are {sorted(KINDS)}"
    for reason in block.mark("skip"):
        assert len(reason.split()) >= 3, f"{block.where}: a skip says why"
    if block.lang == "yaml":
        assert block.path, f"{block.where}: a yaml block's first line names its file (# path/to/file.yaml)"
        yaml.safe_load(block.text)
        if not block.mark("skip"):
            later = [b for b in blocks(block.page) if b.lang == "bash" and b.line > block.line and not b.mark("skip")]
            assert any(block.path.split("/")[0] in b.text for b in later), f"{block.where}: no command composes it"
    if block.lang == "python" and block.mark("write"):
        compile(block.text, block.where, "exec")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_resolve_and_figures_have_commands(page: Path) -> None:
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: {target}: no heading {anchor} in {file.name}"
    commands = " ".join(b.text for b in blocks(page) if b.lang == "bash" and not b.mark("skip"))
    for figure in re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", page.read_text()):
        name = Path(figure).stem.removesuffix("_curves")
        made = re.search(rf"outputs/{re.escape(name)}(?![\w/])", commands)
        assert made, f"{page.name}: no command of the page makes {figure} (a run or sweep folder outputs/{name})"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFORGE_", "HYDRA_"))}
    # A user's environment: the venv's python first; Keras' and modelforge's caches inside the page's folder.
    # `python -m modelforge` runs warm (tests/warm.py): the page's commands, without TensorFlow's import each.
    path = os.pathsep.join([str(warm.shim_folder()), str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(PATH=path, MPLBACKEND="Agg",
               KERAS_HOME=str(tmp / ".keras"), MODELFORGE_CACHE=str(tmp / ".cache"))
    return env


def _run(block: Block, tmp: Path, number: int) -> None:
    if block.lang == "yaml" or (block.lang == "python" and block.path):  # a file a later command reads
        assert block.path, f"{block.where}: a yaml block's first line names its file"
        (tmp / block.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp / block.path).write_text(block.text + "\n")
        return
    if block.lang == "python":
        # The page's `python`, as its shell blocks have it: warm (tests/warm.py), since the exit status is checked.
        file = tmp / f"_docs_block_{number}.py"
        command = [str(warm.shim_folder() / "python"), file.name]
        file.write_text(block.text + "\n")
    else:
        command = ["bash", "-e", "-c", script(block)]
    done = subprocess.run(command, cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=900)
    expected = int(block.mark("exit")[0]) if block.mark("exit") else 0
    assert done.returncode == expected, (f"{block.where} exited {done.returncode}, not {expected}:\n"
                                         f"{script(block)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "outputs", "__pycache__"))
    for number, block in enumerate(blocks(page)):  # a page whose every block is skipped says why for each
        if block.lang != "text" and not block.mark("skip"):
            _run(block, tmp_path, number)


OUTPUTS = [b for page in PAGES for b in blocks(page) if b.lang == "text" and b.mark("output")]


@pytest.mark.slow
@pytest.mark.parametrize("block", OUTPUTS, ids=[b.where for b in OUTPUTS])
def test_each_marked_output_is_what_its_command_prints(block: Block, tmp_path: Path) -> None:
    """A `text` block marked `output COMMAND` is what COMMAND prints, line for line, `...` standing for what
    varies."""
    (command,) = block.mark("output")
    done = subprocess.run(["bash", "-e", "-c", command], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (block.where, done.stderr[-3000:])
    missing = printed(block.text, done.stdout + done.stderr)
    assert not missing, f"{block.where}: {command} printed no line like {missing[0]!r}:\n{done.stdout[-3000:]}"


def test_pages_show_outputs_checked_by_their_commands() -> None:
    assert len(OUTPUTS) >= 2
    assert printed("a ... c", "a b c") == [] and printed("a ... c", "a b d") == ["a ... c"]


def test_the_tests_a_page_names_exist() -> None:
    for page in PAGES:
        for path, pattern in re.findall(r"`(\w+/test_\w+\.py)::(test_[\w*]+)`", page.read_text()):
            file = ROOT / "tests" / path
            assert file.is_file(), f"{page.name}: tests/{path}"
            names = re.findall(r"^def (test_\w+)", file.read_text(), re.M)
            regex = re.compile(pattern.replace("*", r"\w*"))
            assert any(regex.fullmatch(name) for name in names), f"{page.name}: tests/{path}::{pattern}"


def module_map() -> dict[str, str]:
    """docs/architecture.md's module map: each entry's path (`modelforge/run/`, `modelforge/api.py`) -> its text."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    entries: dict[str, str] = {}
    current = None
    for line in text.split("Every import points down", 1)[1].split("\n\n")[1].splitlines():
        match = re.match(r"^    (modelforge/\S*)\s+(.*)$", line)
        if match:
            current = match[1]
            entries[current] = match[2]
        elif current is not None and line.startswith("     "):
            entries[current] += " " + line.strip()
    return entries


def test_the_module_map_names_every_module() -> None:
    """Every module is named, as a word, in the entry of the package that holds it (a nested package's own name
    too): a stem that is a common word elsewhere on the page (`app`, `main`) counts only in its entry."""
    entries = module_map()
    assert len(entries) >= 12, entries
    for module in (ROOT / "modelforge").rglob("*.py"):
        if module.name == "__init__.py" or "conf" in module.parts:
            continue
        path = str(module.relative_to(ROOT))
        if path in entries:
            continue
        home = max((e for e in entries if e.endswith("/") and path.startswith(e)), key=len, default=None)
        assert home is not None, f"docs/architecture.md's module map has no entry for {path}"
        nested = path[len(home):].split("/")
        for name in [*nested[:-1], module.stem]:
            assert re.search(rf"\b{re.escape(name)}\b", entries[home]), \
                f"docs/architecture.md's entry for {home} leaves out {name} ({path})"


def test_the_module_map_test_can_fail() -> None:
    entries = module_map()
    assert not re.search(r"\bnot_a_module\b", entries["modelforge/run/"])
    assert re.search(r"\bcheckpoint\b", entries["modelforge/run/"])


def test_the_anchor_rule_is_githubs() -> None:
    assert slug("He et al. 2015: depth and ReLU") == "he-et-al-2015-depth-and-relu"
    assert slug("`make bench` lines") == "make-bench-lines"
