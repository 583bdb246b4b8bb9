"""Data: the arrays of each data set (bundled, generated or downloaded once), and the seeded training batches.

TensorFlow is the point of `batches` (tf.data); the rest uses NumPy.
"""
