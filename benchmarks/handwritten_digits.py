"""The default modelforge run written by hand in Keras: the baseline `make bench` compares against.

Same data and split (digits / 16, validation 20% drawn with default_rng(seed)), same model (two Dense(64,
relu, He normal) blocks, softmax head), same optimizer, epochs and batch size; it also saves the model.
"""

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

SEED, EPOCHS, BATCH = 0, 20, 32


def main() -> None:
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)
    order = np.random.default_rng(SEED).permutation(len(x))
    n_val = round(len(x) * 0.2)
    train, val = order[n_val:], order[:n_val]
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, "relu", kernel_initializer=keras.initializers.HeNormal(1)),
        keras.layers.Dense(64, "relu", kernel_initializer=keras.initializers.HeNormal(2)),
        keras.layers.Dense(10, "softmax", kernel_initializer=keras.initializers.GlorotUniform(3)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=EPOCHS, batch_size=BATCH,
                        verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, "model.keras"))
    print(f"val_accuracy={history.history['val_accuracy'][-1]:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
