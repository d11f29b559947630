"""PyTorch reference of StyleGAN2's modulated convolution (Karras et al. 2020, "Analyzing and
Improving the Image Quality of StyleGAN", eqs. 1-3) and of the synthesis block that jgan builds
from it when `model.demodulate` is on, written from the paper's equations.

The paper's form: every sample gets weights of its own, w'_oik = s_i w_oik, demodulated to
w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + eps), and the batch is convolved as one grouped
convolution (one group per sample). As in jgan the inputs come from a leaky ReLU and are scaled
by sqrt(2) (StyleGAN2's activation gain), which the demodulation does not see. Weights are
stored N(0, 1) and scaled by sqrt(2 / fan_in) when used (equalised learning rate); the parameter
names are jgan's (`conv.weight`, `conv.bias`, `style.weight`, `style.bias`).
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from reference.stylegan_torch import ConstantInput, NoiseInjection

EPS = 1e-8


class Weights(nn.Module):
    def __init__(self, out_channel, in_channel, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel))
        self.multiplier = math.sqrt(2 / (in_channel * kernel_size * kernel_size))


class Style(nn.Module):
    def __init__(self, style_dim, in_channel):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_channel, style_dim))
        self.bias = nn.Parameter(torch.ones(in_channel))
        self.multiplier = math.sqrt(2 / style_dim)

    def forward(self, w):
        return F.linear(w, self.weight * self.multiplier, self.bias)


class ModulatedConv2d(nn.Module):
    """Modulated, demodulated 3x3 conv without bias; `upsample`: nearest x2 first."""

    def __init__(self, in_channel, out_channel, style_dim, upsample=False):
        super().__init__()
        self.conv = Weights(out_channel, in_channel, 3)
        self.style = Style(style_dim, in_channel)
        self.upsample = upsample

    def forward(self, x, w):
        batch, in_channel, height, width = x.shape
        s = self.style(w)
        weight = self.conv.weight[None] * self.conv.multiplier * s[:, None, :, None, None]
        weight = weight / torch.sqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + EPS)
        out_channel = weight.shape[1]
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = math.sqrt(2) * x.reshape(1, batch * in_channel, x.shape[2], x.shape[3])
        y = F.conv2d(x, weight.reshape(batch * out_channel, in_channel, 3, 3), padding=1, groups=batch)
        return y.reshape(batch, out_channel, y.shape[2], y.shape[3])


def blur(x):
    """[1 2 1]^T [1 2 1] / 16 on every channel, zero padding 1."""
    taps = torch.tensor([1.0, 2.0, 1.0])
    kernel = (taps[:, None] * taps[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, kernel, padding=1, groups=x.shape[1])


class ModulatedConvBlock(nn.Module):
    """[constant | modulated upsampling conv -> blur] -> noise -> bias -> lrelu(0.2), then
    modulated conv -> noise -> bias -> lrelu(0.2); the constant has no bias."""

    def __init__(self, in_channel, out_channel, style_dim, initial=False):
        super().__init__()
        self.initial = initial
        if initial:
            self.conv1 = ConstantInput(out_channel)
        else:
            self.conv1 = ModulatedConv2d(in_channel, out_channel, style_dim, upsample=True)
        self.noise1 = NoiseInjection(out_channel)
        self.conv2 = ModulatedConv2d(out_channel, out_channel, style_dim)
        self.noise2 = NoiseInjection(out_channel)

    def forward(self, x, w, noise1, noise2):
        if self.initial:
            out = F.leaky_relu(self.noise1(self.conv1(w), noise1), 0.2)
        else:
            out = self.noise1(blur(self.conv1(x, w)), noise1)
            out = F.leaky_relu(out + self.conv1.conv.bias[None, :, None, None], 0.2)
        out = self.noise2(self.conv2(out, w), noise2) + self.conv2.conv.bias[None, :, None, None]
        return F.leaky_relu(out, 0.2)
