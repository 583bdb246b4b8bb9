"""modelforge: declarative Keras models from Hydra configs, with an activation-aware initializer policy.

The curated API: `compose` a config, `plan` it (pure, instant), `build_model` it, `train` it. Importing this
package is cheap: TensorFlow loads only when a model is built or trained, Hydra only when a config is composed.
"""

import importlib

from modelforge.api import build_model, compose, plan, resume, run_config, train
from modelforge.core.config.schema import RunConfig
from modelforge.errors import ConfigError, RunFailed, RunInterrupted
from modelforge.run.lifecycle import TrainResult
from modelforge.system.imports import after_import

# modelforge's own Keras layers (a residual gate, LayerScale, ...) and optimizers (a learning rate per variable) are
# registered for loading saved models as soon as Keras is imported, without importing it here.
after_import("keras", lambda: [importlib.import_module(f"modelforge.{name}") for name in ("layers", "optimizers")])

__all__ = ["ConfigError", "RunConfig", "RunFailed", "RunInterrupted", "TrainResult", "build_model", "compose", "plan",
           "resume", "run_config", "train"]
__version__ = "0.1.0"
