"""Fixtures. Shared helpers live in tests/helpers.py."""

import os
import tempfile
from collections.abc import Callable, Sequence

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What modelforge remembers of the user's files (verified images) goes to a folder of the test session's, not the
# home folder; subprocesses inherit it.
os.environ.setdefault("MODELFORGE_CACHE", tempfile.mkdtemp(prefix="modelforge-cache-"))

from omegaconf import DictConfig  # noqa: E402

import modelforge  # noqa: E402


@pytest.fixture
def compose() -> Callable[..., DictConfig]:
    """Composes modelforge's config in-process, as Hydra would for the same command line."""

    def _compose(overrides: Sequence[str] = ()) -> DictConfig:
        return modelforge.compose(list(overrides))

    return _compose
