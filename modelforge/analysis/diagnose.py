"""The init health report: does the signal survive the depth of the network before any training?

Passes one probe batch of the configured data through the freshly initialized model (`probe.py`) and records,
for every layer, the mean, std and second moment of its output, the std before its activation, the std of the
loss's gradient there (back-propagated), each kernel's gradient norm and std, the fraction of dead units after
rectifiers and of saturated ones after tanh and sigmoids; then, across the hidden layers, each std's spread, the
initial loss against its chance level, and flags with a config to try (`flags.py`).
`python -m modelforge diagnose [overrides]` runs it alone; `trainer.diagnose=true` runs it before training
(`hook`). Both write `init_report.json` and `init_report.png`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from modelforge.analysis.flags import flags
from modelforge.analysis.probe import Step, jacobian_condition, run_probe
from modelforge.core.config.schema import RunConfig
from modelforge.core.init.plan import Plan
from modelforge.core.model.places import residual_blocks
from modelforge.core.names import HEAD, activation_layer_name, counted
from modelforge.core.registry import Family, get_activation
from modelforge.run.folder import RunFolder
from modelforge.run.setup import Session

PROBE_SIZE = 256
JACOBIAN_SAMPLES = 4
# Saturated: tanh and softsign beyond 0.99 of their asymptote; sigmoids within 0.01 of 0 or 1.
SATURATION = {"tanh": "symmetric", "softsign": "symmetric", "sigmoid": "unit", "hard_sigmoid": "unit"}


def _std(values: Any) -> float | None:
    import numpy as np

    return None if values is None else float(np.std(np.asarray(values, dtype=np.float64)))


def _stats(values: Any, rectified: bool, activation: str | None) -> dict[str, float | None]:
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    per_unit = x.reshape(x.shape[0], -1)
    kind = SATURATION.get(activation or "")
    saturated = (np.mean(np.abs(x) > 0.99) if kind == "symmetric" else
                 np.mean((x < 0.01) | (x > 0.99)) if kind == "unit" else None)
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "second_moment": float(np.mean(x * x)),
        # A unit is dead when no sample of the batch makes it positive: it passes no gradient.
        "dead_fraction": float(np.mean(np.all(per_unit <= 0, axis=0))) if rectified else None,
        "saturated_fraction": None if saturated is None else float(saturated),
    }


def verdict(second_moments: list[float], depth: int) -> tuple[str, float]:
    """A one-line reading of how the signal's second moment changes from the first block to the last.

    Example:
        >>> verdict([1.0, 1e-5, 1e-9], 30)[0]
        'signal shrinks 10^9x over 30 layers: vanishing'
    """
    first, last = second_moments[0], second_moments[-1]
    if first <= 0 or last <= 0:
        return f"signal dies over {counted(depth, 'layer')}: every unit is zero at the end", -math.inf
    exponent = math.log10(last / first)
    if exponent <= -2:
        return f"signal shrinks 10^{-exponent:.0f}x over {counted(depth, 'layer')}: vanishing", exponent
    if exponent >= 2:
        return f"signal grows 10^{exponent:.0f}x over {counted(depth, 'layer')}: exploding", exponent
    if exponent <= -1:
        return f"signal shrinks 10^{-exponent:.1f}x over {counted(depth, 'layer')}: weakening", exponent
    if exponent >= 1:
        return f"signal grows 10^{exponent:.1f}x over {counted(depth, 'layer')}: growing", exponent
    return f"signal stays within 10^{abs(exponent):.1f}x over {counted(depth, 'layer')}: healthy", exponent


def _records(steps: list[Step], applied: Mapping[str, str], activations: Mapping[str, str | None]) -> list[dict]:
    import numpy as np

    records = []
    for depth, step in enumerate(steps, start=1):
        name = step.layer.name
        act = applied.get(name)
        rectified = act is not None and get_activation(act).family == Family.RECTIFIER
        grads = {k: np.asarray(g, dtype=np.float64) for k, g in step.kernel_grads.items()}
        records.append({
            "depth": depth, "layer": name, "class": type(step.layer).__name__, "activation": activations.get(name),
            **_stats(step.out, rectified, act),
            "pre_std": _std(step.pre),
            "grad_std": _std(step.pre_grad if step.pre_grad is not None else step.out_grad),
            "kernel_grad_norms": {k: float(np.sqrt(np.sum(g * g))) for k, g in grads.items()},
            "kernel_grad_std": {k: float(g.std()) for k, g in grads.items()},
        })
    return records


def _hidden(by_name: Mapping[str, dict], activations: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """One row per hidden layer with a kernel: its pre-activation, its activation's output, their gradients."""
    rows = []
    for name, act in activations.items():
        kernel = by_name.get(name)
        if name == HEAD or kernel is None or not kernel["kernel_grad_norms"]:
            continue
        after = by_name.get(activation_layer_name(name, act or ""), kernel)
        rows.append({
            "layer": name, "activation": act,
            "pre_std": kernel["pre_std"] if kernel["pre_std"] is not None else after["pre_std"],
            "std": after["std"], "second_moment": after["second_moment"],
            "grad_std": kernel["grad_std"] if kernel["grad_std"] is not None else after["grad_std"],
            "kernel_grad_std": max(kernel["kernel_grad_std"].values()),
            "dead_fraction": after["dead_fraction"], "saturated_fraction": after["saturated_fraction"],
        })
    return rows


def _spread(values: list[float | None]) -> float | None:
    """Largest over smallest (inf when the smallest is zero); None with fewer than two values."""
    found = [v for v in values if v is not None]
    if len(found) < 2:
        return None
    return max(found) / min(found) if min(found) > 0 else math.inf


def ratios(hidden: list[dict[str, Any]]) -> dict[str, float | None]:
    """Across the hidden layers: each std's largest over smallest, and the activation std's last over first.

    Example:
        >>> ratios([{"std": 0.4, "pre_std": 1.0, "grad_std": 1e-3, "kernel_grad_std": 1.0},
        ...         {"std": 0.04, "pre_std": 0.1, "grad_std": 1e-2, "kernel_grad_std": 2.0}])["gradient_std"]
        10.0
    """
    first, last = (hidden[0]["std"], hidden[-1]["std"]) if hidden else (None, None)
    return {
        "activation_std": _spread([h["std"] for h in hidden]),
        "pre_activation_std": _spread([h["pre_std"] for h in hidden]),
        "gradient_std": _spread([h["grad_std"] for h in hidden]),
        "kernel_gradient_std": _spread([h["kernel_grad_std"] for h in hidden]),
        "last_over_first": None if not first else last / first,
        "first_over_last": None if not last else first / last,
    }


def diagnose(model: Any, plan: Plan, x: Any, y: Any) -> dict[str, Any]:
    """Probes a freshly initialized model with one batch.

    Args:
        model: the built model.
        plan: its plan: the model's layers as the probe walks them, the task (for the loss), and each layer's
            activation.
        x, y: the probe batch.

    Returns:
        The report: one record per layer, one per hidden layer, the ratios across them, the initial loss and the
        verdict (`run_diagnosis` adds the flags and the Jacobian).
    """
    import numpy as np

    task = plan.info.task
    activations = {spec.name: spec.activation for spec in plan.specs}
    # The activation applied at each layer's output: in the layer itself for plain ones, in a separate layer
    # (named by the convention) for parametric ones such as leaky_relu.
    applied: dict[str, str] = {}
    for name, act in activations.items():
        if act:
            applied[activation_layer_name(name, act) if get_activation(act).params else name] = act
    steps, loss = run_probe(model, plan, x, y)
    records = _records(steps, applied, activations)
    hidden = _hidden({r["layer"]: r for r in records}, activations)
    text, exponent = verdict([h["second_moment"] for h in hidden], len(hidden)) if hidden else ("no hidden layers", 0.0)
    classes = int(model.output_shape[-1])
    reference = math.log(classes) if task == "classification" else float(np.var(np.asarray(y, dtype=np.float64)))
    report = {"probe_batch": int(len(x)), "verdict": text, "signal_log10_ratio": exponent,
              "block_second_moments": [h["second_moment"] for h in hidden], "layers": records, "hidden": hidden,
              "ratios": ratios(hidden), "initial_loss": loss, "reference_loss": reference,
              "reference": f"ln({classes})" if task == "classification" else "the targets' variance",
              "input_std": float(np.std(np.asarray(x, dtype=np.float64)))}
    blocks = _residual(plan, {r["layer"]: r for r in records})
    if blocks:
        report["residual"] = blocks
    return report


def _residual(plan: Plan, by_name: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per residual block: the std of the stream entering it and after it (its add's output), the branch's std (the
    input that ends it), their ratio, and the std of the stream's gradient there."""
    specs = {spec.name: spec for spec in plan.specs}

    def output(name: str) -> dict[str, Any]:
        """A layer's record after its activation (a parametric one's own layer where it has one)."""
        act = specs[name].activation if name in specs else None
        own = activation_layer_name(name, act) if act and get_activation(act).params else None
        return by_name.get(own or "", by_name[name])

    found = []
    for block in residual_blocks(plan.specs):
        branch, stream = output(block.branch_end), by_name[block.name]
        # Entering the block: the stream itself, before a shortcut's fixed factor (DeepNorm's alpha) scales it.
        source = block.stream
        if source in specs and specs[source].type == "scale":
            source = specs[source].inputs[0]
        entering = output(source)["std"] if source in by_name else None
        found.append({"block": block.path, "input_std": entering, "stream_std": stream["std"],
                      "branch_std": branch["std"], "ratio": branch["std"] / stream["std"] if stream["std"] else None,
                      "grad_std": stream["grad_std"]})
    return found


def plot(report: Mapping[str, Any], path: str, title: str = "") -> None:
    """Glorot & Bengio 2010's Figures 6 and 7 in miniature, and the kernels' gradients, against depth (log scale).

    Left: each hidden layer's activation std (after its activation; before it, dashed). Middle: the std of the
    back-propagated gradient d(loss)/d(pre-activation). Right: each kernel's gradient norm, the head's last.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    hidden = report["hidden"]
    depth = list(range(1, len(hidden) + 1))
    grads = [sum(r["kernel_grad_norms"].values()) for r in report["layers"] if r["kernel_grad_norms"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = (
        (axes[0], depth, [h["std"] for h in hidden], "activation std", "forward signal (Glorot 2010, Fig. 6)"),
        (axes[1], depth, [h["grad_std"] for h in hidden], "std of dL/ds", "back-propagated gradient (Fig. 7)"),
        (axes[2], list(range(1, len(grads) + 1)), grads, "||dL/dW||", "kernel gradient norm (head last)"),
    )
    for ax, xs, values, ylabel, name in panels:
        shown = [max(v, 1e-45) if v is not None else float("nan") for v in values]  # log axes need > 0
        ax.semilogy(xs, shown, marker="o", ms=3)
        ax.set(xlabel="hidden layer" if ax is not axes[2] else "layer with a kernel", ylabel=ylabel, title=name)
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # layers are whole numbers
        # At least four decades shown, so a healthy flat line looks flat next to a collapse.
        finite = [v for v in shown if v == v] or [1.0]
        top = max(finite)
        ax.set_ylim(min(min(finite), top / 1e4) / 2 or 1e-45, top * 2)
    pre = [max(h["pre_std"], 1e-45) if h["pre_std"] is not None else float("nan") for h in hidden]
    axes[0].semilogy(depth, pre, ls="--", marker=".", color="tab:gray", label="before the activation")
    axes[0].legend(fontsize=8)
    flagged = "; ".join(f["flag"] for f in report.get("flags", []))
    heading = report["verdict"] + (f" [{flagged}]" if flagged else "")
    fig.suptitle(f"{title}\n{heading}" if title else heading)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _jacobian(model: Any, plan: Plan, x: Any) -> dict[str, Any] | None:
    """The input-output Jacobian's conditioning (`trainer.diagnose_jacobian`), up to the output of the last hidden
    layer with a kernel (after its activation)."""
    import numpy as np

    hidden = [spec for spec in plan.specs if spec.name != HEAD and spec.weights]
    if not hidden:
        return None
    last = hidden[-1]
    after = activation_layer_name(last.name, last.activation or "")
    upto = after if after in {layer.name for layer in model.layers} else last.name
    values = jacobian_condition(model, upto, np.asarray(x[:JACOBIAN_SAMPLES]))
    return {"samples": len(values), "up_to": upto, "condition": values, "median": float(np.median(values))}


def in_use(plan: Plan, run: RunConfig | None) -> set[str]:
    """The initializers the plan gives its kernels (`auto` resolved, and each layer's own), and the config's
    `initializer` group: what a suggestion must not be."""
    found = {e.choice.name for e in plan.entries if not e.choice.source.startswith("default:")}
    return found | {str(getattr(run.initializer, "name", "auto"))} if run is not None else found


def run_diagnosis(model: Any, plan: Plan, dataset: Any, folder: RunFolder, title: str = "",
                  run: RunConfig | None = None) -> dict[str, Any]:
    """Diagnoses a built model on the first `PROBE_SIZE` training samples; writes the report and plot."""
    x, y = dataset.probe(PROBE_SIZE)
    report = diagnose(model, plan, x, y)
    families = [get_activation(h["activation"] or "linear").family.value for h in report["hidden"]]
    family = max(set(families), key=families.count) if families else "linear"
    own = {e.layer: e.choice.label for e in plan.entries if e.choice.source == "layer" and e.fan_in is not None}
    report["flags"] = flags(report, family, run is not None and hasattr(run.data, "standardize"), in_use(plan, run),
                            own, run.residual.name if run is not None else "none")
    if report["flags"] and report["verdict"].endswith(": healthy"):  # the signal is, the model is not
        report["verdict"] = report["verdict"].removesuffix("healthy") + "steady, but see the flags"
    conv = any(spec.type.startswith(("conv", "separable", "depthwise")) for spec in plan.specs)
    report["jacobian"] = _jacobian(model, plan, x) if run is not None and run.trainer.diagnose_jacobian and conv \
        else None
    folder.write_json("init_report.json", report)
    folder.write_with("init_report.png", lambda p: plot(report, str(p), title))
    return report


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a table, one row per layer, then the ratios, the initial loss, the verdict and the flags."""
    lines = [f"{'depth':>5}  {'layer':<28} {'pre std':>10} {'std':>10} {'dL/ds std':>10} {'grad norm':>10} "
             f"{'dead':>5} {'sat':>5}"]
    for r in report["layers"]:
        dead = "-" if r["dead_fraction"] is None else f"{r['dead_fraction']:.2f}"
        sat = "-" if r["saturated_fraction"] is None else f"{r['saturated_fraction']:.2f}"
        grad = sum(r["kernel_grad_norms"].values()) if r["kernel_grad_norms"] else None
        lines.append(f"{r['depth']:>5}  {r['layer']:<28} {_number(r['pre_std']):>10} {r['std']:>10.3e} "
                     f"{_number(r['grad_std']):>10} {_number(grad):>10} {dead:>5} {sat:>5}")
    spread = report["ratios"]
    lines.append("across hidden layers (largest / smallest): " + ", ".join(
        f"{key.replace('_', ' ')} {value:.3g}" for key, value in spread.items()
        if value is not None and key not in ("last_over_first", "first_over_last")))
    lines.append(f"initial loss {report['initial_loss']:.4f} against {report['reference']} = "
                 f"{report['reference_loss']:.4f}")
    if report.get("jacobian"):
        jac = report["jacobian"]
        lines.append(f"input-output Jacobian up to {jac['up_to']}: largest / smallest singular value, median of "
                     f"{jac['samples']} samples: {jac['median']:.4g}")
    if report.get("residual"):
        lines.append(f"{'block':<28} {'stream std':>10} {'branch std':>10} {'ratio':>10} {'grad std':>10}")
        lines.extend(f"{b['block']:<28} {b['stream_std']:>10.3e} {b['branch_std']:>10.3e} {_number(b['ratio']):>10} "
                     f"{_number(b['grad_std']):>10}" for b in report["residual"])
    lines.append(f"verdict: {report['verdict']}")
    lines.extend(f"flag: {f['flag']}: {f['detail']}; try {f['try']}" for f in report.get("flags", []))
    return "\n".join(lines)


def title(session: Session) -> str:
    """The plot's title: depth, activations and initializer of the diagnosed model."""
    init = session.run.initializer
    name = "auto" if not hasattr(init, "name") else init.name
    # The hidden layers with a kernel, as the verdict counts them; the head's activation comes from the data.
    body = [spec for spec in session.plan.specs[:-1] if any(w.role == "kernel" for w in spec.weights)]
    acts = ", ".join(sorted({spec.activation for spec in body if spec.activation})) or "no activation"
    return f"{len(body)} hidden layers, {acts}, initializer={name}"


def diagnose_session(session: Session, folder: RunFolder) -> dict[str, Any]:
    """Runs the report on a prepared run, prints it, and returns it."""
    tick = time.perf_counter()
    report = run_diagnosis(session.model, session.plan, session.dataset, folder, title=title(session),
                           run=session.run)
    print(format_report(report), flush=True)
    session.timings["diagnose_s"] = time.perf_counter() - tick
    return report


def hook(session: Session, folder: RunFolder) -> dict[str, Any]:
    """The run lifecycle's hook for `trainer.diagnose=true`: the report before the fit, its verdict recorded."""
    return {"diagnosis": diagnose_session(session, folder)["verdict"]}


def hooks_for(run: RunConfig) -> list[Any]:
    """The steps a run of `run` takes between set-up and fit: the report, with `trainer.diagnose=true`; muP's
    coordinate check, with `trainer.coord_check=N`."""
    from modelforge.analysis import coord

    return [*([hook] if run.trainer.diagnose else []), *([coord.hook] if run.trainer.coord_check else [])]
