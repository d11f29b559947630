"""4x4 stride-2 convolutions and their transposes by Winograd's F(4x4, 2x2) (jgan.strided_winograd)
against PyTorch in float64: values, both gradients and a gradient penalty's second order; which
convolutions the DCGAN family's nets give it; its place in `runtime.set_precision`."""
import os

import jittor as jt
import numpy as np
import pytest
import torch
from jittor import nn
from torch.nn import functional as F

from jgan import runtime, strided_winograd
from jgan.networks import dcgan
from parity import assert_close

ATOL = 2e-5   # relative to the largest value: float32 sums through the tile transforms
NETWORK_ATOL = 1e-4   # through a whole net, whose batch norms' differences of means amplify rounding
# and for a whole net's weight gradients: a change of rounding size flips the few ReLUs whose inputs lie
# that close to zero, each moving a gradient by up to about a percent of its largest entry; a wrong
# transform moves it by about its whole size
NETWORK_GRADIENT_ATOL = 3e-2

SHAPES = {   # (N, C, H, W) input of the convolution, (O, C, 4, 4) weights
    "dcgan": ((2, 32, 16, 16), (48, 32, 4, 4)),
    "odd": ((3, 17, 12, 12), (20, 17, 4, 4)),      # channels not in blocks of 16; a 6x6 output: tiles overhang
    "wide": ((1, 40, 8, 8), (24, 40, 4, 4)),       # one tile, many rows of W: the transposed layout of W
    "uneven": ((2, 16, 10, 14), (16, 16, 4, 4)),   # not square
}


def arrays(*shapes, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes]


def float64(*values):
    return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]


def channels_last(a):
    return jt.array(np.ascontiguousarray(a.transpose(0, 2, 3, 1)))


def channels_first(v):
    return v.numpy().transpose(0, 3, 1, 2)


def check(name, ours, reference):
    for label, got, want in zip(("y", "d/d input", "dw"), ours, reference):
        assert_close(f"{name} {label}", got, want, atol=ATOL * np.abs(want).max())


def jittor_side(function, x, w, g):
    xv, wv = channels_last(x), jt.array(w)
    y = function(xv, wv)
    gx, gw = jt.grad((y * channels_last(g)).sum(), [xv, wv])
    return [channels_first(y), channels_first(gx), gw.numpy()]


def torch_side(function, x, w, g):
    xt, wt = float64(x, w)
    y = function(xt, wt)
    return [t.detach().numpy() for t in (y, *torch.autograd.grad(y, [xt, wt], torch.tensor(g, dtype=torch.float64)))]


@pytest.mark.parametrize("name", SHAPES)
def test_the_convolution_matches_pytorch_with_its_gradients(name):
    x_shape, w_shape = SHAPES[name]
    x, w = arrays(x_shape, w_shape)
    y_shape = (x_shape[0], w_shape[0], x_shape[2] // 2, x_shape[3] // 2)
    (g,) = arrays(y_shape, seed=1)
    check(name, jittor_side(strided_winograd.conv2d, x, w, g),
          torch_side(lambda a, b: F.conv2d(a, b, stride=2, padding=1), x, w, g))


@pytest.mark.parametrize("name", SHAPES)
def test_the_transposed_convolution_matches_pytorch_with_its_gradients(name):
    """The generator's layer: (C, O, 4, 4) weights take C channels to O at twice the size."""
    x_shape, w_shape = SHAPES[name]
    n, _, h, width = x_shape
    x, w = arrays((n, w_shape[0], h // 2, width // 2), w_shape)
    (g,) = arrays((n, w_shape[1], h, width), seed=1)
    check(name, jittor_side(strided_winograd.conv_transpose2d, x, w, g),
          torch_side(lambda a, b: F.conv_transpose2d(a, b, stride=2, padding=1), x, w, g))


def test_a_gradient_penalty_through_two_layers_matches_pytorch_to_the_second_order():
    """d/d(w1, w2) |d critic(x) / dx|^2 for critic = conv(leaky(conv^T(conv(x, w1), w2)), w3): as WGAN-GP
    differentiates a critic twice, through both kinds of layer and a non-linearity between them."""
    x, w1, w2, w3 = arrays((2, 16, 16, 16), (32, 16, 4, 4), (32, 16, 4, 4), (24, 16, 4, 4), seed=3)

    def jittor_penalty():
        xv, w1v, w2v, w3v = channels_last(x), jt.array(w1), jt.array(w2), jt.array(w3)
        h = strided_winograd.conv_transpose2d(strided_winograd.conv2d(xv, w1v), w2v)
        score = strided_winograd.conv2d(jt.maximum(h, 0.2 * h), w3v).sqr().sum()
        (dx,) = jt.grad(score, [xv])
        return [v.numpy() for v in jt.grad((dx * dx).sum(), [w1v, w2v, w3v])]

    xt, w1t, w2t, w3t = float64(x, w1, w2, w3)
    h = F.conv_transpose2d(F.conv2d(xt, w1t, stride=2, padding=1), w2t, stride=2, padding=1)
    score = F.conv2d(F.leaky_relu(h, 0.2), w3t, stride=2, padding=1).square().sum()
    (dxt,) = torch.autograd.grad(score, xt, create_graph=True)
    wanted = torch.autograd.grad((dxt * dxt).sum(), [w1t, w2t, w3t])
    for label, got, want in zip(("w1", "w2", "w3"), jittor_penalty(), wanted):
        assert_close(f"penalty d/d{label}", got, want.numpy(), atol=ATOL * np.abs(want.numpy()).max())


@pytest.mark.parametrize("x_shape, weight_shape, stride, padding, output_padding, transposed, taken", [
    ((64, 8, 8, 32), (64, 32, 4, 4), 2, 1, 0, False, True),     # the DCGAN family's layers at batch 64
    ((64, 4, 4, 64), (64, 32, 4, 4), 2, 1, 0, True, True),
    ((16, 16, 16, 16), (16, 16, 4, 4), 2, 1, 0, False, True),   # 16 channels, 64 tiles
    ((64, 8, 8, 3), (64, 3, 4, 4), 2, 1, 0, False, False),      # an RGB side: the transforms cost more
    ((64, 4, 4, 64), (64, 3, 4, 4), 2, 1, 0, True, False),
    ((8, 16, 16, 32), (64, 32, 4, 4), 2, 1, 0, False, False),   # 32 tiles: the weights' transforms cost more
    ((8, 8, 8, 64), (64, 32, 4, 4), 2, 1, 0, True, False),
    ((64, 8, 8, 32), (64, 32, 3, 3), 2, 1, 0, False, False),    # not 4x4
    ((64, 8, 8, 32), (64, 32, 4, 4), 1, 1, 0, False, False),    # not stride 2
    ((64, 8, 8, 32), (64, 32, 4, 4), 2, 0, 0, False, False),    # not padding 1 (the generator's first layer)
    ((64, 4, 4, 64), (64, 32, 4, 4), 2, 1, 1, True, False),     # an output padding
])
def test_it_takes_the_dcgan_familys_strided_layers_with_work_enough(x_shape, weight_shape, stride, padding,
                                                                    output_padding, transposed, taken):
    x, w = jt.zeros(x_shape), jt.zeros(weight_shape)
    strided_winograd.enable(True)
    assert strided_winograd.takes(x, w, stride, padding, output_padding, transposed) == taken
    assert not strided_winograd.takes(x.float64(), w, stride, padding, output_padding, transposed)
    strided_winograd.enable(False)
    assert not strided_winograd.takes(x, w, stride, padding, output_padding, transposed)


@pytest.mark.parametrize("x_shape, transposed, count", [
    ((2, 16, 16, 8), False, 8), ((2, 8, 8, 8), True, 8), ((1, 18, 10, 8), False, 6), ((1, 9, 9, 8), False, 1),
    ((3, 5, 6, 8), True, 12)])
def test_it_counts_the_output_tiles(x_shape, transposed, count):
    assert strided_winograd.tiles(x_shape, transposed) == count


@pytest.mark.parametrize("precision, wanted, available, on", [
    ("fp32", True, True, True), ("fp32", False, True, False), ("fp32", True, False, False),
    ("bf16", True, True, False)])
def test_set_precision_turns_it_on_for_float32_winograd_only(monkeypatch, precision, wanted, available, on):
    monkeypatch.setattr(strided_winograd, "supported", lambda: available)
    monkeypatch.setattr(runtime, "onednn_active", lambda: True)
    from jgan import onednn_conv
    monkeypatch.setattr(onednn_conv, "check_supported", lambda: None)
    runtime.set_precision(precision, winograd=wanted)
    assert strided_winograd.enabled() == on
    runtime.set_precision("fp32")
    assert not strided_winograd.enabled()


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_the_dcgan_nets_run_their_inner_layers_through_it_and_keep_their_values(monkeypatch, upsample):
    """Generator and critic at 32 px, batch 64 (WGANP's resize-convolutions are transposed
    convolutions too): every layer between two of at least 16 channels goes through it, the same
    images and scores within the tile transforms' rounding."""
    if not dcgan.channels_last():
        assert not os.environ.get("CI"), "CI runs on the CPU with oneDNN, where the nets run channels-last"
        pytest.skip("the nets run channels-last on the CPU with oneDNN only")
    jt.set_global_seed(0)
    generator, critic = dcgan.build_networks(size=32, nz=16, ngf=16, ndf=16, upsample=upsample,
                                             critic_norm="instance")
    z = jt.array(np.random.RandomState(0).randn(64, 16).astype(np.float32))   # 64 tiles at 4 -> 8 px

    def run():
        images = generator(z)
        scores = critic(images)
        return [v.numpy() for v in (images, scores, *jt.grad(scores.sum(), [generator.parameters()[0],
                                                                          critic.parameters()[0]]))]

    direct = run()
    calls = []
    for name in ("conv2d", "conv_transpose2d"):
        original = getattr(strided_winograd, name)
        monkeypatch.setattr(strided_winograd, name, lambda *a, original=original, name=name, **k:
                            calls.append(name) or original(*a, **k))
    strided_winograd.enable(True)
    ours = run()
    assert sorted(set(calls)) == ["conv2d", "conv_transpose2d"]
    assert len(calls) == 4   # 32 px: two inner layers a side (16 <-> 32 channels, 4 <-> 8 <-> 16 px)
    tolerances = (NETWORK_ATOL, NETWORK_ATOL, NETWORK_GRADIENT_ATOL, NETWORK_GRADIENT_ATOL)
    for label, tolerance, got, want in zip(("images", "scores", "dG/dw", "dD/dw"), tolerances, ours, direct):
        assert_close(label, got, want, atol=tolerance * np.abs(want).max())
