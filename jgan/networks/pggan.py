"""PGGAN (Karras et al. 2018, "Progressive Growing of GANs"), as in rosinality's
progressive-gan-pytorch: the generator. The discriminator is StyleGAN's
(jgan.networks.stylegan.Discriminator: from-RGB, convs, blur and average-pool downsampling,
minibatch stddev, linear), which is PGGAN's with StyleGAN's blur before each downsampling.

Resolution index i is 4 * 2**i px and `channels[i]` the width at that resolution, as in
jgan.networks.stylegan; `level` and `alpha` follow its conventions (alpha as a jt.Var always blends
for level > 0, so a phase compiles once while alpha ramps up).
"""
from jittor import nn

from jgan.errors import ConfigError
from jgan.kernels import upsample_nearest_2x
from jgan.layers import EqualConv2d, PixelNorm, ToRGB, UpsampleConv2d, check_shape, leaky_relu, lerp
from jgan.networks.stylegan import CHANNELS, Discriminator, check_channels, fades_in, unreached_modules


class ProgressiveBlock(nn.Module):
    """One resolution: conv1 -> PixelNorm -> lrelu -> conv3x3 -> PixelNorm -> lrelu.

    The first block's conv1 is a 4x4 conv with padding 3 that maps the 1x1 latent to 4x4 (the
    paper's dense layer); the others upsample x2 (nearest) before a 3x3 conv.
    """

    def __init__(self, in_channels, out_channels, initial=False):
        if initial:
            self.conv1 = EqualConv2d(in_channels, out_channels, 4, padding=3)
        else:
            self.conv1 = UpsampleConv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = EqualConv2d(out_channels, out_channels, 3, padding=1)
        self.norm = PixelNorm()

    def execute(self, x):
        out = leaky_relu(self.norm(self.conv1(x)))
        return leaky_relu(self.norm(self.conv2(out)))


class Generator(nn.Module):
    """G(z): PixelNorm(z) as a 1x1 map, one ProgressiveBlock per resolution up to `level`, a 1x1
    to-RGB per resolution, and the fade-in from the upsampled previous RGB image."""

    def __init__(self, code_dim=512, channels=CHANNELS, image_channels=3):
        check_channels(channels)
        self.code_dim = code_dim
        self.channels = tuple(channels)
        self.image_channels = image_channels
        self.normalize_latent = PixelNorm()
        self.progression = nn.ModuleList([
            ProgressiveBlock(code_dim if i == 0 else self.channels[i - 1], width, initial=(i == 0))
            for i, width in enumerate(self.channels)])
        self.to_rgb = nn.ModuleList([ToRGB(width, image_channels) for width in self.channels])

    @property
    def max_level(self):
        return len(self.channels) - 1

    def idle_modules(self, level, alpha):
        """The modules a forward pass at (level, alpha) never reaches."""
        return unreached_modules(self.progression, self.to_rgb, level, alpha)

    def execute(self, z, level=0, alpha=-1):
        """Images (B, image_channels, 4 * 2**level, 4 * 2**level) from z (B, code_dim)."""
        if not 0 <= level <= self.max_level:
            raise ConfigError(f"level must be in 0..{self.max_level} for {len(self.channels)} "
                              f"resolutions, got {level}")
        check_shape("z", z, (None, self.code_dim))
        out = self.normalize_latent(z).reshape(z.shape[0], self.code_dim, 1, 1)
        previous = None
        for block in list(self.progression)[:level + 1]:
            previous, out = out, block(out)
        image = self.to_rgb[level](out)
        if fades_in(alpha, level):
            image = lerp(upsample_nearest_2x(self.to_rgb[level - 1](previous)), image, alpha)
        return image


def build_networks(code_dim=512, channels=CHANNELS, stddev_group=4, from_rgb_activate=True,
                   image_channels=3, critic_channels=None):
    """(Generator, StyleGAN's Discriminator without fused downsampling) of a `model` section."""
    no_fused = 8 * 2 ** len(channels)   # a resolution beyond the last one
    discriminator = Discriminator(critic_channels or channels, no_fused, from_rgb_activate, stddev_group,
                                  image_channels)
    return Generator(code_dim, channels, image_channels), discriminator
