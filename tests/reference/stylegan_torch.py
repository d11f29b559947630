"""PyTorch reference of StyleGAN v1, written from the structure of rosinality's style-based-gan-pytorch.

The module tree and parameter names are those of rosinality's model.py (`conv.weight_orig`,
`linear.weight_orig`, `noise1.weight_orig`, Blur buffers `weight`/`weight_flip`, Sequential
indices), so `state_dict()` looks like a rosinality checkpoint. Generalised for tests: the widths
(`channels`, index i = 4 * 2**i px) and the first fused resolution (`fused_from`) are parameters,
the style-mixing crossover can be fixed, the noise of a resolution can be one map (rosinality) or a
pair (one per conv layer), and truncation can stop after `truncation_cutoff` resolutions.
"""
import math
import random

import torch
from torch import nn
from torch.nn import functional as F


class EqualLRConv(nn.Module):
    """conv2d with the weight stored as `weight_orig` and scaled by sqrt(2 / fan_in) when used."""

    def __init__(self, in_channel, out_channel, kernel_size, padding=0):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel))
        self.padding = padding
        self.multiplier = math.sqrt(2 / (in_channel * kernel_size * kernel_size))

    def forward(self, x):
        return F.conv2d(x, self.weight_orig * self.multiplier, self.bias, padding=self.padding)


class EqualLRLinear(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.multiplier = math.sqrt(2 / in_dim)

    def forward(self, x):
        return F.linear(x, self.weight_orig * self.multiplier, self.bias)


class EqualConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, padding=0):
        super().__init__()
        self.conv = EqualLRConv(in_channel, out_channel, kernel_size, padding)

    def forward(self, x):
        return self.conv(x)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.linear = EqualLRLinear(in_dim, out_dim)

    def forward(self, x):
        return self.linear(x)


def _box_averaged(weight):
    """Kernel zero-padded by one and averaged over 2x2 windows: k x k -> (k+1) x (k+1)."""
    padded = F.pad(weight, [1, 1, 1, 1])
    return (padded[:, :, 1:, 1:] + padded[:, :, :-1, 1:]
            + padded[:, :, 1:, :-1] + padded[:, :, :-1, :-1]) / 4


class FusedUpsample(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, padding=0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_channel, out_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel))
        self.multiplier = math.sqrt(2 / (in_channel * kernel_size * kernel_size))
        self.pad = padding

    def forward(self, x):
        weight = _box_averaged(self.weight * self.multiplier)
        return F.conv_transpose2d(x, weight, self.bias, stride=2, padding=self.pad)


class FusedDownsample(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, padding=0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel))
        self.multiplier = math.sqrt(2 / (in_channel * kernel_size * kernel_size))
        self.pad = padding

    def forward(self, x):
        weight = _box_averaged(self.weight * self.multiplier)
        return F.conv2d(x, weight, self.bias, stride=2, padding=self.pad)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    """Depthwise [1,2,1]x[1,2,1]/16 filter; rosinality keeps the kernel and its flip as buffers."""

    def __init__(self, channel):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :] / 16).view(1, 1, 3, 3)
        self.register_buffer("weight", kernel.repeat(channel, 1, 1, 1))
        self.register_buffer("weight_flip", torch.flip(kernel, [2, 3]).repeat(channel, 1, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class NoiseInjection(nn.Module):
    """rosinality wraps it in equal_lr: the weight is `weight_orig` scaled by sqrt(2 / channels)."""

    def __init__(self, channel):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.zeros(1, channel, 1, 1))
        self.multiplier = math.sqrt(2 / channel)

    def forward(self, image, noise):
        return image + self.weight_orig * self.multiplier * noise


class AdaptiveInstanceNorm(nn.Module):
    def __init__(self, in_channel, style_dim):
        super().__init__()
        self.norm = nn.InstanceNorm2d(in_channel)
        self.style = EqualLinear(style_dim, in_channel * 2)
        with torch.no_grad():
            self.style.linear.bias[:in_channel] = 1
            self.style.linear.bias[in_channel:] = 0

    def forward(self, x, style):
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, 1)
        return gamma * self.norm(x) + beta


class ConstantInput(nn.Module):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, x):
        return self.input.repeat(x.shape[0], 1, 1, 1)


class StyledConvBlock(nn.Module):
    def __init__(self, in_channel, out_channel, style_dim, initial=False, fused=False):
        super().__init__()
        if initial:
            self.conv1 = ConstantInput(in_channel)
        elif fused:
            self.conv1 = nn.Sequential(FusedUpsample(in_channel, out_channel, 3, padding=1),
                                       Blur(out_channel))
        else:
            self.conv1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                       EqualConv2d(in_channel, out_channel, 3, padding=1),
                                       Blur(out_channel))
        self.noise1 = NoiseInjection(out_channel)
        self.adain1 = AdaptiveInstanceNorm(out_channel, style_dim)
        self.lrelu1 = nn.LeakyReLU(0.2)
        self.conv2 = EqualConv2d(out_channel, out_channel, 3, padding=1)
        self.noise2 = NoiseInjection(out_channel)
        self.adain2 = AdaptiveInstanceNorm(out_channel, style_dim)
        self.lrelu2 = nn.LeakyReLU(0.2)

    def forward(self, x, style, noise):
        """`noise`: one map for both layers (rosinality) or a pair (one per layer)."""
        noise1, noise2 = noise if isinstance(noise, (list, tuple)) else (noise, noise)
        out = self.adain1(self.lrelu1(self.noise1(self.conv1(x), noise1)), style)
        out = self.conv2(out)
        return self.adain2(self.lrelu2(self.noise2(out, noise2)), style)


def resolution(index):
    return 4 * 2 ** index


class Generator(nn.Module):
    def __init__(self, channels, style_dim, fused_from):
        super().__init__()
        self.progression = nn.ModuleList([
            StyledConvBlock(channels[max(i - 1, 0)], width, style_dim, initial=(i == 0),
                            fused=resolution(i) >= fused_from)
            for i, width in enumerate(channels)])
        self.to_rgb = nn.ModuleList([EqualConv2d(width, 3, 1) for width in channels])

    def forward(self, styles, noise, step=0, alpha=-1, mixing_range=(-1, -1), crossover=None,
                truncated=None, truncation_cutoff=None):
        """rosinality's loop: style index switches after inject_index (crossover - 1)."""
        if len(styles) < 2:
            inject_index = [len(self.progression) + 1]
        elif crossover is None:
            inject_index = sorted(random.sample(list(range(step)), len(styles) - 1))
        else:
            inject_index = [crossover - 1]
        cutoff = step + 1 if truncation_cutoff is None else truncation_cutoff
        current = 0
        out = None
        for i, (conv, to_rgb) in enumerate(zip(self.progression, self.to_rgb)):
            source = truncated if (truncated is not None and i < cutoff) else styles
            if mixing_range == (-1, -1):
                if current < len(inject_index) and i > inject_index[current]:
                    current = min(current + 1, len(styles))
                style_step = source[current]
            else:
                style_step = source[1] if mixing_range[0] <= i <= mixing_range[1] else source[0]
            if i > 0 and step > 0:
                out_prev = out
            first = noise[0][0] if isinstance(noise[0], (list, tuple)) else noise[0]
            out = conv(first if i == 0 else out, style_step, noise[i])
            if i == step:
                out = to_rgb(out)
                if i > 0 and 0 <= alpha < 1:
                    skip_rgb = F.interpolate(self.to_rgb[i - 1](out_prev), scale_factor=2,
                                             mode="nearest")
                    out = (1 - alpha) * skip_rgb + alpha * out
                break
        return out


class StyledGenerator(nn.Module):
    def __init__(self, code_dim=16, n_mlp=2, channels=(16, 16, 16, 8, 8), fused_from=128):
        super().__init__()
        self.generator = Generator(channels, code_dim, fused_from)
        layers = [PixelNorm()]
        for _ in range(n_mlp):
            layers += [EqualLinear(code_dim, code_dim), nn.LeakyReLU(0.2)]
        self.style = nn.Sequential(*layers)

    def forward(self, input, noise, step=0, alpha=-1, mean_style=None, style_weight=0,
                mixing_range=(-1, -1), crossover=None, truncation_cutoff=None):
        inputs = input if isinstance(input, (list, tuple)) else [input]
        styles = [self.style(z) for z in inputs]
        truncated = None
        if mean_style is not None:
            truncated = [mean_style + style_weight * (s - mean_style) for s in styles]
            if truncation_cutoff is None:
                styles = truncated
        return self.generator(styles, noise, step, alpha, mixing_range, crossover, truncated,
                              truncation_cutoff)

    def mean_style(self, z):
        return self.style(z).mean(0, keepdim=True)


class ConvBlock(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, padding, kernel_size2=None,
                 padding2=None, downsample=False, fused=False):
        super().__init__()
        kernel2 = kernel_size if kernel_size2 is None else kernel_size2
        pad2 = padding if padding2 is None else padding2
        self.conv1 = nn.Sequential(EqualConv2d(in_channel, out_channel, kernel_size, padding),
                                   nn.LeakyReLU(0.2))
        if downsample and fused:
            self.conv2 = nn.Sequential(Blur(out_channel),
                                       FusedDownsample(out_channel, out_channel, kernel2, pad2),
                                       nn.LeakyReLU(0.2))
        elif downsample:
            self.conv2 = nn.Sequential(Blur(out_channel),
                                       EqualConv2d(out_channel, out_channel, kernel2, pad2),
                                       nn.AvgPool2d(2), nn.LeakyReLU(0.2))
        else:
            self.conv2 = nn.Sequential(EqualConv2d(out_channel, out_channel, kernel2, pad2),
                                       nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.conv2(self.conv1(x))


class Discriminator(nn.Module):
    """progression[0] is the highest resolution; the last block sees 4x4 plus the stddev map."""

    def __init__(self, channels=(16, 16, 16, 8, 8), fused_from=128, from_rgb_activate=False,
                 stddev_group=None):
        super().__init__()
        self.stddev_group = stddev_group   # None: the whole batch (rosinality); else NVIDIA's groups
        count = len(channels)
        blocks = []
        for index in range(count - 1):
            i = count - 1 - index
            blocks.append(ConvBlock(channels[i], channels[i - 1], 3, 1, downsample=True,
                                    fused=resolution(i) >= fused_from))
        blocks.append(ConvBlock(channels[0] + 1, channels[0], 3, 1, 4, 0))
        self.progression = nn.ModuleList(blocks)

        def make_from_rgb(out_channel):
            if from_rgb_activate:
                return nn.Sequential(EqualConv2d(3, out_channel, 1), nn.LeakyReLU(0.2))
            return EqualConv2d(3, out_channel, 1)

        self.from_rgb = nn.ModuleList([make_from_rgb(channels[count - 1 - index])
                                       for index in range(count)])
        self.n_layer = count
        self.linear = EqualLinear(channels[0], 1)

    def forward(self, input, step=0, alpha=-1):
        for i in range(step, -1, -1):
            index = self.n_layer - i - 1
            if i == step:
                out = self.from_rgb[index](input)
            if i == 0 and self.stddev_group:
                out = minibatch_stddev(out, self.stddev_group)
            elif i == 0:
                out_std = torch.sqrt(out.var(0, unbiased=False) + 1e-8)
                mean_std = out_std.mean().expand(out.size(0), 1, 4, 4)
                out = torch.cat([out, mean_std], 1)
            out = self.progression[index](out)
            if i > 0 and i == step and 0 <= alpha < 1:
                skip_rgb = self.from_rgb[index + 1](F.avg_pool2d(input, 2))
                out = (1 - alpha) * skip_rgb + alpha * out
        return self.linear(out.squeeze(2).squeeze(2))


def minibatch_stddev(x, group_size):
    """NVIDIA's grouped minibatch standard deviation, appended as one channel."""
    batch, channels, height, width = x.shape
    group = min(group_size, batch)
    y = x.reshape(group, -1, channels, height, width)
    std = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
    stat = std.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(group, 1, height, width)
    return torch.cat([x, stat], 1)


def randomize(module, seed=1):
    """Shift noise weights and biases away from their initial zeros (in place; returns `module`),
    so that every parameter shows up in the output of a parity test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "noise" in name or name.endswith("bias") or name == "weight_orig":
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return module
