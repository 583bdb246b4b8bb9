"""modelforge's Hydra SearchPathPlugin: its config groups under `modelforge/` in every Hydra app."""
