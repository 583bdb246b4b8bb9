"""The init health report: does the signal survive the depth of the network before any training?

Passes one probe batch of the configured data through the freshly initialized model and records, for every
layer, the mean, std and second moment of its output, the fraction of dead units after rectifiers, and the
gradient norm of each kernel for one batch of the loss. `python -m modelforge diagnose [overrides]` runs it
alone; `trainer.diagnose=true` runs it before training (`hook`). Both write `init_report.json` and
`init_report.png`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from modelforge.core.config import RunConfig
from modelforge.core.initplan import Plan
from modelforge.core.names import HEAD, activation_layer_name
from modelforge.core.registry import Family, get_activation
from modelforge.run.folder import RunFolder
from modelforge.run.setup import Session

PROBE_SIZE = 256


def _stats(values: Any, rectified: bool) -> dict[str, float | None]:
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    per_unit = x.reshape(x.shape[0], -1)
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "second_moment": float(np.mean(x * x)),
        # A unit is dead when no sample of the batch makes it positive: it passes no gradient.
        "dead_fraction": float(np.mean(np.all(per_unit <= 0, axis=0))) if rectified else None,
    }


def _loss_fn(task: str) -> Any:
    import keras

    if task == "classification":
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.MeanSquaredError()


def _is_kernel(weight: Any) -> bool:
    return "kernel" in weight.name or weight.name == "embeddings"


def _kernel_gradients(model: Any, layers: list[Any], x: Any, y: Any, task: str) -> dict[str, dict[str, float]]:
    """Layer name -> {kernel name: norm of d(loss)/d(kernel)} for one batch (TensorFlow's tape)."""
    import tensorflow as tf

    kernels = [(layer.name, w) for layer in layers for w in layer.trainable_weights if _is_kernel(w)]
    with tf.GradientTape() as tape:
        loss = _loss_fn(task)(y, model(x, training=False))
    grads = tape.gradient(loss, [w for _, w in kernels])
    found: dict[str, dict[str, float]] = {}
    for (name, weight), grad in zip(kernels, grads):
        found.setdefault(name, {})[weight.name] = 0.0 if grad is None else float(tf.norm(grad))
    return found


def verdict(second_moments: list[float], depth: int) -> tuple[str, float]:
    """A one-line reading of how the signal's second moment changes from the first block to the last.

    Example:
        >>> verdict([1.0, 1e-5, 1e-9], 30)[0]
        'signal shrinks 10^9x over 30 layers: vanishing'
    """
    first, last = second_moments[0], second_moments[-1]
    if first <= 0 or last <= 0:
        return f"signal dies over {depth} layers: every unit is zero at the end", -math.inf
    exponent = math.log10(last / first)
    if exponent <= -2:
        return f"signal shrinks 10^{-exponent:.0f}x over {depth} layers: vanishing", exponent
    if exponent >= 2:
        return f"signal grows 10^{exponent:.0f}x over {depth} layers: exploding", exponent
    return f"signal stays within 10^{abs(exponent):.1f}x over {depth} layers: healthy", exponent


def diagnose(model: Any, x: Any, y: Any, task: str, activations: Mapping[str, str | None]) -> dict[str, Any]:
    """Probes a freshly initialized model with one batch.

    Args:
        model: the built model.
        x, y: the probe batch.
        task: `classification` or `regression`, for the loss.
        activations: layer name -> the activation that follows its kernel (from the plan's specs).

    Returns:
        The report: one record per layer, the verdict, and the gradient norms.
    """
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    # The activation applied at each layer's output: in the layer itself for plain ones, in a separate layer
    # (named by the convention) for parametric ones such as leaky_relu.
    applied: dict[str, str] = {}
    for name, act in activations.items():
        if act:
            applied[activation_layer_name(name, act) if get_activation(act).params else name] = act
    outputs = keras.Model(model.input, [layer.output for layer in layers])(x, training=False)
    grads = _kernel_gradients(model, layers, x, y, task)
    by_name: dict[str, dict[str, Any]] = {}
    records = []
    for depth, (layer, out) in enumerate(zip(layers, outputs), start=1):
        act = activations.get(layer.name)
        rectified = layer.name in applied and get_activation(applied[layer.name]).family == Family.RECTIFIER
        record = {"depth": depth, "layer": layer.name, "class": type(layer).__name__, "activation": act,
                  **_stats(keras.ops.convert_to_numpy(out), rectified),
                  "kernel_grad_norms": grads.get(layer.name, {})}
        records.append(record)
        by_name[layer.name] = record
    # Each hidden layer with a kernel, read after its activation (a separate layer for parametric ones).
    blocks = [by_name.get(activation_layer_name(name, act or ""), by_name[name]) for name, act in activations.items()
              if name in grads and name != HEAD]
    text, exponent = verdict([r["second_moment"] for r in blocks], len(blocks)) if blocks else ("no hidden layers", 0.0)
    return {"probe_batch": int(len(x)), "verdict": text, "signal_log10_ratio": exponent,
            "block_second_moments": [r["second_moment"] for r in blocks], "layers": records}


def plot(report: Mapping[str, Any], path: str, title: str = "") -> None:
    """Activation second moment and kernel gradient norm against depth, log scale, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    moments = report["block_second_moments"]
    grads = [sum(r["kernel_grad_norms"].values()) for r in report["layers"] if r["kernel_grad_norms"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    # Floors keep log axes drawable when a signal or gradient is exactly zero.
    left.semilogy(range(1, len(moments) + 1), [max(m, 1e-45) for m in moments], marker="o", ms=3)
    left.set(xlabel="hidden layer", ylabel="activation second moment E[x^2]", title="forward signal")
    right.semilogy(range(1, len(grads) + 1), [max(g, 1e-45) for g in grads], marker="o", ms=3, color="tab:red")
    right.set(xlabel="layer with a kernel (head last)", ylabel="||dL/dW||", title="kernel gradient norm")
    for ax, values in ((left, moments), (right, grads)):
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # layers are whole numbers
        # At least four decades shown, so a healthy flat line looks flat next to a collapse.
        top = max(max(values, default=1.0), 1e-45)
        ax.set_ylim(min(min(values, default=top), top / 1e4) / 2 or 1e-45, top * 2)
    fig.suptitle(f"{title}\n{report['verdict']}" if title else report["verdict"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_diagnosis(model: Any, plan: Plan, dataset: Any, folder: RunFolder, title: str = "") -> dict[str, Any]:
    """Diagnoses a built model on the first `PROBE_SIZE` training samples; writes the report and plot."""
    x, y = dataset.probe(PROBE_SIZE)
    activations = {spec.name: spec.activation for spec in plan.specs}
    report = diagnose(model, x, y, plan.info.task, activations)
    folder.write_json("init_report.json", report)
    folder.write_with("init_report.png", lambda p: plot(report, str(p), title))
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """A short table of the report and its verdict."""
    lines = [f"{'depth':>5}  {'layer':<28} {'E[x^2]':>10} {'std':>10} {'dead':>6} {'grad norm':>10}"]
    for r in report["layers"]:
        dead = "-" if r["dead_fraction"] is None else f"{r['dead_fraction']:.2f}"
        grad = sum(r["kernel_grad_norms"].values()) if r["kernel_grad_norms"] else None
        lines.append(f"{r['depth']:>5}  {r['layer']:<28} {r['second_moment']:>10.3e} {r['std']:>10.3e} {dead:>6} "
                     f"{'-' if grad is None else f'{grad:.3e}':>10}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


def title(session: Session) -> str:
    """The plot's title: depth, activations and initializer of the diagnosed model."""
    init = session.run.initializer
    name = "auto" if not hasattr(init, "name") else init.name
    body = session.plan.specs[:-1]  # the head's activation comes from the data, not the config
    acts = ", ".join(sorted({spec.activation for spec in body if spec.activation})) or "no activation"
    return f"{len(body)} layers, {acts}, initializer={name}"


def diagnose_session(session: Session, folder: RunFolder) -> dict[str, Any]:
    """Runs the report on a prepared run, prints it, and returns it."""
    tick = time.perf_counter()
    report = run_diagnosis(session.model, session.plan, session.dataset, folder, title=title(session))
    print(format_report(report), flush=True)
    session.timings["diagnose_s"] = time.perf_counter() - tick
    return report


def hook(session: Session, folder: RunFolder) -> dict[str, Any]:
    """The run lifecycle's hook for `trainer.diagnose=true`: the report before the fit, its verdict recorded."""
    return {"diagnosis": diagnose_session(session, folder)["verdict"]}


def hooks_for(run: RunConfig) -> list[Any]:
    """The steps a run of `run` takes between set-up and fit: the report, with `trainer.diagnose=true`."""
    return [hook] if run.trainer.diagnose else []
