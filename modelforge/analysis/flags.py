"""What the init health report's numbers say is wrong, each with a config to try.

Pure: reads the report `diagnose` made. Thresholds: vanishing when the last hidden layer's activation std is
below 0.01 of the first's, exploding above 100x, a gradient spread when the back-propagated gradient's std
differs more than 100x across layers, saturated or dead when more than half of a layer's units are, and an
initial loss when a classifier's loss at init is more than 1.5x ln(classes), residual growth when the stream's std
after a residual model's last block is more than 10x its std after the first. A suggestion is never an initializer
(or residual rule) the model has already.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

VANISHING, EXPLODING, GRADIENT_SPREAD, MOST = 0.01, 100.0, 100.0, 0.5
# A classifier's loss at init above this many times ln(classes): chance is ln(classes), so the outputs start
# confidently wrong.
HIGH_LOSS = 1.5
# Inputs whose std is this far from 1 (either way) make the first layer's variance-scaling assumption wrong.
INPUT_STD_RANGE = (0.1, 10.0)
# A residual stream whose std grows this many times from the first block to the last.
RESIDUAL_GROWTH = 10.0
RULES = ("zero_last", "fixup", "rezero", "scaled")


def _untried(names: Iterable[str], in_use: Collection[str]) -> list[str]:
    """`initializer=NAME` for each name not in use: a suggestion is never what the model has already."""
    return [f"initializer={name}" for name in names if name not in in_use]


def _scaling(family: str, in_use: Collection[str]) -> str:
    """The initializers to try when the signal's scale drifts with depth, for the net's activation family.

    LSUV first: it measures each layer on the data, so it also holds for the smooth rectifiers (GELU, SiLU,
    Mish), whose gain He's factor of 2 does not match and which fade at depth under it."""
    static = {"rectifier": ["he_normal"], "saturating": ["glorot_uniform", "orthogonal"]}.get(family, [])
    found = _untried(["lsuv"], in_use)
    if found:
        found[0] += " (each layer rescaled on your data)"
    return ", or ".join(found + _untried(static, in_use)) or "initializer=orthogonal"
def _inputs(report: Mapping[str, Any], can_standardize: bool) -> str:
    low, high = INPUT_STD_RANGE
    std = float(report.get("input_std", 1.0))
    if low <= std <= high:
        return ""
    how = "data.standardize=true" if can_standardize else "inputs scaled to unit variance before they reach modelforge"
    return f"; the inputs' std is {std:.3g}, far from 1: try {how}"


def _layer_fix(name: str, worst: list[dict[str, Any]], in_use: Collection[str], own: Mapping[str, str]) -> str:
    """What to try for saturated or dead units: where the first such layer names its own initializer, no
    `initializer=` choice reaches it (a layer's own wins), so that is what to change."""
    layer = worst[0]["layer"]
    if layer in own:
        scale = "a smaller" if name == "saturated" else "a He"
        return f"{scale} scale in {layer}'s own initializer ({own[layer]})" + (
            ", or activation=leaky_relu" if name == "dead" else "")
    fix = _untried(["glorot_uniform"], in_use) if name == "saturated" else \
        [*_untried(["he_normal"], in_use), "activation=leaky_relu"]
    return ", or ".join(fix) or "initializer=lsuv"


def flags(report: Mapping[str, Any], family: str, can_standardize: bool,
          in_use: Collection[str] = ("auto",), own: Mapping[str, str] | None = None,
          rule: str = "none") -> list[dict[str, str]]:
    """The flags a report raises, each `{flag, detail, try}`.

    Args:
        report: what `diagnose` returned.
        family: the activation family of most hidden layers (`rectifier`, `saturating`, ...).
        can_standardize: whether the data config has `data.standardize`.
        in_use: the initializers the model's kernels have (`auto` resolved), left out of the suggestions.
        own: layer -> the initializer set on that layer itself, which no `initializer=` choice changes.
        rule: the residual rule in use (`residual=`), left out of the suggestions.

    Example:
        >>> report = {"hidden": [{"layer": "block1", "std": 1.0}, {"layer": "block30", "std": 1e-5}],
        ...           "ratios": {"last_over_first": 1e-5, "gradient_std": 3.0}, "input_std": 0.4}
        >>> [(f["flag"], f["try"]) for f in flags(report, "rectifier", False, {"glorot_uniform"})]
        [('vanishing', 'initializer=lsuv (each layer rescaled on your data), or initializer=he_normal')]
        >>> flags(report, "rectifier", False, {"he_normal"})[0]["try"]
        'initializer=lsuv (each layer rescaled on your data)'
    """
    found = []
    ratios, hidden = report.get("ratios", {}), report.get("hidden", [])
    inputs = _inputs(report, can_standardize)
    ratio = ratios.get("last_over_first")
    if ratio is not None and ratio < VANISHING:
        found.append({"flag": "vanishing", "detail": f"the last hidden layer's activation std is {ratio:.2g}x the "
                      "first's", "try": _scaling(family, in_use) + inputs})
    if ratio is not None and ratio > EXPLODING:
        smaller = ", or ".join(_untried(["lsuv", "lecun_normal"], in_use)) or "initializer=orthogonal"
        found.append({"flag": "exploding", "detail": f"the last hidden layer's activation std is {ratio:.3g}x the "
                      "first's", "try": smaller + inputs})
    spread = ratios.get("gradient_std")
    if spread is not None and spread > GRADIENT_SPREAD:
        found.append({"flag": "gradient spread", "detail": f"the back-propagated gradient's std differs {spread:.3g}x "
                      "across layers", "try": _scaling(family, in_use)})
    for key, name in (("saturated_fraction", "saturated"), ("dead_fraction", "dead")):
        worst = [h for h in hidden if (h.get(key) or 0) > MOST]
        if worst:
            share = max(float(h[key]) for h in worst)
            found.append({"flag": name, "detail": f"{len(worst)} layer(s) with more than half their units {name} "
                          f"(up to {share:.0%}, first {worst[0]['layer']})",
                          "try": _layer_fix(name, worst, in_use, own or {}) + inputs})
    found.extend(_initial_loss(report, in_use))
    found.extend(_residual_growth(report, rule))
    return found


def _residual_growth(report: Mapping[str, Any], rule: str) -> list[dict[str, str]]:
    """The flag of a residual stream that grows block by block, with the rules not in use to try.

    Example:
        >>> report = {"residual": [{"block": "r0", "stream_std": 0.4}, {"block": "r9", "stream_std": 17.8}]}
        >>> _residual_growth(report, "scaled")[0]["try"]
        'residual=zero_last, or residual=fixup, or residual=rezero'
        >>> _residual_growth({**report, "layers": [{"class": "MultiHeadAttention"}]}, "scaled")[0]["try"]
        'residual=zero_last, or residual=rezero'
    """
    blocks = report.get("residual") or []
    if len(blocks) < 2 or not blocks[0]["stream_std"]:
        return []
    growth = blocks[-1]["stream_std"] / blocks[0]["stream_std"]
    if growth <= RESIDUAL_GROWTH:
        return []
    # Fixup is for branches of dense and convolution layers: the plan refuses it on attention.
    attention = any(r.get("class") == "MultiHeadAttention" for r in report.get("layers") or [])
    others = [f"residual={name}" for name in RULES if name != rule and not (attention and name == "fixup")]
    detail = (f"the stream's std after the last residual block ({blocks[-1]['block']}) is {growth:.3g}x its std "
              f"after the first ({blocks[0]['block']})")
    return [{"flag": "residual growth", "detail": detail, "try": ", or ".join(others)}]


def _initial_loss(report: Mapping[str, Any], in_use: Collection[str]) -> list[dict[str, str]]:
    """A classifier whose loss at init is far above ln(classes): its outputs start confident and wrong, so the first
    steps undo the head's scale instead of learning."""
    loss, reference = report.get("initial_loss"), report.get("reference_loss")
    if loss is None or not reference or not str(report.get("reference", "")).startswith("ln(") or \
            not loss > HIGH_LOSS * reference:
        return []
    fix = ", or ".join(_untried(["auto", "lsuv"], in_use)) or "initializer=orthogonal"
    return [{"flag": "initial loss", "detail": f"the loss at init is {loss:.3g}, {loss / reference:.2g}x "
             f"{report['reference']} = {reference:.3g}: the outputs start confident and wrong", "try": fix}]
