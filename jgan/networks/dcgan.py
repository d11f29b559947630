"""DCGAN-family networks: DCGAN, WGAN, LSGAN, WGAN-GP, WGAN-div and WGANP generators and critics.

Radford et al. 2016 (DCGAN), generalised from the PyTorch example's 64-px nets to any power-of-two
size >= 16: the generator projects z to 4x4 and doubles the resolution log2(size) - 2 times; the
discriminator mirrors it. Gulrajani et al. 2017 (WGAN-GP) drop BatchNorm from the critic.
WGANP replaces the fractionally-strided convolutions by resize-convolutions (Odena et al. 2016).
`activation="selu"` replaces every normalisation and (leaky) ReLU of both nets by SELU
(Klambauer et al. 2017) with LeCun-normal weights, as "Deep learning with cats" trains DCGAN.

On the CPU with oneDNN, both nets keep their activations channels-last, (N, H, W, C), from the
first layer to the last, and convolve them with jgan.onednn_conv (bfloat16 products where they are
enabled): oneDNN's primitives compute in that layout, so no convolution pays for a conversion of
layout on the way in or out (README, "Speed"). Images go in and out (N, C, H, W) either way.
"""
import math

import jittor as jt
from jittor import nn

from jgan import onednn_conv, strided_winograd, winograd
from jgan.errors import ConfigError
from jgan.kernels import leaky_relu, upsample_nearest_2x
from jgan.batching import score_batches
from jgan.layers import subpixel_kernel
from jgan.norms import BatchNorm2d, InstanceNorm2d

CRITIC_NORMS = ("batch", "instance", "none")
ACTIVATIONS = ("relu", "selu")
INIT_STD = 0.02
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def fractionally_strided_conv(in_channels, out_channels):
    """x2 upsampling: ConvTranspose2d(k=4, s=2, p=1) without bias (DCGAN)."""
    return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)


class LeakyReLU(nn.Module):
    """y = x if x > 0 else slope x (slope 0: ReLU), with jgan's multi-threaded kernel."""

    def __init__(self, slope=0.0):
        self.slope = slope

    def execute(self, x):
        return leaky_relu(x, self.slope)


class SELU(nn.Module):
    """y = scale x if x > 0 else scale alpha (e^x - 1), alpha ~ 1.6733, scale ~ 1.0507: the
    self-normalising activation (Klambauer et al. 2017)."""

    def execute(self, x):
        positive = x > 0
        negative = SELU_ALPHA * (jt.exp(jt.ternary(positive, jt.zeros_like(x), x)) - 1)   # no e^x of x > 0
        return SELU_SCALE * jt.ternary(positive, x, negative)


def run_layers(layers, x, parts=1, channels_last=False):
    """x through `layers` in order; a normalisation followed by a LeakyReLU runs as one pass (its
    output before the activation is never stored: less memory and one pass fewer). x holds
    `parts` batches, each normalised on its own (jgan.batching); it is (N, H, W, C) where
    channels_last, and layers whose `takes_layout` is true are told so."""
    layers = list(layers)
    index = 0
    while index < len(layers):
        layer, following = layers[index], layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, (BatchNorm2d, InstanceNorm2d)):
            fuses = isinstance(following, LeakyReLU)
            x = layer(x, slope=following.slope if fuses else None, parts=parts, channels_last=channels_last)
            index += 2 if fuses else 1
        elif channels_last and is_convolution(layer):
            x = convolve_channels_last(layer, x)
            index += 1
        else:
            x = layer(x, channels_last=True) if channels_last and getattr(layer, "takes_layout", False) else layer(x)
            index += 1
    return x


def is_convolution(layer):
    return isinstance(layer, (nn.Conv, nn.ConvTranspose, ResizeConv))


def convolve_channels_last(layer, x):
    """A convolution layer of these nets on a (N, H, W, C) input: by Winograd's F(4x4, 2x2) where
    jgan.strided_winograd takes it, else by jgan.onednn_conv (by Winograd's F(4x4, 3x3) where
    jgan.winograd takes it)."""
    layout = {"channels_last": True, "bfloat16": onednn_conv.bfloat16_enabled()}
    if not isinstance(layer, (ResizeConv, nn.ConvTranspose)):
        if strided_winograd.takes(x, layer.weight, layer.stride, layer.padding):
            return strided_winograd.conv2d(x, layer.weight, layer.bias)
        return onednn_conv.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding,
                                  winograd=winograd.takes_channels_last(x, layer.weight, layer.stride, layer.padding),
                                  **layout)
    weight, bias, stride, padding, output_padding = transposition(layer)
    if strided_winograd.takes(x, weight, stride, padding, output_padding, transposed=True):
        return strided_winograd.conv_transpose2d(x, weight, bias)
    return onednn_conv.conv_transpose2d(x, weight, bias, stride, padding, output_padding, **layout)


def transposition(layer):
    """(weight, bias, stride, padding, output_padding) of a transposed convolution layer, or of the
    one transposed convolution a resize-convolution runs as."""
    if isinstance(layer, ResizeConv):
        return layer.transposed_kernel(), None, 2, 1, 0
    return layer.weight, layer.bias, layer.stride, layer.padding, layer.output_padding


def channels_last():
    """Whether the nets run channels-last now (on the CPU with oneDNN)."""
    return onednn_conv.channels_last_available()


class NearestUpsample(nn.Module):
    """Nearest-neighbour x2 upsampling (nn.Upsample(scale_factor=2, mode="nearest"), multi-threaded)."""

    def execute(self, x):
        return upsample_nearest_2x(x)


class ResizeConv(nn.Sequential):
    """x2 upsampling: nearest Upsample(x2) then Conv2d(k=3, s=1, p=1), free of checkerboard artefacts,
    run as one transposed convolution (jgan.layers.subpixel_kernel); its parameters keep the
    names they have in nn.Sequential(Upsample, Conv2d)."""

    def __init__(self, in_channels, out_channels):
        super().__init__(NearestUpsample(), nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False))

    def transposed_kernel(self):
        return subpixel_kernel(self[1].weight)

    def execute(self, x):
        return nn.conv_transpose2d(x, self.transposed_kernel(), stride=2, padding=1)


UPSAMPLERS = {"transposed": fractionally_strided_conv, "resize": ResizeConv}


def normalization(kind, channels):
    """The layers that follow a hidden conv: [] for none, else [BatchNorm2d] or [InstanceNorm2d(affine)]."""
    if kind == "none":
        return []
    return [{"batch": BatchNorm2d, "instance": InstanceNorm2d}[kind](channels, affine=True)]


def activation_layers(activation, norm_layers, slope):
    """What follows a hidden conv: its normalisation and a (leaky) ReLU, or SELU alone."""
    return [SELU()] if activation == "selu" else [*norm_layers, LeakyReLU(slope)]


def doublings(size):
    """Number of x2 resolution steps between 4x4 and size x size: log2(size) - 2."""
    if not isinstance(size, int) or size < 16 or size & (size - 1):
        raise ConfigError(f"image size {size!r} is not supported; use a power of two >= 16 "
                          f"such as 32, 64 or 128")
    return int(math.log2(size)) - 2


def dcgan_init(module):
    """Conv weights ~ N(0, 0.02), norm weights ~ N(1, 0.02), biases 0 (DCGAN paper)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            jt.init.gauss_(layer.weight, 0.0, INIT_STD)
            if layer.bias is not None:
                jt.init.zero_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d)) and layer.affine:
            jt.init.gauss_(layer.weight, 1.0, INIT_STD)
            jt.init.zero_(layer.bias)
    return module


def lecun_normal_init(module, projection=None):
    """Conv weights ~ N(0, 1 / fan_in) (LeCun normal, SELU's initialisation), fan_in being the
    inputs each output sums: in k^2 for a conv, in (k / stride)^2 for a transposed conv, and in
    for `projection`, the transposed conv that maps the 1x1 latent to 4x4."""
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose2d):
            in_channels, _, kernel, _ = layer.weight.shape
            taps = 1 if layer is projection else (kernel // layer.stride[0]) ** 2
        elif isinstance(layer, nn.Conv2d):
            _, in_channels, kernel, _ = layer.weight.shape
            taps = kernel ** 2
        else:
            continue
        jt.init.gauss_(layer.weight, 0.0, 1 / math.sqrt(in_channels * taps))
    return module


class Generator(nn.Module):
    """G(z): z -> ConvT(4x4) -> [x2 upsample, BN, ReLU] * (log2(size) - 3) -> x2 upsample -> Tanh
    (with SELU: [x2 upsample, SELU])."""

    def __init__(self, size=64, nz=100, ngf=64, channels=3, upsample="transposed", activation="relu"):
        super().__init__()
        n = doublings(size)
        widths = [ngf * 2 ** i for i in reversed(range(n))]
        block = UPSAMPLERS[upsample]
        projection = nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False)
        layers = [projection, *activation_layers(activation, [BatchNorm2d(widths[0])], 0.0)]
        for in_channels, out_channels in zip(widths, widths[1:]):
            layers += [block(in_channels, out_channels),
                       *activation_layers(activation, [BatchNorm2d(out_channels)], 0.0)]
        layers += [block(widths[-1], channels), nn.Tanh()]
        self.nz = nz
        self.main = nn.Sequential(*layers)
        dcgan_init(self)
        if activation == "selu":
            lecun_normal_init(self, projection)

    def execute(self, z):
        if channels_last():
            images = run_layers(self.main, z.reshape(z.shape[0], 1, 1, self.nz), channels_last=True)
            return images.transpose(0, 3, 1, 2)
        return run_layers(self.main, z.reshape(z.shape[0], self.nz, 1, 1))


class Discriminator(nn.Module):
    """D(x): Conv(s2), LReLU(0.2) -> [Conv(s2), norm, LReLU(0.2)] * (log2(size) - 3) -> Conv(4x4) logit (B,)
    (with SELU: Conv(s2), SELU -> [Conv(s2), SELU] * (log2(size) - 3), no norm, no hidden bias).

    D(x1, x2, ...) returns the scores of each batch, in one pass when that is faster."""

    def __init__(self, size=64, ndf=64, channels=3, norm="batch", activation="relu"):
        super().__init__()
        n = doublings(size)
        widths = [ndf * 2 ** i for i in range(n)]
        hidden_bias = norm == "none" and activation == "relu"
        layers = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), *activation_layers(activation, [], 0.2)]
        for in_channels, out_channels in zip(widths, widths[1:]):
            layers += [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=hidden_bias),
                       *activation_layers(activation, normalization(norm, out_channels), 0.2)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)
        if activation == "selu":
            lecun_normal_init(self)

    def execute(self, *images):
        return score_batches(self.score, images)

    def score(self, x, parts):
        if channels_last():
            return run_layers(self.main, x.transpose(0, 2, 3, 1), parts, channels_last=True).reshape(x.shape[0])
        return run_layers(self.main, x, parts).reshape(x.shape[0])


def build_networks(size=64, nz=100, ngf=64, ndf=64, upsample="transposed", critic_norm="batch",
                   channels=3, activation="relu"):
    """(generator, discriminator) of one `model` section: the generator upsamples with
    fractionally-strided convs (`transposed`, DCGAN) or nearest + 3x3 conv (`resize`, WGANP); the
    critic normalises its hidden layers with `batch` norm (DCGAN) or `instance` norm or `none`
    (Gulrajani et al. 2017 drop BatchNorm from a gradient-penalised critic). `activation` `selu`
    replaces the normalisations (critic_norm included) and (leaky) ReLUs of both nets by SELU."""
    if upsample not in UPSAMPLERS:
        raise ConfigError(f"unknown upsample {upsample!r}; choose one of {', '.join(UPSAMPLERS)}")
    if critic_norm not in CRITIC_NORMS:
        raise ConfigError(f"unknown critic_norm {critic_norm!r}; choose one of {', '.join(CRITIC_NORMS)}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    return (Generator(size, nz, ngf, channels, upsample, activation),
            Discriminator(size, ndf, channels, critic_norm, activation))
