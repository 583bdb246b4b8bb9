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


@pytest.fixture(scope="session")
def ray_python(tmp_path_factory):
    """A venv with Ray, made once for the test session: it sees the dev venv's packages (TensorFlow, Hydra) and
    this checkout through a .pth file, and gets hydra-ray-launcher (which brings Ray) on top. Its own venv,
    since hydra-ray-launcher pins cloudpickle < 3, which the test extra's joblib cannot share."""
    import subprocess
    from pathlib import Path

    from tests.helpers import overlay_venv

    py = overlay_venv(tmp_path_factory.mktemp("ray") / "venv", Path(__file__).resolve().parents[1])
    installed = subprocess.run([str(py), "-m", "pip", "install", "-q", "hydra-ray-launcher==1.2.*"],
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return py
