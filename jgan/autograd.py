"""Custom gradients (jt.Function) that keep nothing alive once no second differentiation can follow.

A jt.Function holds the Vars its gradient needs as Python attributes, and Jittor frees no Var that
Python holds. The gradient of a jgan Function is itself a Function (so that the gradient
penalties can differentiate it again), and those made by a backward pass live until the gradients
they computed are dropped, after the optimiser's update: each keeps a layer's input or output
gradient alive to the end of the step. In a backward pass that nothing will differentiate (an
optimiser's, which does not keep the graph), `Function` computes its gradient as plain values,
which Jittor frees as soon as they have been read.
"""
import contextlib

import jittor as jt

_final_passes = 0   # how many backward passes that nothing differentiates are being built now


@contextlib.contextmanager
def final_backward():
    """Gradients built inside are never differentiated (a backward pass that drops its graph)."""
    global _final_passes
    _final_passes += 1
    try:
        yield
    finally:
        _final_passes -= 1


def in_final_backward():
    return _final_passes > 0


class Function(jt.Function):
    """A jt.Function whose gradient, in a final backward pass, is plain values: no Function it
    calls there keeps its inputs."""

    def _grad(self, *args):
        if not in_final_backward():
            return super()._grad(*args)
        with jt.no_grad():
            return super()._grad(*args)
