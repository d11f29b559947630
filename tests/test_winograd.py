"""Float32 3x3 convolutions by Winograd's algorithm (jgan.winograd, `train.winograd`) against
PyTorch in float64: values, gradients and a gradient penalty's second order; which convolutions it
takes; its route and its place in `runtime.set_precision`."""
import jittor as jt
import numpy as np
import pytest
import torch
from jittor import nn
from torch.nn import functional as F

from jgan import onednn_conv, runtime, winograd
from parity import assert_close

ATOL = 2e-5   # relative to the largest value: float32 sums through Winograd's tile transforms

SHAPES = {   # (x shape, w shape, padding): StyleGAN's and PGGAN's 3x3 "same", CycleGAN's after its reflection pad
    "same": ((2, 16, 12, 12), (32, 16, 3, 3), 1),
    "valid": ((1, 32, 18, 18), (16, 32, 3, 3), 0),
}

def arrays(x_shape, w_shape, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in (x_shape, w_shape)]


def jittor_side(x, w, padding, channels_last=False, **kwargs):
    """y and d(sum(y * g))/d(x, w) for a fixed random g, (N, C, H, W) as returned."""
    xv, wv = jt.array(x.transpose(0, 2, 3, 1).copy() if channels_last else x), jt.array(w)
    y = onednn_conv.conv2d(xv, wv, None, 1, padding, channels_last=channels_last, bfloat16=False, **kwargs)
    g = np.random.RandomState(7).uniform(-1, 1, y.shape).astype(np.float32)
    values = [v.numpy() for v in (y, *jt.grad((y * jt.array(g)).sum(), [xv, wv]))]
    if channels_last:
        values[:2] = [v.transpose(0, 3, 1, 2) for v in values[:2]]
    return values, g


def torch_side(x, w, padding, g, channels_last=False):
    xt, wt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w))
    y = F.conv2d(xt, wt, padding=padding)
    gt = torch.tensor(g.transpose(0, 3, 1, 2) if channels_last else g, dtype=torch.float64)
    return [t.detach().numpy() for t in (y, *torch.autograd.grad(y, [xt, wt], gt))]


def check(name, ours, reference):
    for label, got, want in zip(("y", "dx", "dw"), ours, reference):
        assert_close(f"{name} {label}", got, want, atol=ATOL * np.abs(want).max())


@pytest.mark.parametrize("channels_last", [False, True], ids=["channels_first", "channels_last"])
@pytest.mark.parametrize("name", SHAPES)
def test_winograd_matches_pytorch_with_its_gradients_and_is_the_direct_algorithm_only_without_avx512(
        name, channels_last):
    """Where oneDNN has Winograd primitives (AVX-512) another algorithm runs and adds in another
    order; elsewhere oneDNN falls back to the direct one, bit for bit."""
    x_shape, w_shape, padding = SHAPES[name]
    x, w = arrays(x_shape, w_shape)
    ours, g = jittor_side(x, w, padding, channels_last, winograd=True)
    check(name, ours, torch_side(x, w, padding, g, channels_last))
    direct, _ = jittor_side(x, w, padding, channels_last, winograd=False)
    assert all(np.array_equal(a, b) for a, b in zip(ours, direct)) != winograd.supported()


def test_a_convolution_winograd_cannot_take_falls_back_to_the_direct_algorithm():
    """oneDNN's Winograd primitives are 3x3 only; asked for a 5x5 convolution, the direct ones run
    and give the same values."""
    x, w = arrays((2, 16, 10, 10), (16, 16, 5, 5), seed=1)
    ours, g = jittor_side(x, w, 2, winograd=True)
    check("fallback", ours, torch_side(x, w, 2, g))
    direct, _ = jittor_side(x, w, 2, winograd=False)
    assert all(np.array_equal(a, b) for a, b in zip(ours, direct))


def test_the_second_order_of_a_gradient_penalty_stays_exact():
    """d/dw |d(sum(y * g))/dx|^2, as WGAN-GP and R1 differentiate a critic twice."""
    x, w = arrays((2, 16, 10, 10), (16, 16, 3, 3), seed=2)
    g = np.random.RandomState(3).uniform(-1, 1, (2, 16, 10, 10)).astype(np.float32)
    xv, wv = jt.array(x), jt.array(w)
    (dx,) = jt.grad((onednn_conv.conv2d(xv, wv, padding=1, bfloat16=False, winograd=True) * jt.array(g)).sum(), [xv])
    ours = jt.grad((dx * dx).sum(), wv).numpy()
    xt, wt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w))
    (dxt,) = torch.autograd.grad((F.conv2d(xt, wt, padding=1) * torch.tensor(g, dtype=torch.float64)).sum(), xt,
                                 create_graph=True)
    (want,) = torch.autograd.grad((dxt * dxt).sum(), wt)
    assert_close("penalty d/dw", ours, want.numpy(), atol=ATOL * np.abs(want.numpy()).max())


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, fits", [
    ((8, 128, 8, 8), (128, 128, 3, 3), 1, 1, True),     # StyleGAN's and PGGAN's 8 px layers at batch 8
    ((1, 256, 18, 18), (256, 256, 3, 3), 1, 0, True),   # CycleGAN's residual blocks at its preset
    ((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, True),      # narrow, but 512 tiles
    ((8, 128, 8, 8), (128, 128, 4, 4), 1, 1, False),    # not 3x3
    ((8, 128, 16, 16), (128, 128, 3, 3), 2, 1, False),  # strided
    ((8, 3, 32, 32), (32, 3, 3, 3), 1, 1, False),       # an RGB input: channels not in blocks of 16
    ((8, 128, 8, 8), (24, 128, 3, 3), 1, 1, False),     # outputs not a multiple of 16
    ((32, 256, 4, 4), (256, 256, 3, 3), 1, 1, False),   # a 4x4 output is one tile
    ((2, 128, 8, 8), (128, 128, 3, 3), 1, 1, False),    # 8 tiles in all: too little work
    ((4, 64, 8, 8), (64, 64, 3, 3), 1, 1, False),       # 16 tiles of 64 channels: too little work
    ((8, 128, 8, 8), (128, 128, 3, 3), 1, 2, False),    # padding beyond one pixel
])
def test_it_takes_the_convolutions_it_runs_faster(x_shape, w_shape, stride, padding, fits):
    assert winograd.fits(x_shape, w_shape, stride, padding) == fits


@pytest.fixture
def enabled():
    winograd.enable(True)
    yield
    winograd.enable(False)


def test_enabled_it_runs_the_convolutions_that_fit(enabled, monkeypatch):
    calls = []
    original = onednn_conv.conv2d
    monkeypatch.setattr(onednn_conv, "conv2d", lambda *a, **k: calls.append(k.get("winograd")) or original(*a, **k))
    x = jt.array(np.random.RandomState(1).uniform(-1, 1, (2, 128, 16, 16)).astype(np.float32))
    jt.set_global_seed(0)
    fitting, strided, transposed = (nn.Conv2d(128, 16, 3, 1, 1), nn.Conv2d(128, 16, 3, 2, 1),
                                    nn.ConvTranspose2d(128, 16, 3))
    outputs = [fitting(x), nn.conv2d(x, fitting.weight, fitting.bias, padding=1), strided(x), transposed(x)]
    assert calls == [True, True]
    winograd.enable(False)
    expected = [fitting(x), nn.conv2d(x, fitting.weight, fitting.bias, padding=1), strided(x), transposed(x)]
    assert len(calls) == 2, "disabled, Jittor's own convolutions run"
    for got, want in zip(outputs, expected):
        assert_close("routed convolution", got.numpy(), want.numpy(), atol=ATOL * np.abs(want.numpy()).max())


def test_channels_last_nets_take_it_where_their_channels_first_form_would_while_enabled(enabled):
    """jgan.networks.dcgan.run_layers asks for (N, H, W, C) inputs: CycleGAN's residual blocks."""
    x, w = jt.zeros((1, 18, 18, 256)), jt.zeros((256, 256, 3, 3))
    assert winograd.takes_channels_last(x, w, 1, 0)
    assert not winograd.takes_channels_last(x, w, 2, 0), "strided"
    assert not winograd.takes_channels_last(jt.zeros((1, 256, 18, 18)), w, 1, 0), "read as 18 channels"
    winograd.enable(False)
    assert not winograd.takes_channels_last(x, w, 1, 0), "disabled"


@pytest.mark.parametrize("precision, wanted, available, route", [
    ("fp32", True, True, "winograd"), ("fp32", False, True, None), ("fp32", True, False, None),
    ("bf16", True, True, "bf16")])
def test_set_precision_picks_one_route(monkeypatch, precision, wanted, available, route):
    monkeypatch.setattr(onednn_conv, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(winograd, "supported", lambda: available)
    try:
        runtime.set_precision(precision, winograd=wanted)
        assert (winograd.enabled(), onednn_conv.bfloat16_enabled()) == (route == "winograd", route == "bf16")
    finally:
        runtime.set_precision("fp32")
    assert not winograd.enabled() and not onednn_conv.bfloat16_enabled()
    assert nn.conv2d not in (winograd.ROUTE.conv2d, onednn_conv.ROUTE.conv2d)


@pytest.mark.parametrize("limit, allowed", [(None, True), ("ALL", True), ("avx512_core_amx", True),
                                            ("AVX2", False), ("SSE41", False)])
def test_a_user_limit_on_onednns_instructions_turns_it_off(monkeypatch, limit, allowed):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if limit is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    monkeypatch.setattr(onednn_conv, "cpu_flags", lambda: set(winograd.AVX512_CORE))
    assert winograd.isa_allowed() == allowed
    assert winograd.supported() == (allowed and runtime.onednn_active() and not jt.flags.use_cuda)
