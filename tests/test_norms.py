"""Specification of jgan.norms: BatchNorm2d, InstanceNorm2d and AdaIN's normalisation against PyTorch.

Outputs and gradients with respect to the input and the affine parameters, to second order (a
WGAN-GP critic differentiates through its normalisation twice), in training mode; the running
statistics (Jittor's convention: the biased batch variance) and evaluation mode for batch norm.
"""
import jittor as jt
import numpy as np
import pytest
import torch

from jgan.norms import BatchNorm2d, InstanceNorm2d
from parity import assert_close

ATOL = 2e-5          # relative to the largest reference value when that exceeds 1
SHAPE = (4, 3, 5, 6)


def random_array(*shape, seed=0):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def penalised(layer, x, weight, r1, r2, grad):
    """(y, d/dx sum(y^3 r1), then d/dx and d/dweight of sum((that)^2 r2))."""
    y = layer(x)
    first = grad((y * y * y * r1).sum(), [x], True)[0]
    penalty = (first * first * r2).sum()
    return [y, first] + list(grad(penalty, [x, weight], False))


def jittor_grad(loss, variables, _):
    return jt.grad(loss, variables)


def torch_grad(loss, variables, create_graph):
    return torch.autograd.grad(loss, variables, create_graph=create_graph)


def channels_last_call(layer, **kwargs):
    """layer on (N, C, H, W) arrays, run inside on (N, H, W, C) ones."""
    return lambda x: layer(x.transpose(0, 2, 3, 1), channels_last=True, **kwargs).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("channels_last", [False, True], ids=["channels_first", "channels_last"])
@pytest.mark.parametrize("jt_class, th_class", [(BatchNorm2d, torch.nn.BatchNorm2d),
                                                 (InstanceNorm2d, torch.nn.InstanceNorm2d)])
def test_normalisation_matches_torch_to_second_order(jt_class, th_class, channels_last):
    x = random_array(*SHAPE) * 3 + 1
    weight, bias = random_array(3, seed=4) + 1, random_array(3, seed=5)
    r1, r2 = random_array(*SHAPE, seed=1), random_array(*SHAPE, seed=2)
    jt_layer, th_layer = jt_class(3, affine=True), th_class(3, affine=True)
    jt_layer.weight.assign(jt.array(weight))
    jt_layer.bias.assign(jt.array(bias))
    with torch.no_grad():
        th_layer.weight.copy_(torch.tensor(weight))
        th_layer.bias.copy_(torch.tensor(bias))
    th_layer.train()
    ours = channels_last_call(jt_layer) if channels_last else jt_layer
    jt_values = penalised(ours, jt.array(x), jt_layer.weight, jt.array(r1), jt.array(r2), jittor_grad)
    th_values = penalised(th_layer, torch.tensor(x, requires_grad=True), th_layer.weight,
                          torch.tensor(r1), torch.tensor(r2), torch_grad)
    labels = ("output", "d/dx", "second order d/dx", "second order d/dweight")
    for label, jt_value, th_value in zip(labels, jt_values, th_values):
        scale = max(1.0, float(np.abs(th_value.detach().numpy()).max()))
        assert_close(f"{jt_class.__name__} {label}", jt_value, th_value, atol=ATOL * scale)


def test_batch_norm_channels_last_keeps_the_same_statistics_and_evaluation():
    """Two batches in one pass (parts), then evaluation: as channels-first, running statistics included."""
    x = random_array(8, 3, 5, 6) * 2 + 3
    first, last = BatchNorm2d(3), BatchNorm2d(3)
    for weight in (first.weight, last.weight):
        weight.assign(jt.array(random_array(3, seed=4) + 1))
    outputs = [first(jt.array(x), slope=0.2, parts=2), channels_last_call(last, slope=0.2, parts=2)(jt.array(x))]
    assert_close("parts output", outputs[1], outputs[0].numpy(), atol=1e-5)
    for name in ("running_mean", "running_var"):
        assert_close(name, getattr(last, name), getattr(first, name).numpy(), atol=1e-6)
    first.eval(), last.eval()
    assert_close("evaluation output", channels_last_call(last, slope=0.2)(jt.array(x)),
                 first(jt.array(x), slope=0.2).numpy(), atol=1e-5)


def test_batch_norm_running_statistics_and_evaluation_mode():
    x = random_array(*SHAPE) * 2 + 3
    layer = BatchNorm2d(3)
    layer(jt.array(x)).sync()
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))        # Jittor keeps the biased variance
    assert_close("running_mean", layer.running_mean, 0.9 * 0 + 0.1 * mean, atol=1e-6)
    assert_close("running_var", layer.running_var, 0.9 * 1 + 0.1 * var, atol=1e-5)
    layer.eval()
    expected = (x - layer.running_mean.numpy().reshape(1, 3, 1, 1)) / np.sqrt(
        layer.running_var.numpy().reshape(1, 3, 1, 1) + 1e-5)
    assert_close("evaluation output", layer(jt.array(x)), expected, atol=1e-5)
