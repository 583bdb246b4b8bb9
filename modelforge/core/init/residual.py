"""Residual rules: each weight rescaled by its place in a residual block (`core.model.places`), on top of what the
initializer group and the policy chose. A layer's own `initializer` still wins.

- `zero_last` (Goyal et al. 2017): each branch's last kernel at zero, so every block starts as the identity; where
  the branch ends with normalization, that normalization's gamma at zero instead and the kernel as the policy says.
- `fixup` (Zhang et al. 2019, rules 1 and 2): each branch's last kernel and bias, and the readout's, at zero; the
  branch's other kernels at the policy's std times L^(-1/(2m-2)), L the model's branches and m a branch's kernels.
  Rule 3's scalar biases and multiplier are not added. For models without normalization, with m >= 2.
- `scaled`: each branch's last kernel at the policy's std over sqrt(L), the depth scaling GPT-2 gives its residual
  projections (with L counting every branch).
- `rezero` (Bachlechner et al. 2020): a gate at each branch's end, started at `residual.gate_init`, 0 by default
  (the plan adds the layers); a small nonzero start is SkipInit's (De & Smith 2020).
- `deepnorm` (Wang et al. 2022, the encoder-only form): each shortcut multiplied by alpha = (2N)^(1/4) (a fixed
  `scale` layer the plan adds), and the value, attention-output and MLP kernels' std by beta = (8N)^(-1/4), N = L/2
  the blocks of two branches (attention and MLP); query and key as the policy says. For post-LN models only: a
  layer normalization right after each residual add.
- `layerscale` (Touvron et al. 2021): LayerScale at each branch's end, started at `residual.init_value`, or, when
  null, by depth as CaiT does: 0.1 up to 18 branches, 1e-5 up to 24, 1e-6 beyond.

Combinations that contradict each other are refused: LSUV with a rule (it rescales every layer to unit variance
and would undo it), a rule on a model without residual blocks, `fixup` with normalization layers (`zero_last`
suits them) or one-kernel branches (its exponent is undefined).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from modelforge.core.config.policy import InitChoice
from modelforge.core.model.places import ATTENTION, BRANCH_ENDS, NORMS, residual_blocks
from modelforge.core.registry import VARIANCE_SCALING_PRESETS
from modelforge.errors import ConfigError

if TYPE_CHECKING:
    from modelforge.core.config.schema import Residual
    from modelforge.core.init.plan import Plan, PlanEntry

# The kernels DeepNorm scales by beta: all of a branch's but the attention's query and key.
_DEEPNORM_SCALED = ("attn_value", "attn_output", "ffn_in", "ffn_mid", "ffn_out", "branch_in", "branch_mid",
                    "branch_out")
# What a factor multiplies, per initializer the rules can scale: its std is linear in these parameters.
_LINEAR = {"orthogonal": ("gain",), "random_normal": ("stddev",), "truncated_normal": ("stddev",),
           "random_uniform": ("minval", "maxval")}


def cait_value(branches: int) -> float:
    """LayerScale's start by depth, as CaiT sets it.

    Example:
        >>> cait_value(12), cait_value(24), cait_value(36)
        (0.1, 1e-05, 1e-06)
    """
    return 0.1 if branches <= 18 else 1e-5 if branches <= 24 else 1e-6


def deepnorm_factors(branches: int) -> tuple[float, float]:
    """DeepNorm's (alpha, beta) for an encoder of L residual branches, N = L/2 blocks: ((2N)^(1/4), (8N)^(-1/4)).

    Example:
        >>> [round(x, 4) for x in deepnorm_factors(24)]  # 12 blocks
        [2.2134, 0.3195]
    """
    blocks = branches / 2
    return (2 * blocks) ** 0.25, (8 * blocks) ** -0.25


def _kernel(entry: PlanEntry) -> bool:
    """Whether the weight is a kernel: `kernel`, or an attention projection's `query/kernel`."""
    return entry.weight.split("/")[-1] == "kernel"


def factor(rule: str, entry: PlanEntry, normed: bool) -> float | None:
    """The factor on the weight's std the rule gives (0: the weight at zero), or None where it leaves it.

    `normed`: whether the weight's branch ends with normalization after its last kernel.

    Example:
        >>> from modelforge.core.init.plan import PlanEntry
        >>> kernel = PlanEntry("f1", "kernel", "dense", "relu", InitChoice("he_normal", {}, "policy:relu"),
        ...                    ("he_normal", {}), 8, 8, None, 0.5, (8, 8), 1, "kernel_initializer",
        ...                    place="branch_in", block="r", branches=16, depth=3)
        >>> factor("fixup", kernel, normed=False), factor("scaled", kernel, normed=False)
        (0.5, None)
    """
    place, weight, L, m = entry.place, entry.weight, entry.branches or 0, entry.depth or 0
    if rule == "zero_last":
        if normed:
            return 0.0 if place == "branch_out" and entry.type in NORMS and weight == "gamma" else None
        return 0.0 if place in BRANCH_ENDS and _kernel(entry) else None
    if rule == "fixup":
        if place in ("branch_out", "readout") and weight in ("kernel", "bias"):
            return 0.0
        return L ** (-1.0 / (2 * m - 2)) if place in ("branch_in", "branch_mid") and weight == "kernel" else None
    if rule == "scaled":
        return 1.0 / math.sqrt(L) if place in BRANCH_ENDS and _kernel(entry) else None
    if rule == "deepnorm":
        return deepnorm_factors(L)[1] if place in _DEEPNORM_SCALED and _kernel(entry) else None
    return None


def check(rule: str, plan: Plan, initializer: str) -> None:
    """Refuses a rule that contradicts the model or the initializer, naming both."""
    if rule == "none":
        return
    if initializer == "lsuv":
        raise ConfigError(f"residual={rule} with initializer=lsuv: LSUV rescales every layer to unit variance and "
                          f"would undo the rule; choose one (residual=none, or another initializer)")
    placed = [e for e in plan.entries if e.place is not None]
    if not placed:
        raise ConfigError(f"residual={rule}: the model has no residual block (an add of a branch and the stream it "
                          "left), so the rule would change nothing; use residual=none, or add a block")
    if rule == "deepnorm":
        _check_post_norm(plan)
    if rule == "fixup":
        attention = sorted({e.layer for e in plan.entries if e.type == ATTENTION})
        if attention:
            raise ConfigError(f"residual=fixup on a model with attention ({attention[0]}): Fixup's rules are for "
                              "branches of dense or convolution layers; use residual=scaled, deepnorm (post-LN), "
                              "zero_last or rezero")
        norms = sorted({e.layer for e in plan.entries if e.type in NORMS})
        if norms:
            raise ConfigError(f"residual=fixup on a model with normalization layers ({', '.join(norms)}): Fixup is "
                              "for models without normalization; residual=zero_last zeroes each branch's last "
                              "normalization instead")
        short = sorted({e.block for e in placed if e.block is not None and e.depth == 1})
        if short:
            raise ConfigError(f"residual=fixup with one-kernel branches (block {short[0]}): its exponent "
                              "-1/(2m-2) is undefined for m=1; use residual=scaled or residual=zero_last")


def _check_post_norm(plan: Plan) -> None:
    """DeepNorm's `LN(alpha x + f(x))`: each residual add must be read by one layer normalization and nothing else."""
    readers: dict[str, list[str]] = {}
    for spec in plan.specs:
        for name in spec.inputs:
            readers.setdefault(name, []).append(spec.type)
    for block in residual_blocks(plan.specs):
        after = readers.get(block.name, [])
        if after != ["layer_normalization"]:
            found = ", ".join(after) or "nothing"
            raise ConfigError(f"residual=deepnorm is for post-LN models (a layer normalization right after each "
                              f"residual add), and block {block.path!r}'s add is read by {found}; for "
                              "model=transformer set model.norm=post, or use residual=scaled for pre-LN models")


def scaled_entry(entry: PlanEntry, rule: str, by: float) -> PlanEntry:
    """`entry` with its values' std times `by` (zeros at 0), shown with the rule as its source."""
    source = f"residual:{rule}"
    if by == 0.0:
        zeros = InitChoice("zeros", {}, source, note=f"{entry.choice.label}, zeroed by residual={rule}")
        return replace(entry, choice=zeros, build=("zeros", {}), target_std=0.0, seed=None, computed=None)
    name, params = entry.build
    if name in VARIANCE_SCALING_PRESETS or name == "variance_scaling":
        scale, mode, distribution = VARIANCE_SCALING_PRESETS.get(name) or (
            params["scale"], params["mode"], params["distribution"])
        build = ("variance_scaling", {"scale": float(scale) * by * by, "mode": mode, "distribution": distribution})
    elif name in _LINEAR and entry.computed is None and not params.get("mean"):
        build = (name, {**params, **{key: float(params[key]) * by for key in _LINEAR[name]}})
    elif entry.computed is not None and entry.computed.get("kind") == "delta_orthogonal":
        build = entry.build
    else:
        raise ConfigError(f"residual={rule} scales {entry.path} by {by:.4g}, and its initializer {entry.choice.label} "
                          "has no scale to multiply; give that layer its own initializer, or use residual=zero_last")
    computed = {**entry.computed, "gain": float(entry.computed["gain"]) * by} if entry.computed else None
    shown = replace(entry.choice, source=source, shown=f"{entry.choice.label} x{by:.4g}")
    std = entry.target_std * by if entry.target_std is not None else None
    return replace(entry, choice=shown, build=build, target_std=std, computed=computed)


def _started(entry: PlanEntry, rule: Residual) -> PlanEntry:
    """A gate or LayerScale the rule added, at its start: `residual.gate_init` (0: ReZero), or
    `residual.init_value` (None: CaiT's value for the model's depth)."""
    if rule.name == "rezero":
        value = rule.gate_init
    else:
        value = cait_value(entry.branches or 0) if rule.init_value is None else rule.init_value
    choice = InitChoice("constant", {"value": value}, f"residual:{rule.name}")
    return replace(entry, choice=choice, build=("constant", {"value": value}), target_std=0.0)


def apply(residual: Residual, plan: Plan) -> None:
    """Rescales the plan's weights by place, in place (a layer's own initializer is left as it is)."""
    rule = residual.name
    normed = {e.block for e in plan.entries if e.place == "branch_out" and e.type in NORMS}
    for i, entry in enumerate(plan.entries):
        if entry.choice.source in ("default:gate", "default:layer_scale") and rule in ("rezero", "layerscale"):
            plan.entries[i] = _started(entry, residual)
            continue
        if entry.choice.source == "default:shortcut_scale" and rule == "deepnorm":
            alpha = deepnorm_factors(entry.branches or 0)[0]
            choice = InitChoice("constant", {"value": alpha}, "residual:deepnorm", note="the shortcut's alpha")
            plan.entries[i] = replace(entry, choice=choice, build=("constant", {"value": alpha}), target_std=0.0)
            continue
        by = factor(rule, entry, entry.block in normed)
        if by is not None and by != 1.0 and entry.choice.source != "layer":
            plan.entries[i] = scaled_entry(entry, rule, by)
