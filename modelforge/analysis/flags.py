"""What the init health report's numbers say is wrong, each with a config to try.

Pure: reads the report `diagnose` made. Thresholds: vanishing when the last hidden layer's activation std is
below 0.01 of the first's, exploding above 100x, a gradient spread when the back-propagated gradient's std
differs more than 100x across layers, saturated or dead when more than half of a layer's units are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VANISHING, EXPLODING, GRADIENT_SPREAD, MOST = 0.01, 100.0, 100.0, 0.5
# Inputs whose std is this far from 1 (either way) make the first layer's variance-scaling assumption wrong.
INPUT_STD_RANGE = (0.1, 10.0)


def _scaling(family: str, current: str) -> str:
    """The initializer to try when the signal's scale drifts with depth, for the net's activation family (the one
    in use, `current`, left out)."""
    static = {"rectifier": ["he_normal"], "saturating": ["glorot_uniform", "orthogonal"]}.get(family, [])
    others = [f"initializer={name}" for name in static if name != current]
    if current == "lsuv":
        return " or ".join(others) or "initializer=orthogonal"
    return "initializer=lsuv (each layer rescaled on your data)" + "".join(f", or {o}" for o in others)


def _inputs(report: Mapping[str, Any], can_standardize: bool) -> str:
    low, high = INPUT_STD_RANGE
    std = float(report.get("input_std", 1.0))
    if low <= std <= high:
        return ""
    how = "data.standardize=true" if can_standardize else "inputs scaled to unit variance before they reach modelforge"
    return f"; the inputs' std is {std:.3g}, far from 1: try {how}"


def flags(report: Mapping[str, Any], family: str, can_standardize: bool, current: str = "auto") -> list[dict[str, str]]:
    """The flags a report raises, each `{flag, detail, try}`.

    Args:
        report: what `diagnose` returned.
        family: the activation family of most hidden layers (`rectifier`, `saturating`, ...).
        can_standardize: whether the data config has `data.standardize`.
        current: the `initializer` in use, left out of the suggestions.

    Example:
        >>> report = {"hidden": [{"layer": "block1", "std": 1.0}, {"layer": "block30", "std": 1e-5}],
        ...           "ratios": {"last_over_first": 1e-5, "gradient_std": 3.0}, "input_std": 0.4}
        >>> [(f["flag"], f["try"]) for f in flags(report, "rectifier", False)]
        [('vanishing', 'initializer=lsuv (each layer rescaled on your data), or initializer=he_normal')]
        >>> flags(report, "rectifier", False, current="he_normal")[0]["try"]
        'initializer=lsuv (each layer rescaled on your data)'
    """
    found = []
    ratios, hidden = report.get("ratios", {}), report.get("hidden", [])
    inputs = _inputs(report, can_standardize)
    ratio = ratios.get("last_over_first")
    if ratio is not None and ratio < VANISHING:
        found.append({"flag": "vanishing", "detail": f"the last hidden layer's activation std is {ratio:.2g}x the "
                      "first's", "try": _scaling(family, current) + inputs})
    if ratio is not None and ratio > EXPLODING:
        found.append({"flag": "exploding", "detail": f"the last hidden layer's activation std is {ratio:.3g}x the "
                      "first's", "try": "initializer=lsuv, or a smaller scale: initializer=lecun_normal" + inputs})
    spread = ratios.get("gradient_std")
    if spread is not None and spread > GRADIENT_SPREAD:
        found.append({"flag": "gradient spread", "detail": f"the back-propagated gradient's std differs {spread:.3g}x "
                      "across layers", "try": _scaling(family, current)})
    for key, name, fix in (("saturated_fraction", "saturated", "a smaller scale: initializer=glorot_uniform"),
                           ("dead_fraction", "dead", "initializer=he_normal, or activation=leaky_relu")):
        worst = [h for h in hidden if (h.get(key) or 0) > MOST]
        if worst:
            share = max(float(h[key]) for h in worst)
            found.append({"flag": name, "detail": f"{len(worst)} layer(s) with more than half their units {name} "
                          f"(up to {share:.0%}, first {worst[0]['layer']})", "try": fix + inputs})
    return found
