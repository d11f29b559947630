"""Specification of jgan.layers: every StyleGAN layer against an independent PyTorch reference.

Each layer is compared on its output and on the gradients of sum(output * r) (r fixed random)
with respect to its input and to every parameter; Blur also on a second-order gradient (the R1 and
gradient penalties differentiate through it twice). Sizes are tiny (batch 3, 8 channels, 8x8).
Tolerance: ATOL 1e-5 + RTOL 1e-5 * |reference| (float32), but see ModulatedConv2d below. Measured max abs diffs
(pytest -s prints them): outputs and input gradients <= 7e-6, most 0 to 2e-7; bias gradients
(sums of ~200 terms, |values| ~ 10-100) <= 1.1e-5; ModulatedConv2d's gradients (through the
demodulation, |values| up to ~200) up to 5e-5, so they are held to atol 1e-4.
"""
import jittor as jt
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from jgan import layers
from parity import assert_close, copy_parameters, max_abs_diff, to_numpy
from reference import stylegan_torch as ref
from reference import stylegan2_torch as ref2
from reference.stylegan_torch import randomize

ATOL, RTOL = 1e-5, 1e-5
MODULATED_GRADIENT_ATOL = 1e-4   # sums through the demodulation's squares; |values| up to ~200
BATCH, CHANNELS, SIZE = 3, 8, 8


def random_array(*shape, seed=0):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def equal_lr_name(torch_name):
    """rosinality's `conv.weight_orig` / `linear.weight_orig` / `weight_orig` -> jgan's `weight`."""
    for wrapper in ("conv.", "linear."):
        torch_name = torch_name.replace(wrapper, "")
    return torch_name.replace("weight_orig", "weight")


def compare(name, jt_value, th_value, atol=ATOL, rtol=RTOL):
    scale = float(np.abs(to_numpy(th_value)).max())
    print(f"{name}: max abs diff {max_abs_diff(jt_value, th_value):.2e} (max abs value {scale:.2e})")
    assert_close(name, jt_value, th_value, atol=atol, rtol=rtol)


def check_parity(name, jt_layer, th_layer, arrays, rename=equal_lr_name, jt_call=None, th_call=None,
                 differentiate_inputs=True, gradient_atol=ATOL):
    """Same parameters; same output and same gradients of sum(output * r) for inputs `arrays`."""
    if rename is not None:
        copy_parameters(jt_layer, th_layer, rename)
    jt_call = jt_call or jt_layer
    th_call = th_call or th_layer
    jt_inputs = [jt.array(a) for a in arrays]
    th_inputs = [torch.tensor(a, requires_grad=differentiate_inputs) for a in arrays]
    jt_out, th_out = jt_call(*jt_inputs), th_call(*th_inputs)
    compare(f"{name} output", jt_out, th_out)
    weight = random_array(*th_out.shape, seed=99)
    jt_params = jt_layer.state_dict()
    th_params = dict(th_layer.named_parameters())
    differentiated = list(range(len(arrays))) if differentiate_inputs else []
    jt_targets = [jt_inputs[i] for i in differentiated] + [jt_params[rename(n)] for n in th_params]
    th_targets = [th_inputs[i] for i in differentiated] + list(th_params.values())
    if not jt_targets:
        return
    jt_grads = jt.grad((jt_out * jt.array(weight)).sum(), jt_targets)
    th_grads = torch.autograd.grad((th_out * torch.tensor(weight)).sum(), th_targets)
    labels = [f"input {i}" for i in differentiated] + list(th_params)
    for label, jt_grad, th_grad in zip(labels, jt_grads, th_grads):
        compare(f"{name} d/d{label}", jt_grad, th_grad, atol=gradient_atol)


# ----- equalised learning rate ----------------------------------------------------------------
def test_equal_linear_matches_rosinality():
    check_parity("EqualLinear", layers.EqualLinear(12, 5), randomize(ref.EqualLinear(12, 5)),
                 [random_array(BATCH, 12)])


def test_equal_linear_stores_n01_weights_and_scales_them_in_the_forward_pass():
    jt.set_global_seed(0)
    layer = layers.EqualLinear(256, 128)
    assert sorted(layer.state_dict()) == ["bias", "weight"], "no trainable copy, no extra state"
    weight = layer.weight.numpy()
    assert abs(weight.std() - 1) < 0.02 and abs(weight.mean()) < 0.02
    assert np.all(layer.bias.numpy() == 0)
    x = random_array(4, 256)
    expected = x @ (weight * np.sqrt(2 / 256)).T
    compare("EqualLinear = x (sqrt(2/fan_in) W)^T", layer(jt.array(x)), expected)
    layer.weight.update(layer.weight * 2)
    compare("EqualLinear after an update of W", layer(jt.array(x)), 2 * expected)


def test_equal_linear_lr_mul_keeps_the_initial_function_and_slows_training():
    jt.set_global_seed(0)
    layer = layers.EqualLinear(256, 64, bias_init=0.5, lr_mul=0.01)
    effective = layer.weight.numpy() * 0.01
    assert abs(effective.std() - 1) < 0.03, "effective weight N(0, 1) as without lr_mul"
    compare("EqualLinear effective bias", layer.bias * 0.01, np.full(64, 0.5, np.float32))
    x = random_array(2, 256)
    compare("EqualLinear(lr_mul) output", layer(jt.array(x)),
            x @ (effective * np.sqrt(2 / 256)).T + 0.5)
    grad = jt.grad(layer(jt.array(x)).sum(), layer.weight).numpy()
    unscaled = layers.EqualLinear(256, 64)
    unscaled.weight.update(jt.array(effective))
    grad_unscaled = jt.grad(unscaled(jt.array(x)).sum(), unscaled.weight).numpy()
    compare("d/dW with lr_mul = lr_mul * d/dW without", grad, 0.01 * grad_unscaled, atol=1e-7)


def test_equal_linear_takes_a_bias_init_per_output():
    layer = layers.EqualLinear(4, 3, bias_init=[1.0, 2.0, 3.0])
    compare("bias", layer.bias, np.array([1, 2, 3], np.float32), atol=0)


def test_equal_conv2d_matches_rosinality():
    check_parity("EqualConv2d", layers.EqualConv2d(CHANNELS, 6, 3, padding=1),
                 randomize(ref.EqualConv2d(CHANNELS, 6, 3, padding=1)),
                 [random_array(BATCH, CHANNELS, SIZE, SIZE)])


def test_equal_conv2d_rejects_a_wrong_channel_count():
    expected = r"EqualConv2d input should have shape \(\*, 8, \*, \*\), got \(3, 4, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        layers.EqualConv2d(CHANNELS, 6, 3)(jt.zeros((BATCH, 4, SIZE, SIZE)))


# ----- normalisation, noise, constant ---------------------------------------------------------
def test_pixel_norm_matches_rosinality():
    x = random_array(BATCH, 12)
    check_parity("PixelNorm", layers.PixelNorm(), ref.PixelNorm(), [x])
    out = layers.PixelNorm()(jt.array(x)).numpy()
    compare("mean of y^2 over features", (out ** 2).mean(1), np.ones(BATCH))


def test_noise_injection_matches_rosinality():
    th = ref.NoiseInjection(CHANNELS)
    randomize(th)
    check_parity("NoiseInjection", layers.NoiseInjection(CHANNELS), th,
                 [random_array(BATCH, CHANNELS, SIZE, SIZE), random_array(BATCH, 1, SIZE, SIZE, seed=1)])


def test_noise_injection_starts_at_zero_and_checks_the_noise_shape():
    layer = layers.NoiseInjection(CHANNELS)
    x = random_array(BATCH, CHANNELS, SIZE, SIZE)
    compare("NoiseInjection at init", layer(jt.array(x), jt.ones((BATCH, 1, SIZE, SIZE))), x, atol=0)
    with pytest.raises(ValueError, match=r"noise should have shape \(3, 1, 8, 8\), got \(3, 1, 4, 4\)"):
        layer(jt.array(x), jt.ones((BATCH, 1, 4, 4)))


def test_adaptive_instance_norm_matches_rosinality():
    th = ref.AdaptiveInstanceNorm(CHANNELS, 12)
    randomize(th)
    x = 3 * random_array(BATCH, CHANNELS, SIZE, SIZE) + 1
    check_parity("AdaptiveInstanceNorm", layers.AdaptiveInstanceNorm(CHANNELS, 12), th,
                 [x, random_array(BATCH, 12, seed=1)])


def test_adaptive_instance_norm_has_no_affine_norm_and_starts_as_instance_norm():
    layer = layers.AdaptiveInstanceNorm(CHANNELS, 12)
    assert sorted(layer.state_dict()) == ["style.bias", "style.weight"]
    layer.style.weight.update(jt.zeros_like(layer.style.weight))
    x = 3 * random_array(BATCH, CHANNELS, SIZE, SIZE) + 1
    expected = F.instance_norm(torch.tensor(x))
    compare("AdaIN with gamma = 1, beta = 0", layer(jt.array(x), jt.array(random_array(BATCH, 12))),
            expected)


def test_adaptive_instance_norm_style_gain_scales_how_far_styles_spread_gamma_and_beta():
    x = 3 * random_array(BATCH, CHANNELS, SIZE, SIZE) + 1
    w = jt.array(random_array(BATCH, 12, seed=1))
    jt.set_global_seed(0)
    he = layers.AdaptiveInstanceNorm(CHANNELS, 12).style.weight.numpy()
    jt.set_global_seed(0)
    tenth = layers.AdaptiveInstanceNorm(CHANNELS, 12, style_gain=0.1).style.weight.numpy()
    compare("initial style weight at gain 0.1", jt.array(tenth), 0.1 * he, atol=1e-7)
    plain = layers.AdaptiveInstanceNorm(CHANNELS, 12, style_gain=0)
    compare("AdaIN at gain 0 is the plain instance norm for every style", plain(jt.array(x), w),
            F.instance_norm(torch.tensor(x)))
    out = plain(jt.array(x), w)
    grad = jt.grad(out.sqr().sum() + (out * jt.array(x)).sum(), plain.style.weight).numpy()
    assert np.abs(grad).max() > 1e-3, "a zero style weight still learns"


def modulated_conv(upsample, style_gain=1.0, out_channels=6):
    conv = (layers.UpsampleConv2d(CHANNELS, out_channels) if upsample
            else layers.EqualConv2d(CHANNELS, out_channels, 3, padding=1))
    return layers.ModulatedConv2d(conv, 12, style_gain)


@pytest.mark.parametrize("upsample", [False, True], ids=["conv", "upsample"])
def test_modulated_conv_matches_stylegan2s_per_sample_weights(upsample):
    th = ref2.ModulatedConv2d(CHANNELS, 6, 12, upsample=upsample)
    randomize(th)
    x = 3 * random_array(BATCH, CHANNELS, SIZE, SIZE) + 1
    layer = modulated_conv(upsample)
    check_parity("ModulatedConv2d (+ its conv's bias, which the block adds)", layer, th,
                 [x, random_array(BATCH, 12, seed=1)], rename=lambda name: name,
                 jt_call=lambda x, w: layer(x, w) + layer.conv.bias.reshape(1, -1, 1, 1),
                 th_call=lambda x, w: th(x, w) + th.conv.bias[None, :, None, None],
                 gradient_atol=MODULATED_GRADIENT_ATOL)


def test_modulated_conv_output_does_not_depend_on_the_scale_of_the_style_or_the_weights():
    layer = modulated_conv(upsample=False)
    x, w = jt.array(random_array(BATCH, CHANNELS, SIZE, SIZE)), jt.array(random_array(BATCH, 12, seed=1))
    before = layer(x, w).numpy()
    for parameter in (layer.style.weight, layer.style.bias, layer.conv.weight):
        parameter.update(parameter * 5)
    compare("output after the style and the weights are scaled by 5", layer(x, w), before)


def test_modulated_conv_gives_unit_variance_inputs_from_a_leaky_relu_unit_variance_outputs():
    layer = layers.ModulatedConv2d(layers.EqualConv2d(64, 16, 3, padding=1), 12)
    x = jt.array(random_array(4, 64, 32, 32) / np.sqrt(2))   # the second moment a ReLU leaves
    out = layer(x, jt.array(3 * random_array(4, 12, seed=1))).numpy()[:, :, 1:-1, 1:-1]
    assert np.allclose(out.std(axis=(2, 3)), 1, atol=0.1), out.std(axis=(2, 3))


def test_modulated_conv_at_style_gain_0_is_one_normalised_conv_for_every_style():
    layer = modulated_conv(upsample=False, style_gain=0)
    x = random_array(BATCH, CHANNELS, SIZE, SIZE)
    weight = layer.conv.weight.numpy() * layer.conv.scale
    weight /= np.sqrt((weight ** 2).sum(axis=(1, 2, 3), keepdims=True))
    expected = F.conv2d(np.sqrt(2) * torch.tensor(x), torch.tensor(weight), padding=1)
    compare("ModulatedConv2d at gain 0", layer(jt.array(x), jt.array(random_array(BATCH, 12, seed=1))),
            expected)


def test_constant_input_matches_rosinality():
    jt_layer = layers.ConstantInput(CHANNELS)
    check_parity("ConstantInput", jt_layer, ref.ConstantInput(CHANNELS), [random_array(BATCH, 1)],
                 jt_call=lambda x: jt_layer(x.shape[0]), differentiate_inputs=False)


# ----- blur (the resamplers are specified in tests/test_kernels.py) -------------------------
def test_blur_matches_rosinality_to_second_order():
    x = random_array(BATCH, CHANNELS, SIZE, SIZE)
    check_parity("Blur", layers.Blur(), ref.Blur(CHANNELS), [x], rename=None)
    r1, r2 = random_array(*x.shape, seed=1), random_array(*x.shape, seed=2)
    jt_x = jt.array(x)
    jt_g = jt.grad((layers.Blur()(jt_x).sqr() * jt.array(r1)).sum(), jt_x)
    jt_h = jt.grad((jt_g.sqr() * jt.array(r2)).sum(), jt_x)
    th_x = torch.tensor(x, requires_grad=True)
    th_g, = torch.autograd.grad((ref.Blur(CHANNELS)(th_x) ** 2 * torch.tensor(r1)).sum(), th_x,
                                create_graph=True)
    th_h, = torch.autograd.grad((th_g ** 2 * torch.tensor(r2)).sum(), th_x)
    compare("Blur first-order gradient", jt_g, th_g)
    compare("Blur second-order gradient", jt_h, th_h)


def test_blur_kernel_is_constant_and_not_state():
    blur = layers.Blur()
    assert blur.state_dict() == {} and blur.parameters() == []
    impulse = np.zeros((1, 1, 5, 5), np.float32)
    impulse[0, 0, 2, 2] = 1
    kernel = np.outer([1, 2, 1], [1, 2, 1]) / 16
    compare("Blur of an impulse", blur(jt.array(impulse))[0, 0, 1:4, 1:4], kernel, atol=0)


def test_upsample_conv2d_matches_rosinality():
    th = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"),
                             ref.EqualConv2d(CHANNELS, 6, 3, padding=1))
    randomize(th)
    check_parity("UpsampleConv2d", layers.UpsampleConv2d(CHANNELS, 6, 3, padding=1), th,
                 [random_array(BATCH, CHANNELS, 4, 4)], rename=lambda n: equal_lr_name(n[2:]))


def test_conv_downsample2d_matches_rosinality():
    th = torch.nn.Sequential(ref.EqualConv2d(CHANNELS, 6, 3, padding=1), torch.nn.AvgPool2d(2))
    randomize(th)
    check_parity("ConvDownsample2d", layers.ConvDownsample2d(CHANNELS, 6, 3, padding=1), th,
                 [random_array(BATCH, CHANNELS, SIZE, SIZE)], rename=lambda n: equal_lr_name(n[2:]))


def test_fused_upsample_matches_rosinality():
    th = ref.FusedUpsample(CHANNELS, 6, 3, padding=1)
    randomize(th)
    check_parity("FusedUpsample", layers.FusedUpsample(CHANNELS, 6, 3, padding=1), th,
                 [random_array(BATCH, CHANNELS, 4, 4)])


def test_fused_downsample_matches_rosinality():
    th = ref.FusedDownsample(CHANNELS, 6, 3, padding=1)
    randomize(th)
    check_parity("FusedDownsample", layers.FusedDownsample(CHANNELS, 6, 3, padding=1), th,
                 [random_array(BATCH, CHANNELS, SIZE, SIZE)])


def test_fused_upsample_is_a_quarter_of_upsample_then_conv():
    """rosinality averages the four shifted kernels where NVIDIA sums them: in the interior the
    fused transposed conv is (nearest upsampling + 3x3 conv) / 4. Kept for rosinality's weights."""
    fused = layers.FusedUpsample(CHANNELS, 6, 3, padding=1)
    plain = layers.UpsampleConv2d(CHANNELS, 6, 3, padding=1)
    plain.weight.update(fused.weight.transpose((1, 0, 2, 3)).flip([2, 3]))
    x = jt.array(random_array(BATCH, CHANNELS, 4, 4))
    compare("4 FusedUpsample vs UpsampleConv2d (interior)", 4 * fused(x)[:, :, 1:-1, 1:-1],
            plain(x)[:, :, 1:-1, 1:-1])


def test_fused_downsample_equals_conv_then_average_pooling():
    fused = layers.FusedDownsample(CHANNELS, 6, 3, padding=1)
    plain = layers.ConvDownsample2d(CHANNELS, 6, 3, padding=1)
    plain.weight.update(fused.weight)
    x = jt.array(random_array(BATCH, CHANNELS, SIZE, SIZE))
    compare("FusedDownsample vs ConvDownsample2d", fused(x), plain(x))


# ----- RGB and minibatch statistics -----------------------------------------------------------
@pytest.mark.parametrize("activate", [False, True])
def test_from_rgb_matches_rosinality(activate):
    th = randomize(ref.EqualConv2d(3, CHANNELS, 1))
    if activate:
        th = torch.nn.Sequential(th, torch.nn.LeakyReLU(0.2))
    check_parity(f"FromRGB(activate={activate})", layers.FromRGB(CHANNELS, activate=activate), th,
                 [random_array(BATCH, 3, SIZE, SIZE)],
                 rename=lambda n: equal_lr_name(n[2:] if activate else n))


def test_to_rgb_matches_rosinality():
    check_parity("ToRGB", layers.ToRGB(CHANNELS), randomize(ref.EqualConv2d(CHANNELS, 3, 1)),
                 [random_array(BATCH, CHANNELS, SIZE, SIZE)])


def rosinality_stddev(x):
    std = torch.sqrt(x.var(0, unbiased=False) + 1e-8).mean()
    return torch.cat([x, std.expand(x.shape[0], 1, x.shape[2], x.shape[3])], 1)


def test_minibatch_stddev_over_the_whole_batch_matches_rosinality():
    x = random_array(4, CHANNELS, 4, 4)
    check_parity("MinibatchStddev(group=None)", layers.MinibatchStddev(), torch.nn.Identity(), [x],
                 th_call=rosinality_stddev)


def test_minibatch_stddev_in_groups_matches_nvidia():
    x = random_array(6, CHANNELS, 4, 4)
    check_parity("MinibatchStddev(group=2)", layers.MinibatchStddev(group_size=2), torch.nn.Identity(),
                 [x], th_call=lambda t: ref.minibatch_stddev(t, 2))
    with pytest.raises(ValueError, match="divisible by the group size 4, got a batch of 6"):
        layers.MinibatchStddev(group_size=4)(jt.array(x))


@pytest.mark.parametrize("layer", [layers.UpsampleConv2d, layers.ConvDownsample2d])
def test_resampling_convs_refuse_shapes_their_single_strided_conv_does_not_equal(layer):
    """They run as one 4x4 stride-2 (transposed) conv, which equals the pair only for 3x3, padding 1."""
    with pytest.raises(ValueError, match="takes a 3x3 kernel with padding 1, got 5x5 with padding 2"):
        layer(CHANNELS, 6, 5, padding=2)
