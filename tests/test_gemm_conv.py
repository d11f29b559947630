"""Convolutions as matrix products (jgan.gemm_conv, CUDA without cuDNN) against PyTorch, value and
gradients, and their routing of Jittor's convolutions; run here on the CPU."""
import jittor as jt
import numpy as np
import pytest
import torch
from jittor import nn
from torch.nn import functional as F

from jgan import gemm_conv, runtime
from parity import CONVOLUTIONS, TRANSPOSED, assert_close

ATOL = 2e-5   # float32 sums of up to 3 x 7 x 7 products of values below 1, against float64


def arrays(x_shape, w_shape, seed):
    rng = np.random.RandomState(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in (x_shape, w_shape, w_shape[:1], w_shape[1:2])]


def jittor_side(function, x, w, b, **kwargs):
    """The output and d(sum(y * g))/d(x, w, b) of `function`, for a fixed random g."""
    xv, wv, bv = jt.array(x), jt.array(w), jt.array(b)
    y = function(xv, wv, bv, **kwargs)
    g = jt.array(np.random.RandomState(7).uniform(-1, 1, y.shape).astype(np.float32))
    grads = jt.grad((y * g).sum(), [xv, wv, bv])
    return [v.numpy() for v in (y, *grads)], g.numpy()


def torch_side(function, x, w, b, g, **kwargs):
    xt, wt, bt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    y = function(xt, wt, bt, **kwargs)
    (y * torch.tensor(g, dtype=torch.float64)).sum().backward()
    return [t.detach().numpy() for t in (y, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("name", CONVOLUTIONS)
def test_conv2d_matches_pytorch_with_its_gradients(name):
    x_shape, w_shape, stride, padding = CONVOLUTIONS[name]
    x, w, b, _ = arrays(x_shape, w_shape, seed=len(name))
    ours, g = jittor_side(gemm_conv.conv2d, x, w, b, stride=stride, padding=padding)
    reference = torch_side(F.conv2d, x, w, b, g, stride=stride, padding=padding)
    for label, got, want in zip(("y", "dx", "dw", "db"), ours, reference):
        assert_close(f"{name} {label}", got, want, atol=ATOL * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("name", TRANSPOSED)
def test_conv_transpose2d_matches_pytorch_with_its_gradients(name):
    x_shape, w_shape, stride, padding, output_padding = TRANSPOSED[name]
    x, w, _, b = arrays(x_shape, w_shape, seed=len(name))
    ours, g = jittor_side(gemm_conv.conv_transpose2d, x, w, b, stride=stride, padding=padding,
                          output_padding=output_padding)
    reference = torch_side(F.conv_transpose2d, x, w, b, g, stride=stride, padding=padding,
                           output_padding=output_padding)
    for label, got, want in zip(("y", "dx", "dw", "db"), ours, reference):
        assert_close(f"{name} {label}", got, want, atol=ATOL * max(1.0, np.abs(want).max()))


@pytest.fixture
def routed(monkeypatch):
    """Jittor's convolutions routed as on CUDA without cuDNN, given back afterwards; the calls
    that reached gemm_conv are counted."""
    calls = []
    for name in ("conv2d", "conv_transpose2d"):
        original = getattr(gemm_conv, name)
        monkeypatch.setattr(gemm_conv, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    monkeypatch.setattr(gemm_conv, "routed", lambda *args: True)
    gemm_conv.install()
    yield calls
    gemm_conv.uninstall()


def test_installed_it_runs_jittors_convolution_functions_and_modules_except_grouped_ones(routed):
    x = jt.array(np.random.RandomState(1).uniform(-1, 1, (2, 4, 8, 8)).astype(np.float32))
    jt.set_global_seed(0)
    conv, transposed, grouped = nn.Conv2d(4, 6, 3, 1, 1), nn.ConvTranspose2d(4, 6, 4, 2, 1), nn.Conv2d(4, 6, 3, 1, 1, groups=2)
    outputs = [conv(x), transposed(x), nn.conv2d(x, conv.weight, conv.bias, padding=1),
               nn.conv_transpose2d(x, transposed.weight, stride=2, padding=1), grouped(x)]
    assert routed == ["conv2d", "conv_transpose2d", "conv2d", "conv_transpose2d"]
    gemm_conv.uninstall()
    expected = [conv(x), transposed(x), nn.conv2d(x, conv.weight, conv.bias, padding=1),
                nn.conv_transpose2d(x, transposed.weight, stride=2, padding=1), grouped(x)]
    assert len(routed) == 4, "uninstalled, Jittor's own convolutions run"
    for got, want in zip(outputs, expected):
        assert_close("routed convolution", got.numpy(), want.numpy(), atol=1e-5)


def test_the_runtime_routes_convolutions_only_on_cuda_without_cudnn(monkeypatch):
    from jittor import compile_extern
    installs = []
    monkeypatch.setattr(gemm_conv, "install", lambda: installs.append(True))
    for has_cuda, cudnn, routes in ((False, None, False), (True, object(), False), (True, None, True)):
        monkeypatch.setattr(jt, "has_cuda", has_cuda)
        monkeypatch.setattr(compile_extern, "cudnn", cudnn, raising=False)
        installs.clear()
        runtime.route_convolutions()
        assert bool(installs) == routes, (has_cuda, cudnn)
