"""LSUV's decisions, in one place (Mishkin & Matas 2016, "All you need is a good init").

Layer-sequential unit-variance initialization starts kernels orthogonal and rescales each, in the model's order,
until its layer's pre-activation output on a sample of training inputs has the target variance. What LSUV decides
is here: its keys and their defaults, which weights it leaves to the policy, when a rescaling round is taken and
when it has converged, and how the plan, the log and the terminal word it. The measuring itself, which needs
Keras, is `modelforge.initializers.lsuv`; the plan's entry (`modelforge.core.init.computed`) and the run's record
of what was measured (`modelforge.run.lifecycle`) ask this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelforge.core.checks import number, positive_int
from modelforge.errors import ConfigError

# Defaults measured on deep digits MLPs: the sample's size, the accepted distance of each layer's pre-activation
# variance from the target, the rescaling rounds, and whether the output layer is rescaled too (its softmax wants
# small logits, so by default it keeps the policy's init).
DEFAULTS: dict[str, Any] = {
    "samples": 256,
    "tolerance": 0.1,
    "max_iter": 10,
    "target_variance": 1.0,
    "include_head": False,
}

# The initializer every kernel LSUV rescales starts from, but a depthwise one: that keeps channels apart, and an
# orthogonal start would mix them, so it starts from the policy's initializer (`start_note`).
BASE: tuple[str, dict[str, Any]] = ("orthogonal", {"gain": 1.0})


def check(params: Mapping[str, Any], where: str) -> None:
    """Checks LSUV's keys (see `DEFAULTS`).

    Example:
        >>> check({**DEFAULTS, "samples": 0}, "initializer")
        Traceback (most recent call last):
        ...
        modelforge.errors.ConfigError: initializer.samples=0 must be an integer >= 2
    """
    positive_int(params["samples"], f"{where}.samples", minimum=2)  # a variance needs two values
    number(params["tolerance"], f"{where}.tolerance", minimum=0, open_min=True)
    positive_int(params["max_iter"], f"{where}.max_iter", minimum=0)
    number(params["target_variance"], f"{where}.target_variance", minimum=0, open_min=True)
    if not isinstance(params["include_head"], bool):
        raise ConfigError(f"{where}.include_head={params['include_head']!r} must be true or false")


def left_to_policy(params: Mapping[str, Any], head: bool, kind: str, weight: str) -> str:
    """Why LSUV leaves this weight to the policy's initializer, or "" when it rescales it.

    Example:
        >>> left_to_policy(DEFAULTS, head=True, kind="dense", weight="kernel")
        'LSUV leaves the output layer to the policy (initializer.include_head=false)'
        >>> left_to_policy(DEFAULTS, head=False, kind="dense", weight="kernel")
        ''
    """
    if head and not params["include_head"]:
        return "LSUV leaves the output layer to the policy (initializer.include_head=false)"
    if kind == "embedding":
        return "LSUV leaves embeddings to the policy"
    if weight == "depthwise_kernel":
        return "LSUV rescales this layer's pointwise kernel"
    return ""


def start_note(depthwise: bool) -> str:
    """What the plan says of a kernel LSUV rescales: where it starts (a depthwise kernel keeps channels apart, so it
    starts from the policy's initializer, not an orthogonal one that would mix them)."""
    return ("a depthwise kernel starts from the policy's initializer; scale measured at build" if depthwise else
            "scale measured at build")


def converged(variance: float, params: Mapping[str, Any]) -> bool:
    """Whether a pre-activation variance is within the tolerance of the target.

    Example:
        >>> converged(1.05, DEFAULTS), converged(1.2, DEFAULTS)
        (True, False)
    """
    return abs(variance - float(params["target_variance"])) <= float(params["tolerance"])


def next_factor(variance: float, rounds: int, params: Mapping[str, Any]) -> float | None:
    """The factor the next round multiplies the kernel by, or None when rescaling stops: converged, out of
    rounds, or a zero or non-finite variance, which no scale brings to the target (reported as not converged).

    Example:
        >>> next_factor(4.0, 0, DEFAULTS), next_factor(4.0, 10, DEFAULTS), next_factor(0.0, 0, DEFAULTS)
        (0.5, None, None)
    """
    if converged(variance, params) or rounds >= int(params["max_iter"]) or not 0 < variance < math.inf:
        return None
    return math.sqrt(float(params["target_variance"]) / variance)


def _how(params: Mapping[str, Any]) -> str:
    return (f"rescaled in layer order until its pre-activation variance on {params['samples']} training samples is "
            f"{params['target_variance']:g} +- {params['tolerance']:g} (at most {params['max_iter']} rounds)")


def footnote(params: Mapping[str, Any], measured: Sequence[Mapping[str, Any]] | None) -> str:
    """The plan table's line for LSUV's kernels: before the build (`measured` None) or after it.

    Example:
        >>> footnote(DEFAULTS, None)[:46]
        'lsuv: the scales are measured at build, not he'
    """
    if measured is None:
        return f"lsuv: the scales are measured at build, not here: each kernel is {_how(params)}"
    done = sum(bool(m["converged"]) for m in measured)
    return f"lsuv: {len(measured)} kernels {_how(params)}; {done} converged (scales in init_plan.json)"


def log_line(path: str, measured: Mapping[str, Any]) -> str:
    """The run log's line for one kernel."""
    return (f"lsuv {path}: scale {measured['scale']:.4g} after {measured['iterations']} rounds, pre-activation "
            f"variance {measured['variance']:.4f}, {'converged' if measured['converged'] else 'NOT converged'}")


def summary(measured: Mapping[str, Mapping[str, Any]], seconds: float) -> str:
    """The terminal's one line after LSUV measured its scales."""
    done = sum(bool(m["converged"]) for m in measured.values())
    return (f"lsuv: {len(measured)} kernels rescaled on the sample in {seconds:.2f} s, {done} within the tolerance "
            "(scales in init_plan.json)")


def not_converged(path: str, measured: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The warning for a kernel whose variance did not reach the target."""
    return (f"warning: lsuv did not converge for {path}: pre-activation variance {measured['variance']:.4g} after "
            f"{measured['iterations']} rounds, target {params['target_variance']:g} +- {params['tolerance']:g}")
