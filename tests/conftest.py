import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from omegaconf import DictConfig

import modelforge

# Small and fast: a 1-epoch run of a narrow model still exercises every code path.
FAST = ["trainer.epochs=1", "model.units=8", "trainer.verbose=0"]


@pytest.fixture
def compose() -> Callable[..., DictConfig]:
    """Composes modelforge's config in-process, as Hydra would for the same command line."""

    def _compose(overrides: Sequence[str] = ()) -> DictConfig:
        return modelforge.compose(list(overrides))

    return _compose


def run_module(cwd, *args, module="modelforge", timeout=600):
    """Runs `python -m module args` in `cwd` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_dirs(root):
    """Every run folder (one with a metrics.json) under root, in path order."""
    return sorted(p.parent for p in Path(root).rglob("metrics.json"))
