"""modelforge's Hydra launcher: parallel jobs on this machine, each in a fresh process of its own."""
