"""A user's own initializer, as a user would write it: registered so saved models load again."""

import math

import keras


@keras.saving.register_keras_serializable(package="modelforge_tests")
class GainNormal(keras.initializers.Initializer):
    """Normal with std = gain / sqrt(fan_in), using the fans it is given rather than guessing them."""

    def __init__(self, gain=1.0, fan_in=None, fan_out=None, seed=None):
        self.gain, self.fan_in, self.fan_out, self.seed = gain, fan_in, fan_out, seed

    def __call__(self, shape, dtype=None):
        std = self.gain / math.sqrt(self.fan_in)
        return keras.random.normal(shape, stddev=std, seed=self.seed, dtype=dtype)

    def get_config(self):
        return {"gain": self.gain, "fan_in": self.fan_in, "fan_out": self.fan_out, "seed": self.seed}
