"""`python -m modelforge [overrides]`: compose the config, train, and leave a run folder.

Kept thin and free of TensorFlow, so `--help` and `--cfg job` answer at once.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="pkg://modelforge.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Trains the composed config; returns the objective (validation accuracy by default) for sweepers."""
    from modelforge.entry import run_job

    return run_job(cfg)


if __name__ == "__main__":
    from modelforge.entry import before_hydra

    before_hydra(sys.argv[1:])
    main()
