"""A search-path root whose only child package, `modelforge`, is modelforge's conf/ (see pyproject)."""
