"""Specification of jgan.kernels and jgan.optim: the hand-written kernels against PyTorch.

The resamplers are compared on their output and on first- and second-order gradients (the WGAN-GP
and R1 penalties differentiate through them twice) of a non-linear function of the output, for
non-square inputs; FusedAdam against PyTorch's Adam with Jittor's eps placement and against
jt.optim.Adam, the update it replaces, over several steps with a learning-rate change.
"""
import jittor as jt
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from jgan import kernels
from jgan.kernels import (add_channel_bias, average_pool_2x2, binomial_blur, group_affine, group_dot,
                          group_sum, leaky_relu, multi_tensor_update, reflection_pad, upsample_nearest_2x)
from jgan.optim import FusedAdam
from parity import assert_close
from reference.optim_torch import EpsHatAdam

ATOL, RTOL = 1e-5, 1e-5


def random_array(*shape, seed=0):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def second_order(resample, x, r1, r2, grad):
    """(output, d/dx sum(resample(x)^2 r1), d/dx sum(that^2 r2)) with the framework's `grad`."""
    y = resample(x)
    first = grad((y * y * r1).sum(), x, True)
    return y, first, grad((first * first * r2).sum(), x, False)


def jittor_grad(loss, x, _):
    return jt.grad(loss, x)


def torch_grad(loss, x, create_graph):
    return torch.autograd.grad(loss, x, create_graph=create_graph)[0]


@pytest.mark.parametrize("name, jt_op, th_op, out_shape", [
    ("average_pool_2x2", average_pool_2x2, lambda x: F.avg_pool2d(x, 2), (2, 5, 3, 4)),
    ("upsample_nearest_2x", upsample_nearest_2x,
     lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), (2, 5, 12, 16)),
    # padding 5 of 6 rows: an input row shows up to three times (itself and both reflections)
    *[(f"reflection_pad {p}", lambda x, p=p: reflection_pad(x, p), lambda x, p=p: F.pad(x, (p,) * 4, mode="reflect"),
       (2, 5, 6 + 2 * p, 8 + 2 * p)) for p in (1, 3, 5)],
    *[(f"channels-last reflection_pad {p}",
       lambda x, p=p: reflection_pad(x.transpose(0, 2, 3, 1), p, channels_last=True).transpose(0, 3, 1, 2),
       lambda x, p=p: F.pad(x, (p,) * 4, mode="reflect"), (2, 5, 6 + 2 * p, 8 + 2 * p)) for p in (1, 5)],
])
def test_resamplers_match_torch_to_second_order(name, jt_op, th_op, out_shape):
    x = random_array(2, 5, 6, 8)
    r1, r2 = random_array(*out_shape, seed=1), random_array(*x.shape, seed=2)
    jt_values = second_order(jt_op, jt.array(x), jt.array(r1), jt.array(r2), jittor_grad)
    th_values = second_order(th_op, torch.tensor(x, requires_grad=True), torch.tensor(r1),
                             torch.tensor(r2), torch_grad)
    for label, jt_value, th_value in zip(("output", "gradient", "second-order gradient"),
                                         jt_values, th_values):
        assert_close(f"{name} {label}", jt_value, th_value, atol=ATOL, rtol=RTOL)


def test_reflection_pad_refuses_a_padding_as_wide_as_the_image():
    with pytest.raises(ValueError, match="H and W above 4"):
        reflection_pad(jt.zeros((1, 1, 4, 9)), 4)


def test_pooling_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even H and W"):
        average_pool_2x2(jt.zeros((1, 1, 5, 4)))


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 1, 5), (1, 2, 5, 1), (1, 1, 1, 1), (1, 1, 2, 2),
                                   (2, 64, 32, 32)])
def test_binomial_blur_matches_a_depthwise_convolution_at_every_border(shape):
    """Its separable CPU code treats the first and last rows and columns (and 1-wide maps) apart."""
    x = random_array(*shape)
    kernel = torch.tensor(np.outer([1, 2, 1], [1, 2, 1]) / 16, dtype=torch.float32)
    expected = F.conv2d(torch.tensor(x), kernel.expand(shape[1], 1, 3, 3), padding=1, groups=shape[1])
    assert_close(f"binomial blur of {shape}", binomial_blur(jt.array(x)), expected, 1e-6)


def test_channel_bias_matches_torch_to_second_order():
    x, bias = random_array(3, 5, 4, 6), random_array(5, seed=3)
    r1, r2 = random_array(*x.shape, seed=1), random_array(*x.shape, seed=2)

    def values(add, grad, x, bias, r1, r2):
        y = add(x, bias)
        loss = (y * y * y * r1).sum()
        first_x, first_bias = grad(loss, x, True), grad(loss, bias, True)
        penalty = (first_x * first_x * r2).sum() + (first_bias * first_bias).sum()
        return y, first_x, first_bias, grad(penalty, x, True), grad(penalty, bias, False)

    jt_x, jt_bias = jt.array(x), jt.array(bias)
    jt_values = values(add_channel_bias, jittor_grad, jt_x, jt_bias, jt.array(r1), jt.array(r2))
    th_values = values(lambda a, b: a + b.view(1, -1, 1, 1), torch_grad,
                       torch.tensor(x, requires_grad=True), torch.tensor(bias, requires_grad=True),
                       torch.tensor(r1), torch.tensor(r2))
    labels = ("output", "d/dx", "d/dbias", "second order d/dx", "second order d/dbias")
    for label, jt_value, th_value in zip(labels, jt_values, th_values):
        assert_close(f"channel bias {label}", jt_value, th_value, atol=1e-4, rtol=1e-5)


def laid_out(array, channels_last):
    """An (N, C, H, W) array as the kernels take it: itself, or (N, H, W, C)."""
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1)) if channels_last else array


@pytest.mark.parametrize("channels_last", [False, True], ids=["channels_first", "channels_last"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_group_kernels_match_numpy_on_a_large_tensor(per_channel, channels_last):
    a, b = random_array(16, 70, 33, 17), random_array(16, 70, 33, 17, seed=1)   # odd plane size
    axes = (0, 2, 3) if per_channel else (2, 3)
    groups = (70,) if per_channel else (16, 70)
    scale, shift = random_array(*groups, seed=2), random_array(*groups, seed=3)
    expand = (lambda v: v.reshape(1, -1, 1, 1)) if per_channel else (lambda v: v[:, :, None, None])
    ja, jb = (jt.array(laid_out(v, channels_last)) for v in (a, b))
    assert_close("group_sum", group_sum(ja, per_channel, channels_last), a.astype(np.float64).sum(axes),
                 atol=1e-4, rtol=1e-5)
    assert_close("group_dot", group_dot(ja, jb, per_channel, channels_last),
                 (a.astype(np.float64) * b).sum(axes), atol=1e-4, rtol=1e-5)
    assert_close("group_affine", group_affine(ja, jt.array(scale), jt.array(shift), per_channel,
                                              channels_last=channels_last),
                 laid_out(a * expand(scale) + expand(shift), channels_last), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True], ids=["channels_first", "channels_last"])
@pytest.mark.parametrize("per_channel, slope", [(True, 0.0), (False, 0.2)])
def test_group_affine_with_activation_matches_torch_to_second_order(per_channel, slope, channels_last):
    x = random_array(3, 4, 5, 6)
    groups = (4,) if per_channel else (3, 4)
    scale, shift = random_array(*groups, seed=3), random_array(*groups, seed=4)
    r1, r2 = random_array(*x.shape, seed=1), random_array(*x.shape, seed=2)
    expand = (lambda v: v.view(1, -1, 1, 1)) if per_channel else (lambda v: v[:, :, None, None])

    def values(affine, grad, x, scale, r1, r2):
        y = affine(x, scale)
        first = grad((y * y * y * r1).sum(), x, True)
        penalty = (first * first * r2).sum()
        return y, first, grad(penalty, x, True), grad(penalty, scale, False)

    def ours(v, s):   # y, computed channels-last where asked, is compared (N, C, H, W)
        v = v.transpose(0, 2, 3, 1) if channels_last else v
        y = group_affine(v * v, s, jt.array(shift), per_channel, slope, channels_last)
        return y.transpose(0, 3, 1, 2) if channels_last else y

    jt_values = values(ours, jittor_grad, jt.array(x), jt.array(scale), jt.array(r1), jt.array(r2))
    th_values = values(lambda v, s: F.leaky_relu(v * v * expand(s) + expand(torch.tensor(shift)), slope),
                       torch_grad, torch.tensor(x, requires_grad=True),
                       torch.tensor(scale, requires_grad=True), torch.tensor(r1), torch.tensor(r2))
    labels = ("output", "d/dx", "second order d/dx", "second order d/dscale")
    for label, jt_value, th_value in zip(labels, jt_values, th_values):
        assert_close(f"group_affine + leaky ReLU {label}", jt_value, th_value, atol=1e-4, rtol=1e-5)


def test_group_kernels_refuse_wrong_shapes():
    with pytest.raises(ValueError, match=r"takes \(3,\) per-group values"):
        group_affine(jt.zeros((2, 3, 4, 4)), jt.ones(4), None, per_channel=True)
    with pytest.raises(ValueError, match="needs a"):
        group_sum(jt.zeros((2, 3, 4)), per_channel=True)


def test_multi_tensor_update_applies_its_body_to_every_tensor():
    a = [random_array(*shape, seed=k) for k, shape in enumerate([(3,), (50000,), (2, 5, 7)])]
    b = [random_array(*x.shape, seed=9) for x in a]
    hyper = jt.array([2.0, -1.0])
    sums, products = multi_tensor_update("out0[i] = h[0] * in0[i] + h[1] * in1[i]; out1[i] = in0[i] * in1[i];",
                                         [[jt.array(x) for x in a], [jt.array(y) for y in b]], hyper, outputs=2)
    for x, y, total, product in zip(a, b, sums, products):
        assert_close("linear combination", total, 2 * x - y, atol=1e-6)
        assert_close("product", product, x * y, atol=1e-6)
    with pytest.raises(ValueError, match="same positive number of tensors"):
        multi_tensor_update("out0[i] = in0[i];", [[jt.array(a[0])], []], hyper, outputs=1)


def test_multi_tensor_update_bounds_each_op_by_the_chunk_size(monkeypatch):
    """Each kernel op's outputs are allocated while its inputs live: a large model is updated in
    ops of at most MULTI_TENSOR_CHUNK elements a role (a larger tensor alone), with the same values."""
    shapes = [(3,), (50000,), (2, 5, 7), (40000,), (9,), (120000,)]
    a = [random_array(*shape, seed=k) for k, shape in enumerate(shapes)]
    ops = []
    one_op = kernels._multi_tensor_op
    monkeypatch.setattr(kernels, "_multi_tensor_op",
                        lambda body, roles, *rest: ops.append([v.numel() for v in roles[0]]) or one_op(body, roles, *rest))
    monkeypatch.setattr(kernels, "MULTI_TENSOR_CHUNK", 60000)
    doubled, = multi_tensor_update("out0[i] = h[0] * in0[i];", [[jt.array(x) for x in a]], jt.array([2.0]), outputs=1)
    assert ops == [[3, 50000, 70], [40000, 9], [120000]]
    for x, y in zip(a, doubled):
        assert_close("chunked update", y, 2 * x, atol=1e-6)


def adam_run(make_optimizer, params, losses, step, set_lr):
    """Train `params` on one loss per step with the optimiser; lr halves after the second step."""
    optimizer = make_optimizer(params)
    for k, loss in enumerate(losses):
        if k == 2:
            set_lr(optimizer, 1e-3)
        step(optimizer, loss(params))
    return params


def test_fused_adam_matches_torch_and_jittor_adam():
    shapes = [(6, 3, 4, 4), (7,), (70000,)]     # the last is large enough to run on every thread
    initial = [random_array(*shape, seed=k) for k, shape in enumerate(shapes)]
    losses = [lambda ps, k=k: sum(((p * p * p).sum() + (p * (k + 1)).sum()) for p in ps)
              for k in range(4)]

    def jittor_step(optimizer, loss):
        optimizer.step(loss)

    def torch_step(optimizer, loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def set_jittor_lr(optimizer, lr):
        optimizer.lr = lr

    def set_torch_lr(optimizer, lr):
        optimizer.param_groups[0]["lr"] = lr

    def jittor_run(cls):
        return adam_run(lambda ps: cls(ps, 2e-3, betas=(0.5, 0.99)), [jt.array(a) for a in initial],
                        losses, jittor_step, set_jittor_lr)

    fused, stock = jittor_run(FusedAdam), jittor_run(jt.optim.Adam)
    reference = adam_run(lambda ps: EpsHatAdam(ps, 2e-3, betas=(0.5, 0.99)),
                         [torch.tensor(a, requires_grad=True) for a in initial],
                         losses, torch_step, set_torch_lr)
    for k, (a, b, c) in enumerate(zip(fused, stock, reference)):
        assert np.abs(a.numpy() - initial[k]).max() > 1e-3      # the parameters did move
        assert_close(f"parameter {k} vs jt.optim.Adam", a, b, atol=1e-6, rtol=1e-6)
        assert_close(f"parameter {k} vs torch", a, c, atol=1e-6, rtol=1e-6)


def test_leaky_relu_matches_torch_to_second_order():
    x = random_array(3, 4, 5, 6)
    x[0, 0, 0, :3] = 0                      # the kink: PyTorch takes the slope there
    r1, r2 = random_array(*x.shape, seed=1), random_array(*x.shape, seed=2)
    jt_values = second_order(lambda v: leaky_relu(v * v * v, 0.2), jt.array(x), jt.array(r1),
                             jt.array(r2), jittor_grad)
    th_values = second_order(lambda v: F.leaky_relu(v * v * v, 0.2), torch.tensor(x, requires_grad=True),
                             torch.tensor(r1), torch.tensor(r2), torch_grad)
    for label, jt_value, th_value in zip(("output", "gradient", "second-order gradient"),
                                         jt_values, th_values):
        assert_close(f"leaky_relu {label}", jt_value, th_value, atol=ATOL, rtol=RTOL)
