"""Specification of jgan.autograd: a final backward pass (an optimiser's) gives the same gradients,
first or second order, and leaves no gradient Function holding Vars behind."""
import gc

import jittor as jt
import numpy as np

from jgan import autograd
from jgan.kernels import group_affine, group_dot, leaky_relu, reflection_pad
from jgan.optim import FusedAdam, RMSprop
from parity import assert_close


def random_var(*shape, seed=0):
    return jt.array(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def net(x, scale):
    """A chain of jgan's custom gradients: padding, a per-map affine map with a ReLU, a dot product."""
    y = group_affine(reflection_pad(x, 1), scale, None, per_channel=False, slope=0.2)
    return group_dot(leaky_relu(y, 0.1), y, per_channel=False).sum()


def live_functions():
    gc.collect()
    return sum(issubclass(type(o), autograd.Function) for o in gc.get_objects())


def test_a_final_backward_gives_the_same_gradients():
    x, scale = random_var(2, 3, 5, 6), random_var(2, 3, seed=1)
    plain = jt.grad(net(x, scale), [x, scale])
    with autograd.final_backward():
        final = jt.grad(net(x, scale), [x, scale])
    for name, a, b in zip(("x", "scale"), plain, final):
        assert_close(f"final vs plain gradient of {name}", b.numpy(), a.numpy(), atol=0, rtol=0)


def test_a_final_backward_through_a_penalty_gives_the_same_second_order_gradients():
    """The penalty's gradient is built outside (differentiable); the final pass differentiates it."""
    def penalised_gradient(final):
        x, scale = random_var(2, 3, 5, 6), random_var(2, 3, seed=1)
        first = jt.grad(net(x, scale), x, retain_graph=True)
        penalty = (first * first).sum()
        if not final:
            return jt.grad(penalty, scale).numpy()
        with autograd.final_backward():
            return jt.grad(penalty, scale).numpy()
    assert_close("second-order gradient, final vs plain", penalised_gradient(True), penalised_gradient(False),
                 atol=0, rtol=0)


def test_a_final_backward_leaves_no_gradient_function_alive():
    x, scale = random_var(2, 3, 5, 6), random_var(2, 3, seed=1)
    loss = net(x, scale)
    forward = live_functions()
    with autograd.final_backward():
        gradients = jt.grad(loss, [x, scale])
    jt.sync(gradients)
    assert live_functions() == forward, "a final backward pass left gradient Functions (and their Vars) alive"
    kept = jt.grad(net(x, scale), [x, scale])
    assert live_functions() > forward, "a plain backward pass should keep differentiable gradient Functions"
    del kept


class Probe(autograd.Function):
    """The identity; records whether its gradient was built in a final backward pass."""
    finals = []

    def execute(self, x):
        return x * 1

    def grad(self, g):
        Probe.finals.append(autograd.in_final_backward())
        return g


def test_an_optimiser_backward_is_final_unless_it_keeps_the_graph():
    for make in (lambda p: FusedAdam(p, 0.1), lambda p: RMSprop(p, 0.1)):
        w = random_var(3)
        optimizer = make([w])
        Probe.finals = []
        optimizer.backward(Probe()(w).sqr().sum())
        optimizer.backward(Probe()(w).sqr().sum(), retain_graph=True)
        assert Probe.finals == [True, False], f"{type(optimizer).__name__}: final flags {Probe.finals}"
        assert not autograd.in_final_backward(), "the final flag outlived the backward pass"
