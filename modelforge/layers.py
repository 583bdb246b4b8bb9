"""modelforge's own Keras layers: for residual branches a learnable scalar gate, a per-channel scale and a fixed
shortcut factor; for sequences learned positions.

Both are registered for serialization under the package `modelforge`, so a saved model that holds them loads once
modelforge is imported (`import modelforge` registers them when Keras is imported: `modelforge.system.imports`);
a model without them stays plain Keras. Keras is imported here, so only what builds or loads models imports this.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="modelforge")
class Gate(keras.layers.Layer):
    """A learnable scalar times the input: `alpha * x`, at a residual branch's end.

    ReZero (Bachlechner et al. 2020, "ReZero is all you need") starts alpha at 0, so each block is the identity at
    initialization; SkipInit (De & Smith 2020) at a small value. The initializer is `alpha_initializer` (the plan's,
    zeros by default).

    Example:
        >>> import numpy as np
        >>> gate = Gate(alpha_initializer=keras.initializers.Constant(0.5))
        >>> np.asarray(gate(np.ones((2, 3), "float32"))).tolist()
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    """

    def __init__(self, alpha_initializer: Any = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.alpha = self.add_weight(name="alpha", shape=(), initializer=self.alpha_initializer)

    def call(self, inputs: Any) -> Any:
        return inputs * keras.ops.cast(self.alpha, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha_initializer": keras.initializers.serialize(self.alpha_initializer)}


@keras.saving.register_keras_serializable(package="modelforge")
class LayerScale(keras.layers.Layer):
    """A learnable scale per channel: `gamma * x` over the last axis, at a residual branch's end.

    LayerScale (Touvron et al. 2021, "Going deeper with image transformers", CaiT) starts gamma at a small constant
    chosen by depth. The initializer is `gamma_initializer` (the plan's).

    Example:
        >>> import numpy as np
        >>> scale = LayerScale(gamma_initializer=keras.initializers.Constant(0.25))
        >>> np.asarray(scale(np.ones((1, 2), "float32"))).tolist()
        [[0.25, 0.25]]
    """

    def __init__(self, gamma_initializer: Any = "ones", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer=self.gamma_initializer)

    def call(self, inputs: Any) -> Any:
        return inputs * keras.ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma_initializer": keras.initializers.serialize(self.gamma_initializer)}


@keras.saving.register_keras_serializable(package="modelforge")
class Scale(keras.layers.Layer):
    """A fixed factor times the input: `factor * x`, on a residual block's shortcut.

    DeepNorm (Wang et al. 2022, "DeepNet: scaling Transformers to 1,000 layers") computes `LN(alpha x + f(x))` with
    alpha = (2N)^(1/4) for an encoder of N blocks. The factor is a non-trainable weight set by `factor_initializer`
    (the plan's), so the plan shows it and a saved model carries it.

    Example:
        >>> import numpy as np
        >>> scale = Scale(factor_initializer=keras.initializers.Constant(2.0))
        >>> np.asarray(scale(np.ones((1, 2), "float32"))).tolist(), scale.trainable_weights
        ([[2.0, 2.0]], [])
    """

    def __init__(self, factor_initializer: Any = "ones", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor_initializer = keras.initializers.get(factor_initializer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.factor = self.add_weight(name="factor", shape=(), initializer=self.factor_initializer, trainable=False)

    def call(self, inputs: Any) -> Any:
        return inputs * keras.ops.cast(self.factor, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor_initializer": keras.initializers.serialize(self.factor_initializer)}


@keras.saving.register_keras_serializable(package="modelforge")
class PositionEmbedding(keras.layers.Layer):
    """A learned vector per position added to a sequence: `x[:, t] + embeddings[t]`.

    BERT's and ViT's learned positions (Devlin et al. 2019; Dosovitskiy et al. 2021), for inputs of a fixed
    number of steps. The initializer is `embeddings_initializer` (the plan's).

    Example:
        >>> import numpy as np
        >>> positions = PositionEmbedding(embeddings_initializer="ones")
        >>> np.asarray(positions(np.zeros((1, 3, 2), "float32"))).tolist()
        [[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]]
    """

    def __init__(self, embeddings_initializer: Any = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.embeddings = self.add_weight(name="embeddings", shape=(input_shape[-2], input_shape[-1]),
                                          initializer=self.embeddings_initializer)

    def call(self, inputs: Any) -> Any:
        return inputs + keras.ops.cast(self.embeddings, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}


def call(layer: keras.layers.Layer, h: Any, **kwargs: Any) -> Any:
    """A layer on a node's input (one tensor, or a merge's list): an attention layer on (query, value), the one
    input twice (self-attention) or the two it takes.

    Example:
        >>> import numpy as np
        >>> x = np.ones((1, 3, 4), "float32")
        >>> tuple(call(keras.layers.MultiHeadAttention(num_heads=2, key_dim=2), x).shape)
        (1, 3, 4)
    """
    if isinstance(layer, keras.layers.MultiHeadAttention):
        query, value = h if isinstance(h, list) else (h, h)
        return layer(query, value, **kwargs)
    return layer(h, **kwargs)


def weight_name(layer: keras.layers.Layer, weight: Any) -> str:
    """The name the plan gives a layer's weight: Keras' own (`kernel`), but an attention layer's with its projection
    (`query/kernel`), since its four kernels share the name.

    Example:
        >>> mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")
        >>> mha.build((None, 3, 4), (None, 3, 4))
        >>> weight_name(mha, mha.weights[2])
        'key/kernel'
    """
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return str(weight.path).removeprefix(f"{layer.name}/")
    return str(weight.name)


def layer_class(name: str) -> type[keras.layers.Layer]:
    """The class a layer type names: Keras' own, or one of modelforge's here.

    Example:
        >>> layer_class("Dense").__name__, layer_class("Gate").__module__
        ('Dense', 'modelforge.layers')
    """
    found = getattr(keras.layers, name, None) or globals().get(name)
    if not (isinstance(found, type) and issubclass(found, keras.layers.Layer)):
        raise KeyError(f"no layer class {name!r} in keras.layers or modelforge.layers")
    return found
