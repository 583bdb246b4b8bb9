"""Writes the values of the kernels the plan says modelforge computes, into a built model."""

from __future__ import annotations

import time
from typing import Any

from modelforge.core.init.plan import Plan
from modelforge.errors import ConfigError
from modelforge.initializers.delta import delta_orthogonal
from modelforge.initializers.lsuv import layer_weight, lsuv


def write_computed(model: Any, plan: Plan, sample: Any = None, measure: bool = True) -> None:
    """Delta-orthogonal kernels by formula; LSUV's scales measured on `sample`, recorded in `plan.measured`.

    Args:
        model: the model `build` made from `plan`, every kernel at its base initializer.
        plan: the plan; its `measured` and `measured_s` are filled here.
        sample: training inputs for LSUV (`plan.sample_size` of them), raw, as the model takes them.
        measure: False leaves LSUV's scales alone (a resumed run's weights come from its checkpoint).

    Raises:
        ConfigError: the plan asks for LSUV and no sample is given.
    """
    for entry in plan.computed("delta_orthogonal"):
        how = entry.computed or {}
        values = delta_orthogonal(entry.shape, float(how["gain"]), entry.seed, bool(how["depthwise"]))
        layer_weight(model.get_layer(entry.layer), entry.weight).assign(values)
    if not plan.computed("lsuv") or not measure:
        return
    if sample is None:
        raise ConfigError(f"initializer=lsuv measures each layer on {plan.sample_size} training inputs: give the "
                          "builder a sample (modelforge.build_model(cfg, sample=x) or let it load the config's data)")
    tick = time.perf_counter()
    plan.measured.update(lsuv(model, plan, sample))
    plan.measured_s = time.perf_counter() - tick
