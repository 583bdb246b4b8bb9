"""modelforge: declarative Keras models from Hydra configs, with an activation-aware initializer policy.

The curated API: `compose` a config, `plan` it (pure, instant), `build_model` it, `train` it. Importing this
package is cheap: TensorFlow loads only when a model is built or trained, Hydra only when a config is composed.
"""

from modelforge.api import build_model, compose, plan, resume, run_config, train
from modelforge.core.config.schema import RunConfig
from modelforge.errors import ConfigError, RunFailed, RunInterrupted
from modelforge.run.lifecycle import TrainResult

__all__ = ["ConfigError", "RunConfig", "RunFailed", "RunInterrupted", "TrainResult", "build_model", "compose", "plan",
           "resume", "run_config", "train"]
__version__ = "0.1.0"
