"""Plan -> `keras.Model`. The only module that creates Keras layers; it uses the public `keras` API only.

Every seeded weight gets its own initializer instance with the seed the plan derived for it: Keras
initializers with a fixed seed return the same values on every call, so a shared instance would give
two layers identical weights.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelforge.core.config.policy import CUSTOM, load_class
from modelforge.core.model.fans import keras_fans
from modelforge.core.model.graph import chained, walk
from modelforge.core.names import HEAD, INPUTS, STANDARDIZE, activation_layer_name
from modelforge.core.registry import INITIALIZER_CLASSES, get_activation
from modelforge.errors import ConfigError, closest
from modelforge.initializers import write_computed
from modelforge.system.quiet import before_tensorflow

if TYPE_CHECKING:
    import keras

    from modelforge.core.init.plan import Plan, PlanEntry
    from modelforge.core.model.specs import LayerSpec


def _custom_initializer(entry: PlanEntry) -> keras.initializers.Initializer:
    """A user's own initializer class, given modelforge's fans and the weight's seed where it takes them."""
    import keras

    params = dict(entry.build[1])
    target = params.pop("_target_")
    cls = load_class(target, f"{entry.layer}/{entry.weight}")
    if not issubclass(cls, keras.initializers.Initializer):  # the plan's check, made again with Keras at hand
        raise ConfigError(f"_target_={target!r} is not a keras.initializers.Initializer subclass")
    accepted = inspect.signature(cls).parameters
    fan_in, fan_out = entry.fan_in, entry.fan_out
    if fan_in is None:
        fan_in, fan_out = keras_fans(entry.shape)
    offered = {"fan_in": fan_in, "fan_out": fan_out, "seed": entry.seed}
    params.update({k: v for k, v in offered.items() if k in accepted and k not in params and v is not None})
    try:
        made = cls(**params)
    except TypeError as err:
        raise ConfigError(f"initializer {target} for {entry.layer}/{entry.weight} rejects {params}: {err}") from None
    try:  # one draw of the weight's shape, before any layer is made: Keras' abstract base, a string for a number
        made(entry.shape, dtype="float32")
    except Exception as err:  # noqa: BLE001 (the user's class may raise anything; each becomes bad input)
        raise ConfigError(f"initializer {target} ({params}) cannot draw {entry.layer}/{entry.weight}'s values of "
                          f"shape {list(entry.shape)}: {type(err).__name__}: {err}") from None
    return made  # type: ignore[no-any-return]


def make_initializer(entry: PlanEntry) -> keras.initializers.Initializer:
    """A fresh Keras initializer for one plan entry, seeded as the plan says."""
    import keras

    name, params = entry.build
    if name == CUSTOM:
        return _custom_initializer(entry)
    kwargs = dict(params)
    if entry.seed is not None:
        kwargs["seed"] = entry.seed
    return getattr(keras.initializers, INITIALIZER_CLASSES[name])(**kwargs)


def _activation_layer(spec: LayerSpec, plan: Plan) -> tuple[Any, keras.layers.Layer | None]:
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
        if not act.has_string or spec.activation_params != act.params:
            raise ConfigError(
                f"layer {spec.name!r} ({spec.type}): a recurrent cell takes a plain activation; {spec.activation} "
                f"with {spec.activation_params} is not one"
            )
        return spec.activation, None
    name = activation_layer_name(spec.name, spec.activation)
    if act.name == "prelu":
        (alpha,) = plan.for_layer(name)
        rank = len(spec.output_shape)
        # One slope per channel, as in He et al. 2015, shared over the other axes.
        layer = keras.layers.PReLU(alpha_initializer=make_initializer(alpha), shared_axes=list(range(1, rank)) or None,
                                   name=name)
    else:
        layer = getattr(keras.layers, str(act.layer))(**spec.activation_params, name=name)
    return "linear", layer


def make_layers(spec: LayerSpec, plan: Plan) -> list[keras.layers.Layer]:
    """The Keras layer(s) for one spec: the layer itself, then its activation layer if it needs one."""
    import keras

    kwargs = dict(spec.args)
    activation, extra = _activation_layer(spec, plan)
    if spec.layer_type.has_activation:
        kwargs["activation"] = activation
    for entry in plan.for_layer(spec.name):
        kwargs[entry.init_arg] = make_initializer(entry)
    if spec.name == HEAD and keras.config.dtype_policy().compute_dtype != "float32":
        kwargs["dtype"] = "float32"  # mixed precision: the softmax and the loss in float32, as Keras advises
    from modelforge.layers import layer_class

    cls = layer_class(spec.layer_type.keras_class)
    try:
        layer = cls(name=spec.name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"layer {spec.name!r} ({spec.type}) rejects its arguments {spec.args}: {err}") from None
    return [layer] if extra is None else [layer, extra]


def check_layer_args(plan: Plan) -> None:
    """Refuses, before any layer is made, a spec key that its Keras class does not take.

    Keras' own constructor signature is the list of valid keys (plus the base Layer's keyword arguments).
    """
    import keras

    from modelforge.layers import layer_class

    base = set(inspect.signature(keras.layers.Layer.__init__).parameters) - {"self", "kwargs"}
    for spec in plan.specs:
        cls = layer_class(spec.layer_type.keras_class)
        valid = (set(inspect.signature(cls.__init__).parameters) | base) - {"self", "kwargs", "name"}
        for key in spec.args:
            if key not in valid:
                near = closest(key, valid)
                raise ConfigError(
                    f"layer {spec.name!r} ({spec.type}): {_where(cls)}.{cls.__name__} takes no argument {key!r}"
                    + (f" (did you mean {near!r}?)" if near else "") + f"; it takes {', '.join(sorted(valid))}"
                )


def _where(cls: type) -> str:
    """Where a layer class is to be found by its users: `keras.layers`, or modelforge's own module."""
    return "keras.layers" if cls.__module__.startswith("keras") else cls.__module__


@contextlib.contextmanager
def deep_recursion(layers: int) -> Iterator[None]:
    """Room for Keras' functional graph, which it maps by recursing once per layer (a few frames each): Python's
    default limit of 1,000 frames stops a model of a few hundred layers."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * layers + 1_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def build(plan: Plan, standardize: tuple[Any, Any] | None = None, sample: Any = None,
          measure: bool = True) -> keras.Model:
    """Builds the functional model the plan describes; weights are created here, as the plan says.

    `standardize` is (mean, variance) per input feature: a `Normalization` layer with them comes first, so the
    saved model takes raw inputs (`data.standardize`). `sample` is the training inputs LSUV measures on (see
    `Plan.sample_size`); `measure=False` skips LSUV (a resumed run's weights come from its checkpoint).
    Delta-orthogonal and LSUV kernels are made with their plain Keras base, then written, so model.keras
    names only Keras initializers.

    Raises:
        ConfigError: a layer spec key that the Keras class does not take (checked before anything is made).

    Example:
        >>> from modelforge import compose, plan
        >>> model = build(plan(compose(["model.depth=1"])))
        >>> [layer.name for layer in model.layers]
        ['inputs', 'block1_dense', 'head']
    """
    before_tensorflow()
    import keras

    check_layer_args(plan)
    dtype = "int32" if plan.info.vocab_size else None
    inputs = keras.Input(shape=plan.info.input_shape, name=INPUTS, dtype=dtype)
    x = inputs
    if standardize is not None:
        # Every input position keeps its own statistics (axis: all but the batch).
        axes = tuple(range(1, len(plan.info.input_shape) + 1))
        x = keras.layers.Normalization(axis=axes, mean=standardize[0], variance=standardize[1], name=STANDARDIZE)(x)
    from modelforge.layers import call

    def made(spec: LayerSpec, xs: list[Any]) -> Any:
        return chained(make_layers(spec, plan), xs, call)

    x = walk(plan.specs, {INPUTS: x}, made)[plan.specs[-1].name]
    with deep_recursion(len(plan.specs)):
        model = keras.Model(inputs, x, name="modelforge")
    write_projections(model, plan)
    write_computed(model, plan, sample, measure)
    return model


def projection_values(entry: PlanEntry) -> Any:
    """One attention weight's values, drawn by its own initializer with its own seed: a kernel as the (input units)
    x (output units) matrix its einsum computes (so fans and orthogonality are the matrix's), then reshaped.

    Example:
        >>> from modelforge import compose, plan
        >>> entries = plan(compose(["model=transformer"])).for_layer("encoder1.attn.mha1")
        >>> query = next(e for e in entries if e.weight == "query/kernel")
        >>> projection_values(query).shape
        (32, 4, 8)
    """
    import numpy as np

    made = make_initializer(entry)
    einsum = entry.weight.endswith("kernel") and entry.fan_in is not None and entry.build[0] != CUSTOM
    shape = (int(entry.fan_in or 1), int(entry.fan_out or 1)) if einsum else entry.shape
    return np.reshape(np.asarray(made(shape, dtype="float32")), entry.shape)


def write_projections(model: keras.Model, plan: Plan) -> None:
    """Each attention projection's own values: Keras' MultiHeadAttention clones one initializer for its four
    kernels, so with a seeded initializer query, key and value would start equal; the plan gives each its own
    seed, and its values are written here, by path, after the build."""
    from modelforge.layers import weight_name

    for entry in plan.entries:
        if entry.type == "multi_head_attention":
            layer = model.get_layer(entry.layer)
            variable = next(w for w in layer.weights if weight_name(layer, w) == entry.weight)
            variable.assign(projection_values(entry))
