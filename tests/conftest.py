"""Fixtures. Shared helpers live in tests/helpers.py."""

import os
import tempfile
from collections.abc import Callable, Sequence

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What modelforge remembers of the user's files (verified images) goes to a folder of the test session's, not the
# home folder; subprocesses inherit it.
os.environ.setdefault("MODELFORGE_CACHE", tempfile.mkdtemp(prefix="modelforge-cache-"))
# Under pytest-xdist, each worker's TensorFlow processes get the worker's share of the cores (as modelforge's own
# parallel launcher gives its workers): two workers' processes would otherwise each take every core and fight over
# them. Every process of the session,
# in-process baselines included, computes with the same thread count, so runs compared bit for bit still match.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

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
