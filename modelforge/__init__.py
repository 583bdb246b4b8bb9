"""modelforge: declarative Keras models from Hydra configs, with an activation-aware initializer policy.

Importing this package is cheap: TensorFlow loads only when a model is built or trained.
"""

import os

from omegaconf import OmegaConf

from modelforge import schema
from modelforge.api import build_model, compose, plan, train
from modelforge.errors import ConfigError

# `${mf.pid:}` in run folder names keeps runs started in the same microsecond by two processes apart. Cached,
# so every job of a sweep (and Hydra's copy of the config in launcher workers) sees the launching process's.
OmegaConf.register_new_resolver("mf.pid", lambda: os.getpid(), use_cache=True, replace=True)
schema.register()

__all__ = ["ConfigError", "build_model", "compose", "plan", "train"]
__version__ = "0.1.0"
