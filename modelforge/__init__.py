"""modelforge: declarative Keras models from Hydra configs, with an activation-aware initializer policy.

Importing this package is cheap: TensorFlow loads only when a model is built or trained.
"""

from modelforge.api import build_model, compose, plan, train
from modelforge.errors import ConfigError

__all__ = ["ConfigError", "build_model", "compose", "plan", "train"]
__version__ = "0.1.0"
