"""Plan -> `keras.Model`. The only module that creates Keras layers; it uses the public `keras` API only.

Every seeded weight gets its own initializer instance with the seed the plan derived for it: Keras
initializers with a fixed seed return the same values on every call, so a shared instance would give
two layers identical weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelforge.errors import ConfigError
from modelforge.registry import INITIALIZER_CLASSES, get_activation

if TYPE_CHECKING:
    import keras

    from modelforge.initplan import Plan, PlanEntry
    from modelforge.specs import LayerSpec


def make_initializer(entry: PlanEntry) -> keras.initializers.Initializer:
    """A fresh Keras initializer for one plan entry, seeded as the plan says."""
    import keras

    cls = getattr(keras.initializers, INITIALIZER_CLASSES[entry.choice.name])
    kwargs = dict(entry.choice.params)
    if entry.seed is not None:
        kwargs["seed"] = entry.seed
    return cls(**kwargs)


def _activation_args(spec: LayerSpec) -> tuple[Any, keras.layers.Layer | None]:
    """The layer's `activation` argument, plus a separate activation layer for parametric ones.

    A string cannot carry leaky_relu's slope, so those become linear layers followed by e.g. LeakyReLU.
    """
    import keras

    if spec.activation is None:
        return None, None
    act = get_activation(spec.activation)
    if not act.params:
        return spec.activation, None
    if spec.layer_type.recurrent:
        if spec.activation_params != act.params:
            raise ConfigError(
                f"layer {spec.name!r} ({spec.type}): a recurrent cell takes a plain activation; "
                f"{spec.activation} with {spec.activation_params} is not one (use its defaults {act.params})"
            )
        return spec.activation, None
    extra = getattr(keras.layers, act.layer)(**spec.activation_params, name=f"{spec.name}_{spec.activation}")
    return "linear", extra


def make_layers(spec: LayerSpec, entries: list[PlanEntry]) -> list[keras.layers.Layer]:
    """The Keras layer(s) for one spec: the layer itself, then its activation layer if it needs one."""
    import keras

    kwargs = dict(spec.args)
    activation, extra = _activation_args(spec)
    if spec.layer_type.has_activation:
        kwargs["activation"] = activation
    for entry in entries:
        kwargs[entry.init_arg] = make_initializer(entry)
    cls = getattr(keras.layers, spec.layer_type.keras_class)
    try:
        layer = cls(name=spec.name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"layer {spec.name!r} ({spec.type}) rejects its arguments {spec.args}: {err}") from None
    return [layer] if extra is None else [layer, extra]


def build(plan: Plan) -> keras.Model:
    """Builds the functional model the plan describes; weights are created here, as the plan says.

    Example:
        >>> from modelforge import compose, plan
        >>> model = build(plan(compose(["model.depth=1"])))
        >>> [layer.name for layer in model.layers]
        ['inputs', 'block1_dense', 'head']
    """
    import keras

    inputs = keras.Input(shape=plan.info.input_shape, name="inputs")
    x = inputs
    for spec in plan.specs:
        for layer in make_layers(spec, plan.for_layer(spec.name)):
            x = layer(x)
    return keras.Model(inputs, x, name="modelforge")
