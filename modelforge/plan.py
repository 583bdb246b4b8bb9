"""`python -m modelforge.plan [overrides]`: print the init plan and save it in a run folder, without training.

This module is only an entry point; in Python use `modelforge.plan(cfg)`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="pkg://modelforge.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Works out the plan of the composed config, prints it, and writes config.yaml and init_plan.json."""
    from modelforge.entry import hydra_run_dir, report_errors
    from modelforge.initplan import format_table, make_plan
    from modelforge.runlog import RunFolder

    def job() -> None:
        folder = RunFolder(hydra_run_dir())
        folder.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        plan = make_plan(cfg)
        folder.write_json("init_plan.json", plan.as_json())
        print(format_table(plan))
        print(f"plan saved: {folder.path / 'init_plan.json'}")

    report_errors(job)


if __name__ == "__main__":
    from modelforge.entry import before_hydra

    before_hydra(sys.argv[1:])
    main()
