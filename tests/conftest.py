import os
from collections.abc import Callable, Sequence

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
