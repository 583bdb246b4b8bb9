"""A custom initializer: normal with std = gain / sqrt(fan_in), using the fans modelforge passes in."""

import math

import keras


@keras.saving.register_keras_serializable(package="mf_extra_pack")
class ScaledNormal(keras.initializers.Initializer):
    def __init__(self, gain=1.0, fan_in=None, fan_out=None, seed=None):
        self.gain, self.fan_in, self.fan_out, self.seed = gain, fan_in, fan_out, seed

    def __call__(self, shape, dtype=None):
        return keras.random.normal(shape, stddev=self.gain / math.sqrt(self.fan_in), seed=self.seed, dtype=dtype)

    def get_config(self):
        return {"gain": self.gain, "fan_in": self.fan_in, "fan_out": self.fan_out, "seed": self.seed}
