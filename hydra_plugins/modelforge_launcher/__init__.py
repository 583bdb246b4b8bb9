"""modelforge's Hydra launcher: parallel jobs on this machine, a dead worker failing only its own job."""
