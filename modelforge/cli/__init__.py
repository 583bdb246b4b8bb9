"""The front door: `python -m modelforge [train|plan|diagnose|report|resume] [overrides]` (and the `modelforge`
console script). Parses, checks, hands a typed run config down; one module per subcommand.
"""
