"""The layers of StyleGAN v1 (Karras et al. 2019), one small class each, named as the paper names them.

Equalised learning rate (Karras et al. 2018): a weight is stored as N(0, 1) and multiplied by
its He constant c = sqrt(2 / fan_in) in every forward pass, so that Adam moves every layer at the
same speed. `lr_mul` slows a layer down further (the mapping network uses 0.01): the weight is
stored as N(0, 1/lr_mul^2) and multiplied by c * lr_mul, so its initial value is unchanged and one
Adam step moves it lr_mul times as far.
"""
import functools
import math

import numpy as np
import jittor as jt
from jittor import nn

from jgan import kernels
from jgan.kernels import add_channel_bias, binomial_blur
from jgan.batching import split_parts
from jgan.norms import moments, normalize

LRELU_SLOPE = 0.2
INSTANCE_NORM_EPS = 1e-5
DEMODULATION_EPS = 1e-8
ACTIVATION_GAIN = math.sqrt(2)


def check_shape(name, x, expected):
    """Raise ValueError unless x.shape matches `expected` (None, shown as *, matches any size)."""
    got = tuple(x.shape)
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        shown = ", ".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{name} should have shape ({shown}), got {got}.")


def he_constant(fan_in):
    """c = sqrt(2 / fan_in), the scale of He initialisation applied at run time."""
    return math.sqrt(2.0 / fan_in)


def leaky_relu(x):
    """y = max(x, 0.2 x)."""
    return kernels.leaky_relu(x, LRELU_SLOPE)


def lerp(a, b, t):
    """(1 - t) a + t b, the progressive-growing fade-in; t is a float or a jt.Var."""
    return (1 - t) * a + t * b


class EqualLinear(nn.Module):
    """y = x (c lr_mul W)^T + lr_mul b, c = sqrt(2 / in_dim): a fully connected layer with equalised lr."""

    def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, weight_gain=1.0):
        """`bias_init` is a number or a sequence of out_dim numbers (the effective initial bias);
        `weight_gain` scales the initial weight (1: He initialisation)."""
        self.in_dim = in_dim
        self.lr_mul = lr_mul
        self.scale = he_constant(in_dim) * lr_mul
        self.weight = jt.array(np.random.randn(out_dim, in_dim).astype(np.float32) * weight_gain / lr_mul)
        bias = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), (out_dim,))
        self.bias = jt.array(bias / np.float32(lr_mul))

    def execute(self, x):
        check_shape("EqualLinear input", x, (None, self.in_dim))
        return nn.matmul_transpose(x, self.weight) * self.scale + self.bias * self.lr_mul


class EqualConv2d(nn.Module):
    """y = conv2d(x, c W) + b, c = sqrt(2 / (in_channels k^2)): a convolution with equalised lr."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0):
        self.in_channels = in_channels
        self.padding = padding
        self.scale = he_constant(in_channels * kernel_size * kernel_size)
        self.weight = jt.array(np.random.randn(out_channels, in_channels, kernel_size,
                                               kernel_size).astype(np.float32))
        self.bias = jt.zeros(out_channels)

    def execute(self, x, slope=None):
        """With a `slope`, a leaky ReLU of that slope follows in the same pass as the bias."""
        return add_channel_bias(self.convolve(x), self.bias, slope)

    def convolve(self, x):
        """conv2d(x, c W), without the bias."""
        check_shape(f"{type(self).__name__} input", x, (None, self.in_channels, None, None))
        return nn.conv2d(x, self.weight * self.scale, padding=self.padding)


# Row p: which of a 3x3 kernel's rows (or columns) sum into row (or column) p of subpixel_kernel's 4x4.
SUBPIXEL_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))


@functools.lru_cache(maxsize=None)
def _tap_matrix(kind, size, scale, dtype):
    """The constant (size^2, (size+1)^2) matrix M of a kernel transform: flat(out) = flat(W) M."""
    if kind == "subpixel":
        taps = np.asarray(SUBPIXEL_TAPS, dtype=np.float64).T          # (3, 4): [row of W, row of out]
    else:                                                            # "fused": box average of the padded W
        taps = np.zeros((size, size + 1))
        for r in range(size):
            taps[r, r:r + 2] = 0.5
    return jt.array((np.kron(taps, taps) * scale).astype(np.float32)).cast(dtype).stop_grad()


def _transform_kernel(kind, weight, scale):
    """flat(W) M for every (out, in) plane of W: one matrix product, so its gradient is one too."""
    out_channels, in_channels, size, _ = weight.shape
    matrix = _tap_matrix(kind, size, float(scale), str(weight.dtype))
    flat = jt.matmul(weight.reshape(out_channels * in_channels, size * size), matrix)
    return flat.reshape(out_channels, in_channels, size + 1, size + 1)


def subpixel_kernel(weight, scale=1.0):
    """The (in, out, 4, 4) kernel of the stride-2, padding-1 transposed convolution that equals
    nearest x2 upsampling followed by the padding-1 convolution `scale * weight` (out, in, 3, 3).

    Each output pixel of the upsampled map sees a 2x2 window of the input, whose 4 taps are sums
    of the 9 (which sums depends on the pixel's row and column parity), so the pair costs 4 taps
    a pixel instead of 9 and never builds the upsampled input."""
    return _transform_kernel("subpixel", weight, scale).permute(1, 0, 2, 3)


class ResamplingConv2d(EqualConv2d):
    """An EqualConv2d of 3x3 with padding 1 that resamples by 2 (the only shape its fused forms take)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=1):
        if (kernel_size, padding) != (3, 1):
            raise ValueError(f"{type(self).__name__} takes a 3x3 kernel with padding 1, "
                             f"got {kernel_size}x{kernel_size} with padding {padding}")
        super().__init__(in_channels, out_channels, kernel_size, padding)

    def check_input(self, x):
        check_shape(f"{type(self).__name__} input", x, (None, self.in_channels, None, None))


class UpsampleConv2d(ResamplingConv2d):
    """y = conv2d(upsample_nearest_2x(x), c W) + b: nearest x2 upsampling followed by an EqualConv2d,
    run as one transposed convolution of x (subpixel_kernel)."""

    def execute(self, x, slope=None):
        return add_channel_bias(self.convolve(x), self.bias, slope)

    def convolve(self, x):
        """conv2d(upsample_nearest_2x(x), c W), without the bias."""
        self.check_input(x)
        return nn.conv_transpose2d(x, subpixel_kernel(self.weight, self.scale), stride=2, padding=1)


class ConvDownsample2d(ResamplingConv2d):
    """y = avg_pool_2x2(conv2d(x, c W) + b): an EqualConv2d followed by 2x2 average pooling, run as
    one stride-2 convolution with the 4x4 kernel fused_kernel(c W) (4 taps an input pixel, not 9).

    The bias is added after the pooling (the same value: it is constant over each channel), in
    the pass of the optional leaky ReLU."""

    def execute(self, x, slope=None):
        self.check_input(x)
        y = nn.conv2d(x, fused_kernel(self.weight, self.scale), stride=2, padding=1)
        return add_channel_bias(y, self.bias, slope)


def fused_kernel(weight, scale=1.0):
    """The k x k kernel `scale * weight` padded to k+2 and box-averaged to k+1:
    (W00 + W01 + W10 + W11) / 4.

    A stride-2 convolution with this kernel equals a k x k convolution followed by 2x2 average
    pooling; a stride-2 transposed convolution with it, nearest upsampling followed by a k x k
    convolution, divided by 4.
    """
    return _transform_kernel("fused", weight, scale)


class FusedResample(nn.Module):
    """The parameters of a fused resampling conv: weight ~ N(0, 1) scaled by c = sqrt(2 / fan_in)."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0, transposed=False):
        self.in_channels = in_channels
        self.padding = padding
        self.scale = he_constant(in_channels * kernel_size * kernel_size)
        channels = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        self.weight = jt.array(np.random.randn(*channels, kernel_size, kernel_size).astype(np.float32))
        self.bias = jt.zeros(out_channels)

    def kernel(self, x):
        check_shape(f"{type(self).__name__} input", x, (None, self.in_channels, None, None))
        return fused_kernel(self.weight, self.scale)


class FusedUpsample(FusedResample):
    """y = conv_transpose2d(x, fused_kernel(c W), stride 2) + b: upsampling and conv in one op.

    Away from the border this is (nearest x2 upsampling + conv) / 4: rosinality averages the four
    shifted kernels where NVIDIA sums them. We keep rosinality's factor so that its weights load.
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding=0):
        super().__init__(in_channels, out_channels, kernel_size, padding, transposed=True)

    def execute(self, x, slope=None):
        return add_channel_bias(nn.conv_transpose2d(x, self.kernel(x), stride=2, padding=self.padding),
                                self.bias, slope)


class FusedDownsample(FusedResample):
    """y = conv2d(x, fused_kernel(c W), stride 2) + b: conv and 2x2 average pooling in one op."""

    def execute(self, x, slope=None):
        return add_channel_bias(nn.conv2d(x, self.kernel(x), stride=2, padding=self.padding), self.bias,
                                slope)


class PixelNorm(nn.Module):
    """y = x / sqrt(mean_c(x^2) + 1e-8): every feature vector normalised to unit length."""

    def execute(self, x):
        return x / jt.sqrt(x.sqr().mean(dim=1, keepdims=True) + 1e-8)


class Blur(nn.Module):
    """y = x * k per channel, k = [1 2 1]^T [1 2 1] / 16, zero padding 1: a binomial low-pass filter.

    A depthwise convolution with a constant symmetric kernel (jgan.kernels.binomial_blur), so its
    gradient of any order is the same filter. The kernel is not a parameter and not state.
    """

    def execute(self, x):
        return binomial_blur(x)


class NoiseInjection(nn.Module):
    """y = x + c w noise, c = sqrt(2 / channels): per-channel scaled noise, w initialised to 0.

    As in rosinality's implementation the learned per-channel weight has an equalised lr.
    `noise` is (B, 1, H, W), the same map for every channel.
    """

    def __init__(self, channels):
        self.channels = channels
        self.scale = he_constant(channels)
        self.weight = jt.zeros((1, channels, 1, 1))

    def execute(self, x, noise):
        batch, _, height, width = x.shape
        check_shape("noise", noise, (batch, 1, height, width))
        return x + self.weight * self.scale * noise


class AdaptiveInstanceNorm(nn.Module):
    """AdaIN(x, w) = gamma(w) * instance_norm(x) + beta(w), (gamma, beta) = EqualLinear(w).

    instance_norm(x) = (x - mean_hw(x)) / sqrt(var_hw(x) + 1e-5), the biased variance of each map.

    The instance norm has no affine parameters of its own; the style layer's bias starts at
    gamma = 1, beta = 0 so that AdaIN starts as a plain instance norm on average over styles.
    `style_gain` scales the style layer's initial weights: how far gamma and beta spread over
    styles at the start (1: rosinality's He initialisation; 0: the same plain norm for every style).
    """

    def __init__(self, channels, style_dim, style_gain=1.0):
        self.channels = channels
        self.style = EqualLinear(style_dim, 2 * channels, weight_gain=style_gain,
                                 bias_init=np.concatenate([np.ones(channels), np.zeros(channels)]))

    def execute(self, x, w):
        check_shape("AdaIN input", x, (None, self.channels, None, None))
        style = self.style(w)
        gamma, beta = style[:, :self.channels], style[:, self.channels:]
        mean, mean_square = moments(x, per_channel=False)
        return normalize(x, False, mean, mean_square, gamma, beta, INSTANCE_NORM_EPS)[0]


class ModulatedConv2d(nn.Module):
    """y = d * conv(sqrt(2) x * s), s = EqualLinear(w): StyleGAN2's modulated, demodulated
    convolution (Karras et al. 2020), without the bias, which the caller adds after the noise.

    Each input map is scaled by its style s_i (the style layer's bias starts at 1) and each output
    map o by d_o = 1 / sqrt(sum_{i,k} (c W_oik s_i)^2 + 1e-8), the norm that gives unit-variance
    inputs unit-variance outputs: AdaIN's instance norm replaced by a scale that depends on the
    weights and the style alone, not on the image. The inputs come from a leaky ReLU, which about
    halves their second moment; sqrt(2) restores it (StyleGAN2's activation gain), or the signal
    would shrink with every layer. `conv` is an EqualConv2d or an UpsampleConv2d; `style_gain`
    scales the style layer's initial weights as in AdaptiveInstanceNorm.
    """

    def __init__(self, conv, style_dim, style_gain=1.0):
        self.conv = conv
        self.style = EqualLinear(style_dim, conv.in_channels, bias_init=1.0, weight_gain=style_gain)

    def execute(self, x, w):
        style = self.style(w)
        batch, channels = style.shape
        y = self.conv.convolve(x * (style * ACTIVATION_GAIN).reshape(batch, channels, 1, 1))
        weight_power = (self.conv.weight * self.conv.scale).sqr().sum(dims=(2, 3))   # (out, in)
        demodulation = (nn.matmul_transpose(style.sqr(), weight_power) + DEMODULATION_EPS).rsqrt()
        return y * demodulation.reshape(batch, -1, 1, 1)


class ConstantInput(nn.Module):
    """y = the learned constant C (1, channels, size, size), repeated over the batch; C ~ N(0, 1)."""

    def __init__(self, channels, size=4):
        self.input = jt.array(np.random.randn(1, channels, size, size).astype(np.float32))

    def execute(self, batch):
        _, channels, height, width = self.input.shape
        return self.input.broadcast((batch, channels, height, width))


class ToRGB(EqualConv2d):
    """image = conv1x1(x, c W) + b: features to image channels at one resolution."""

    def __init__(self, in_channels, image_channels=3):
        super().__init__(in_channels, image_channels, 1)


class FromRGB(EqualConv2d):
    """x = conv1x1(image, c W) + b, followed by a leaky ReLU when `activate`: image to features."""

    def __init__(self, out_channels, image_channels=3, activate=False):
        super().__init__(image_channels, out_channels, 1)
        self.activate = activate

    def execute(self, image):
        return super().execute(image, LRELU_SLOPE if self.activate else None)


class MinibatchStddev(nn.Module):
    """Append s = mean_chw(sqrt(var_group(x) + 1e-8)) as one more feature map.

    The variance is the biased one over the samples of a group; group_size=None puts the whole
    batch in one group (rosinality). With groups, sample b uses the statistic of group slot
    b mod (B / G) as in NVIDIA's implementation; B must be divisible by the group size.
    """

    def __init__(self, group_size=None):
        self.group_size = group_size

    def execute(self, x, parts=1):
        """x holds `parts` batches (jgan.batching): each gets its own statistic."""
        if parts > 1:
            return jt.concat([self.execute(part) for part in split_parts(x, parts)], dim=0)
        batch, channels, height, width = x.shape
        group = batch if self.group_size is None else min(self.group_size, batch)
        if batch % group:
            raise ValueError(f"MinibatchStddev needs a batch divisible by the group size "
                             f"{group}, got a batch of {batch}.")
        y = x.reshape(group, batch // group, channels, height, width)
        y = y - y.mean(dim=0, keepdims=True)
        std = jt.sqrt(y.sqr().mean(dim=0) + 1e-8)
        stat = std.mean(dims=[1, 2, 3]).reshape(1, batch // group, 1, 1, 1)
        stat = stat.broadcast((group, batch // group, 1, height, width))
        return jt.concat([x, stat.reshape(batch, 1, height, width)], dim=1)
