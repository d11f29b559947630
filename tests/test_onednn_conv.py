"""Convolutions with bfloat16 products (jgan.onednn_conv, `train.precision: bf16`) against PyTorch in
float64 on the same bfloat16-rounded operands: values, gradients and a gradient penalty's second
order; their routing of Jittor's convolutions; and the refusals where they cannot run."""
import jittor as jt
import numpy as np
import pytest
import torch
from jittor import nn
from torch.nn import functional as F

from jgan import onednn_conv, runtime
from jgan.errors import ConfigError
from parity import CONVOLUTIONS, TRANSPOSED, assert_close

ATOL = 1e-5   # float32 sums of exact products of bfloat16 values, relative to the largest output
BF16_EPS = 2.0 ** -8   # the spacing of bfloat16 numbers in [1, 2)


def arrays(x_shape, w_shape, seed):
    """x, w and a bias of the transposed convolution's outputs; none of them bfloat16 numbers."""
    rng = np.random.RandomState(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in (x_shape, w_shape, w_shape[1:2])]


def rounded(array):
    """The array rounded to bfloat16 (to nearest, ties to even, as oneDNN converts), in float64."""
    return torch.tensor(array).to(torch.bfloat16).to(torch.float64)


def to_channels_last(array):
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1))


def jittor_side(function, x, w, b, channels_last=False, bfloat16=True, **kwargs):
    """The output and d(sum(y * g))/d(x, w, b) of `function`, for a fixed random g; x, y and dx
    channels-last inside where asked, (N, C, H, W) as returned."""
    xv, wv, bv = jt.array(to_channels_last(x) if channels_last else x), jt.array(w), jt.array(b)
    y = function(xv, wv, bv, channels_last=channels_last, bfloat16=bfloat16, **kwargs)
    y_shape = (y.shape[0], y.shape[3], y.shape[1], y.shape[2]) if channels_last else y.shape
    g = np.random.RandomState(7).uniform(-1, 1, y_shape).astype(np.float32)
    y_grads = jt.grad((y * jt.array(to_channels_last(g) if channels_last else g)).sum(), [xv, wv, bv])
    values = [v.numpy() for v in (y, *y_grads)]
    if channels_last:
        values[:2] = [v.transpose(0, 3, 1, 2) for v in values[:2]]
    return values, g


def exact(array):
    return torch.tensor(array, dtype=torch.float64)


def torch_side(function, x, w, b, g, bfloat16=True, **kwargs):
    """The same in float64, the convolution's operands (x and w forward, g and w or x backward)
    rounded to bfloat16 as the primitives round them (unless float32); the bias and its gradient exact."""
    operand = rounded if bfloat16 else exact
    xt, wt = operand(x).requires_grad_(), operand(w).requires_grad_()
    y = function(xt, wt, None, **kwargs)
    dx, dw = torch.autograd.grad(y, [xt, wt], operand(g))
    bias = torch.tensor(b, dtype=torch.float64).reshape(1, -1, 1, 1)
    return [t.detach().numpy() for t in (y + bias, dx, dw)] + [g.astype(np.float64).sum(axis=(0, 2, 3))]


def check_against_torch(name, ours, reference):
    for label, got, want in zip(("y", "dx", "dw", "db"), ours, reference):
        assert_close(f"{name} {label}", got, want, atol=ATOL * max(1.0, np.abs(want).max()))


@pytest.fixture(params=["primitive", "product"])
def gradients(request, monkeypatch):
    """Each test once with oneDNN's gradient primitives and once with the matrix products."""
    monkeypatch.setattr(onednn_conv, "by_product", lambda kind, geometry: request.param == "product"
                        and geometry.bfloat16 and kind in onednn_conv.PRODUCT_OUTPUTS)
    return request.param


@pytest.fixture(params=[False, True], ids=["channels_first", "channels_last"])
def channels_last(request):
    """Each test once with (N, C, H, W) activations and once with (N, H, W, C) ones."""
    return request.param


@pytest.mark.parametrize("name", CONVOLUTIONS)
def test_conv2d_matches_pytorch_on_bfloat16_operands_with_its_gradients(name, gradients, channels_last):
    x_shape, w_shape, stride, padding = CONVOLUTIONS[name]
    x, w, _ = arrays(x_shape, w_shape, seed=len(name))
    b = np.random.RandomState(3).uniform(-1, 1, w_shape[:1]).astype(np.float32)
    ours, g = jittor_side(onednn_conv.conv2d, x, w, b, channels_last, stride=stride, padding=padding)
    check_against_torch(name, ours, torch_side(F.conv2d, x, w, b, g, stride=stride, padding=padding))


@pytest.mark.parametrize("name", TRANSPOSED)
def test_conv_transpose2d_matches_pytorch_on_bfloat16_operands_with_its_gradients(name, gradients, channels_last):
    x_shape, w_shape, stride, padding, output_padding = TRANSPOSED[name]
    x, w, b = arrays(x_shape, w_shape, seed=len(name))
    ours, g = jittor_side(onednn_conv.conv_transpose2d, x, w, b, channels_last, stride=stride, padding=padding,
                          output_padding=output_padding)
    check_against_torch(name, ours, torch_side(F.conv_transpose2d, x, w, b, g, stride=stride, padding=padding,
                                               output_padding=output_padding))


@pytest.mark.parametrize("name", CONVOLUTIONS)
def test_conv2d_matches_pytorch_on_float32_operands_with_its_gradients(name, channels_last):
    x_shape, w_shape, stride, padding = CONVOLUTIONS[name]
    x, w, _ = arrays(x_shape, w_shape, seed=len(name))
    b = np.random.RandomState(3).uniform(-1, 1, w_shape[:1]).astype(np.float32)
    ours, g = jittor_side(onednn_conv.conv2d, x, w, b, channels_last, bfloat16=False, stride=stride, padding=padding)
    check_against_torch(name, ours, torch_side(F.conv2d, x, w, b, g, bfloat16=False, stride=stride, padding=padding))


@pytest.mark.parametrize("name", TRANSPOSED)
def test_conv_transpose2d_matches_pytorch_on_float32_operands_with_its_gradients(name, channels_last):
    x_shape, w_shape, stride, padding, output_padding = TRANSPOSED[name]
    x, w, b = arrays(x_shape, w_shape, seed=len(name))
    ours, g = jittor_side(onednn_conv.conv_transpose2d, x, w, b, channels_last, bfloat16=False, stride=stride,
                          padding=padding, output_padding=output_padding)
    check_against_torch(name, ours, torch_side(F.conv_transpose2d, x, w, b, g, bfloat16=False, stride=stride,
                                               padding=padding, output_padding=output_padding))


@pytest.mark.parametrize("outputs, weights_by_product, data_by_product", [(512, True, True), (256, True, False),
                                                                          (64, False, False)])
def test_the_gradients_of_many_outputs_are_products(outputs, weights_by_product, data_by_product):
    """The choice as the layers of a DCGAN critic meet it, and the chosen ways' values."""
    x, w, _ = arrays((2, 8, 6, 6), (outputs, 8, 4, 4), seed=9)
    b = np.zeros(outputs, np.float32)
    geometry = onednn_conv.Geometry((2, 8, 6, 6), w.shape, (2, outputs, 3, 3), (2, 2), (1, 1))
    assert onednn_conv.by_product("backward_weights", geometry) == weights_by_product
    assert onednn_conv.by_product("backward_data", geometry) == data_by_product
    assert not onednn_conv.by_product("forward", geometry)
    ours, g = jittor_side(onednn_conv.conv2d, x, w, b, stride=2, padding=1)
    check_against_torch(f"{outputs} outputs", ours, torch_side(F.conv2d, x, w, b, g, stride=2, padding=1))


def test_a_dense_layer_takes_its_gradients_as_products():
    """A DCGAN generator's projection: its convolution has a one-pixel output."""
    geometry = onednn_conv.Geometry((64, 512, 4, 4), (100, 512, 4, 4), (64, 100, 1, 1), (1, 1), (0, 0))
    assert onednn_conv.by_product("backward_weights", geometry) and onednn_conv.by_product("backward_data", geometry)


def test_the_products_are_bfloat16_ones_unless_float32():
    """Unrounded operands give float32's result only to bfloat16's precision: the rounding happens,
    and only where asked."""
    x, w, _ = arrays((4, 16, 8, 8), (8, 16, 3, 3), seed=5)
    want = F.conv2d(exact(x), exact(w), padding=1).numpy()
    for bfloat16, low, high in ((True, 1e-5, 4 * BF16_EPS), (False, 0, 1e-6)):
        ours = onednn_conv.conv2d(jt.array(x), jt.array(w), padding=1, bfloat16=bfloat16).numpy()
        error = np.abs(ours - want).max() / np.abs(want).max()
        assert low < error < high, f"bfloat16={bfloat16}: relative error {error:.1e}"


def test_a_gradient_penalty_differentiates_through_them_twice(gradients, channels_last):
    """d/dw of |d sum(conv(x, w) * g) / dx|^2, as WGAN-GP and R1 take it, to bfloat16's precision."""
    x, w, _ = arrays((2, 3, 8, 8), (4, 3, 4, 4), seed=11)
    g = np.random.RandomState(12).uniform(-1, 1, (2, 4, 4, 4)).astype(np.float32)
    layout = to_channels_last if channels_last else np.ascontiguousarray
    xv, wv = jt.array(layout(x)), jt.array(w)
    y = onednn_conv.conv2d(xv, wv, stride=2, padding=1, channels_last=channels_last)
    dx = jt.grad((y * jt.array(layout(g))).sum(), xv)
    ours = jt.grad((dx * dx).sum(), wv).numpy()
    xt, wt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w))
    (dxt,) = torch.autograd.grad((F.conv2d(xt, wt, stride=2, padding=1) * torch.tensor(g, dtype=torch.float64)).sum(),
                                 xt, create_graph=True)
    (want,) = torch.autograd.grad((dxt * dxt).sum(), wt)
    assert_close("penalty d/dw", ours, want.numpy(), atol=8 * BF16_EPS * np.abs(want.numpy()).max())


@pytest.fixture
def enabled():
    onednn_conv.enable_bfloat16(True)
    yield
    onednn_conv.enable_bfloat16(False)


def test_enabled_it_runs_jittors_cpu_convolutions_except_those_it_cannot(enabled, monkeypatch):
    calls = []
    for name in ("conv2d", "conv_transpose2d"):
        original = getattr(onednn_conv, name)
        monkeypatch.setattr(onednn_conv, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    x = jt.array(np.random.RandomState(1).uniform(-1, 1, (2, 4, 10, 10)).astype(np.float32))
    jt.set_global_seed(0)
    conv, transposed = nn.Conv2d(4, 6, 3, 1, 1), nn.ConvTranspose2d(4, 6, 4, 2, 1)
    cropped = nn.Conv2d(4, 6, 3, 2, 0)   # 10 px, stride 2, no padding: one column left over
    grouped = nn.Conv2d(4, 6, 3, 1, 1, groups=2)
    outputs = [conv(x), transposed(x), nn.conv2d(x, conv.weight, conv.bias, padding=1), cropped(x), grouped(x)]
    assert calls == ["conv2d", "conv_transpose2d", "conv2d"]
    onednn_conv.enable_bfloat16(False)
    expected = [conv(x), transposed(x), nn.conv2d(x, conv.weight, conv.bias, padding=1), cropped(x), grouped(x)]
    assert len(calls) == 3, "disabled, Jittor's own convolutions run"
    for got, want in zip(outputs, expected):
        assert_close("routed convolution", got.numpy(), want.numpy(), atol=8 * BF16_EPS * np.abs(want.numpy()).max())


def test_precision_bf16_is_refused_on_a_cpu_without_bfloat16_instructions(monkeypatch):
    monkeypatch.setattr(onednn_conv, "cpu_flags", lambda: {"avx2", "avx512f"})
    with pytest.raises(ConfigError, match="no bfloat16 instructions"):
        runtime.set_precision("bf16")
    assert not onednn_conv.bfloat16_enabled()


def test_precision_bf16_is_refused_without_onednn(monkeypatch):
    monkeypatch.setattr(onednn_conv, "cpu_flags", lambda: {"amx_bf16"})
    monkeypatch.setattr(runtime, "onednn_active", lambda: False)
    with pytest.raises(ConfigError, match="oneDNN, which is not active"):
        runtime.set_precision("bf16")


def test_set_precision_switches_the_route_both_ways(monkeypatch):
    monkeypatch.setattr(onednn_conv, "cpu_flags", lambda: {"amx_bf16"})
    runtime.set_precision("bf16")
    assert onednn_conv.bfloat16_enabled() and nn.conv2d == onednn_conv.ROUTE.conv2d
    runtime.set_precision("fp32")
    assert not onednn_conv.bfloat16_enabled() and nn.conv2d != onednn_conv.ROUTE.conv2d
