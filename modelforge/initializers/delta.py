"""Delta-orthogonal convolution kernels (Xiao et al. 2018, "Dynamical Isometry and a Mean Field Theory of CNNs").

A kernel that is zero but for an orthogonal matrix H at its centre tap makes the convolution act on each position
as H alone, so a stack of them, with same padding and a linear activation, is an isometry: every singular value
of the input-output Jacobian is 1. Keras has no such initializer (TensorFlow keeps an unexported TF1 one).
"""

from __future__ import annotations

from typing import Any


def orthogonal(rows: int, cols: int, rng: Any) -> Any:
    """A `rows x cols` matrix with orthonormal rows (rows <= cols) or columns, uniformly drawn (Haar).

    QR of a Gaussian matrix, with the signs of R's diagonal folded into Q so the draw is uniform.

    Example:
        >>> import numpy as np
        >>> q = orthogonal(3, 5, np.random.default_rng(0))
        >>> bool(np.allclose(q @ q.T, np.eye(3)))
        True
    """
    import numpy as np

    gaussian = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diag(r))
    return q if rows >= cols else q.T


def delta_orthogonal(shape: tuple[int, ...], gain: float, seed: int | None, depthwise: bool = False) -> Any:
    """A kernel of `shape` (*taps, rows, cols): zeros, and `gain` x an orthogonal matrix at the centre tap.

    The centre is index k // 2 on each spatial axis. A depthwise kernel (*taps, channels, multiplier) keeps its
    channels apart, so each channel gets its own unit vector of `multiplier` values there instead.

    Example:
        >>> import numpy as np
        >>> k = delta_orthogonal((3, 3, 4, 4), 2.0, seed=0)
        >>> bool(np.allclose(k[1, 1] @ k[1, 1].T, 4 * np.eye(4), atol=1e-5))
        True
        >>> float(np.abs(k).sum() - np.abs(k[1, 1]).sum())
        0.0
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    kernel = np.zeros(shape, dtype=np.float32)
    centre = tuple(k // 2 for k in shape[:-2])
    rows, cols = shape[-2:]
    if depthwise:
        vectors = rng.standard_normal((rows, cols))
        kernel[centre] = gain * vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    else:
        kernel[centre] = gain * orthogonal(rows, cols, rng)
    return kernel
