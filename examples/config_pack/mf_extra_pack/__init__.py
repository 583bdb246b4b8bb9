"""A config pack for modelforge."""
