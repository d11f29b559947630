"""Scalars that change from step to step (the fade-in alpha, the style-mixing crossover, the
augmentation probability), as Vars that Jittor reads at run time, so that a new value compiles no
new kernels.

Jittor bakes Python numbers into its kernels, and also the value of a (1,)-shaped array when it
is 1 or 2 in magnitude or its bits read as an integer of magnitude at most 2 (0 included):
ArrayOp::jit_prepare adds it to the kernel's key for constant folding. So a crossover that
is 1 or 2 on some steps and 10**6 on others, or an alpha that is 0 at a fade-in's first step,
ran kernels of its own. A (1, 1)-shaped array is never folded; it broadcasts like a scalar
against any tensor of two or more dimensions.
"""
import jittor as jt
import numpy as np


def scalar_var(value):
    """`value` as a (1, 1) float32 Var that no kernel bakes in (it broadcasts as a scalar over 2-d and wider)."""
    return jt.array(np.full((1, 1), value, np.float32)).stop_grad()
