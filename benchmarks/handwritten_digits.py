"""The default modelforge run written by hand in Keras: the baseline `make bench` compares against.

Same data and split (digits / 16, validation 20% drawn with default_rng(seed)), same model (two Dense(64,
relu, He normal) blocks, softmax head), same optimizer, epochs and batch size; it also saves the model.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

SEED, EPOCHS, BATCH = 0, 20, 32
INITIALIZERS = ["he_normal", "glorot_uniform", "glorot_normal", "he_uniform", "lecun_normal", "lecun_uniform"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--runs", type=int, default=1, help="fits in this one process, one initializer each")
    args = parser.parse_args()
    tf.config.experimental.enable_op_determinism()
    for run in range(args.runs):
        fit_once(INITIALIZERS[run % len(INITIALIZERS)], args.epochs)


def fit_once(initializer: str, epochs: int) -> None:
    keras.utils.set_random_seed(SEED)
    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)
    order = np.random.default_rng(SEED).permutation(len(x))
    n_val = round(len(x) * 0.2)
    train, val = order[n_val:], order[:n_val]
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, "relu", kernel_initializer=keras.initializers.get(initializer)),
        keras.layers.Dense(64, "relu", kernel_initializer=keras.initializers.get(initializer)),
        keras.layers.Dense(10, "softmax", kernel_initializer=keras.initializers.GlorotUniform(3)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=epochs, batch_size=BATCH,
                        verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, "model.keras"))
    print(f"val_accuracy={history.history['val_accuracy'][-1]:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
