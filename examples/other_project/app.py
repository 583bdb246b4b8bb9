"""A separate Hydra app that composes modelforge's groups beside its own and trains with modelforge's builder.

Run it from any folder once modelforge is installed:

    python app.py                                   # trains, run folder under outputs/
    python app.py modelforge/initializer@model.initializer=lecun_normal
    python app.py -m 'modelforge/initializer@model.initializer=glob(*)' dry_run=true
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import modelforge


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    # modelforge's own config, with the groups this app picked from modelforge/... dropped in whole.
    mf_cfg = modelforge.compose(
        [f"model.depth={cfg.model.depth}", f"model.units={cfg.model.units}", f"trainer.epochs={cfg.epochs}",
         f"seed={cfg.seed}", "trainer.verbose=0"],
        groups={"layer": cfg.model.layer, "activation": cfg.model.activation, "initializer": cfg.model.initializer},
    )
    plan = modelforge.plan(mf_cfg)
    chosen = sorted({(e.choice.name, e.choice.source) for e in plan.entries if e.weight == "kernel"})
    print(f"{cfg.project}: own initializer scheme {cfg.initializer.scheme!r}; modelforge chose {chosen}")
    print(f"modelforge from {Path(modelforge.__file__).parent}")
    if cfg.dry_run:
        model = modelforge.build_model(mf_cfg)
        print(f"built {model.name} with {model.count_params()} parameters")
        return 0.0
    metrics = modelforge.train(mf_cfg, run_dir=Path(HydraConfig.get().runtime.output_dir) / "model")
    print(f"val_accuracy={metrics['objective']['value']:.4f}")
    return metrics["objective"]["value"]


if __name__ == "__main__":
    main()
