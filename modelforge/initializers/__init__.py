"""Kernel values modelforge computes itself, written after Keras has made each layer with its plain base.

`delta` holds the delta-orthogonal formula (NumPy); `lsuv` measures and rescales on a sample of training inputs
(Keras). The plan (`core.init.computed`) decides which kernels get what; `modelforge.build` calls `write_computed`.
"""

from modelforge.initializers.apply import write_computed

__all__ = ["write_computed"]
