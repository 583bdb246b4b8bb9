"""Why a run cannot train in a fused group: a layer without an op, an optimizer without a rule, an argument its
arms cannot differ in, or a setting the fused model does not cover."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelforge.core.registry import ARM_SCALARS
from modelforge.fused.optimizer import CLIPPING, RULES

if TYPE_CHECKING:
    from modelforge.run.setup import Session


def run_refused(session: Session) -> str | None:
    """Why this run cannot train in a fused group (None: it can)."""
    from modelforge.fused.ops import layer_refused

    for layer in session.model.layers:
        refused = layer_refused(layer)
        if refused is not None:
            return refused
    return _optimizer_refused(session) or _setting_refused(session)


def _optimizer_refused(session: Session) -> str | None:
    optimizer = session.run.optimizer
    if optimizer.name not in RULES:
        return f"optimizer={optimizer.name}; the fused model trains {' and '.join(RULES)}"
    rule = RULES[optimizer.name]
    known = {**ARM_SCALARS[optimizer.name], **rule.shared}
    for key, value in optimizer.args.items():
        if key in CLIPPING or value is None or key in rule.shared_any:
            continue
        if key not in known or (key in rule.shared and value != known[key]):
            return f"optimizer.{key}={value!r} is not fused"
    return None


def _setting_refused(session: Session) -> str | None:
    run, trainer = session.run, session.run.trainer
    from modelforge.fused.ops import op_for

    clipped = [key for key in CLIPPING if run.optimizer.args.get(key)]
    # Keras clips a gradient it gets per occurrence (IndexedSlices) by the norm of its occurrences, not its rows.
    sparse = [layer for layer in session.model.layers if getattr(op_for(type(layer)), "sparse_gradient", False)]
    checks = [
        (bool(clipped and sparse), f"optimizer.{clipped[0] if clipped else ''} with an "
                                   f"{type(sparse[0]).__name__ if sparse else ''} layer"),
        (trainer.precision != "float32", f"trainer.precision={trainer.precision}"),
        (trainer.strategy != "default", f"trainer.strategy={trainer.strategy}"),
        (session.dataset.decode is not None, f"data={run.data.name} streams from files"),
    ]
    for not_covered, why in checks:
        if not_covered:
            return f"{why}, which the fused model does not cover"
    return None
