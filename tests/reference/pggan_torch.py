"""PyTorch reference of the PGGAN generator, written from Karras et al. 2018 and the structure of
rosinality's progressive-gan-pytorch: PixelNorm on z, a 4x4 block (a 4x4 conv with padding 3 on
the 1x1 latent, then a 3x3 conv), then per resolution nearest x2 upsampling and two 3x3 convs,
every conv equalised-LR and followed by PixelNorm and LeakyReLU 0.2; a 1x1 equalised to-RGB per
resolution. As in rosinality, the fade-in upsamples the previous block's features and applies the
previous to-RGB to them, and blends only when 0 <= alpha < 1.

Parameter names are jgan's with rosinality's `weight_orig` for an equalised weight
(`progression.i.conv1.weight_orig`, `to_rgb.i.bias`, ...; `jgan_name` maps them). The equalised
conv and the discriminator are StyleGAN's: tests/reference/stylegan_torch.py.
"""
import torch
from torch import nn
from torch.nn import functional as F

from reference.stylegan_torch import EqualLRConv


def pixel_norm(x):
    return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class Block(nn.Module):
    def __init__(self, in_channel, out_channel, first):
        super().__init__()
        self.first = first
        self.conv1 = EqualLRConv(in_channel, out_channel, 4 if first else 3, 3 if first else 1)
        self.conv2 = EqualLRConv(out_channel, out_channel, 3, 1)

    def forward(self, x):
        if not self.first:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.leaky_relu(pixel_norm(self.conv1(x)), 0.2)
        return F.leaky_relu(pixel_norm(self.conv2(x)), 0.2)


class Generator(nn.Module):
    def __init__(self, code_dim=16, channels=(16, 16, 16, 8, 8)):
        super().__init__()
        widths = [code_dim] + list(channels)
        self.progression = nn.ModuleList([Block(widths[i], widths[i + 1], first=(i == 0))
                                          for i in range(len(channels))])
        self.to_rgb = nn.ModuleList([EqualLRConv(width, 3, 1) for width in channels])

    def forward(self, z, step=0, alpha=-1):
        out = pixel_norm(z)[:, :, None, None]
        for i, block in enumerate(self.progression[:step + 1]):
            previous = out
            out = block(out)
        image = self.to_rgb[step](out)
        if step > 0 and 0 <= alpha < 1:
            skip = self.to_rgb[step - 1](F.interpolate(previous, scale_factor=2, mode="nearest"))
            image = (1 - alpha) * skip + alpha * image
        return image


def jgan_name(name):
    """The jgan name of a reference parameter."""
    return name.replace("weight_orig", "weight")


def randomize(module, seed=1):
    """Shift the zero biases (in place; returns `module`), so that every parameter shows up in
    the output of a parity test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias"):
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return module


def torch_networks(model):
    """(Generator, StyleGAN's reference Discriminator without fused downsampling) of a pggan
    `model` section."""
    from reference.stylegan_torch import Discriminator
    generator = Generator(model["code_dim"], model["channels"])
    discriminator = Discriminator(model["channels"], float("inf"), model["from_rgb_activate"],
                                  model["stddev_group"])
    return generator, discriminator
