"""CycleGAN's networks (Zhu et al. 2017): the ResNet generator and the 70x70 PatchGAN discriminator.

The generator is Johnson et al.'s (2016) image-transformation net: a 7x7 convolution, two
stride-2 downsamplings, residual blocks, two fractionally-strided upsamplings and a 7x7
convolution to RGB, with reflection padding and InstanceNorm (no affine parameters) throughout.
A convolution that InstanceNorm follows has no bias, which the norm would subtract again (junyanz
keeps one: in exact arithmetic it never changes an output, its gradient is 0 up to round-off, and
Adam turns that round-off into steps of up to the learning rate).
The discriminator scores overlapping 70x70 patches (Isola et al. 2017): three stride-2
convolutions, a stride-1 one, then a 1-channel map of scores. Weights start as N(0, 0.02).
"""
from jittor import nn

from jgan.batching import score_batches
from jgan.errors import ConfigError
from jgan.kernels import reflection_pad
from jgan.networks.dcgan import LeakyReLU, channels_last, dcgan_init, run_layers
from jgan.norms import InstanceNorm2d

DOWNSAMPLINGS = 2
MIN_SIZE = 32   # the smallest image the PatchGAN discriminator still maps to a score


def instance_norm(channels):
    """InstanceNorm without affine parameters (CycleGAN's `norm_layer`)."""
    return InstanceNorm2d(channels, affine=False)


class ReflectionPad2d(nn.Module):
    """nn.ReflectionPad2d(padding) by jgan's multi-threaded kernel (Jittor's runs on one thread)."""
    takes_layout = True

    def __init__(self, padding):
        self.padding = padding

    def execute(self, x, channels_last=False):
        return reflection_pad(x, self.padding, channels_last)


def through_layers(layers, x):
    """run_layers on (N, C, H, W) images: channels-last in between where the nets run so (on the CPU
    with oneDNN, as the DCGAN family's; README, "Speed"), the result (N, C, H, W) either way."""
    if channels_last():
        return run_layers(layers, x.transpose(0, 2, 3, 1), channels_last=True).transpose(0, 3, 1, 2)
    return run_layers(layers, x)


def residual_blocks_for(size):
    """9 residual blocks at 256 px and above, 6 below (the paper's two generators)."""
    return 9 if size >= 256 else 6


class ResidualBlock(nn.Module):
    """y = x + IN(conv3x3(pad(ReLU(IN(conv3x3(pad(x))))))), reflection padding of 1."""
    takes_layout = True

    def __init__(self, channels):
        self.body = nn.Sequential(ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
                                  instance_norm(channels), LeakyReLU(),
                                  ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
                                  instance_norm(channels))

    def execute(self, x, channels_last=False):
        return x + run_layers(self.body, x, channels_last=channels_last)


class ResnetGenerator(nn.Module):
    """G(x): 7x7 conv, 2 x [3x3 conv stride 2], residual blocks, 2 x [3x3 transposed conv stride 2],
    7x7 conv, tanh; each hidden conv followed by InstanceNorm and ReLU."""

    def __init__(self, ngf=64, blocks=6, channels=3):
        layers = [ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7, bias=False), instance_norm(ngf), LeakyReLU()]
        width = ngf
        for _ in range(DOWNSAMPLINGS):
            layers += [nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), instance_norm(2 * width), LeakyReLU()]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(blocks)]
        for _ in range(DOWNSAMPLINGS):
            layers += [nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1, bias=False),
                       instance_norm(width // 2), LeakyReLU()]
            width //= 2
        layers += [ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def execute(self, x):
        return through_layers(self.main, x)


class PatchDiscriminator(nn.Module):
    """D(x): a (B, 1, H', W') map of least-squares scores, one per 70x70 patch at 3 layers.

    D(x1, x2) scores two batches, in one pass when that is faster (jgan.batching)."""

    def __init__(self, ndf=64, layers=3, channels=3):
        widths = [ndf * min(2 ** n, 8) for n in range(layers + 1)]
        stack = [nn.Conv2d(channels, widths[0], 4, 2, 1), LeakyReLU(0.2)]
        for n in range(1, layers + 1):
            stride = 2 if n < layers else 1
            stack += [nn.Conv2d(widths[n - 1], widths[n], 4, stride, 1, bias=False), instance_norm(widths[n]),
                      LeakyReLU(0.2)]
        stack.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.main = nn.Sequential(*stack)
        dcgan_init(self)

    def execute(self, *images):
        return score_batches(self.score, images)

    def score(self, x, parts):
        """Instance norm never mixes samples, so `parts` batches need no separate treatment."""
        return through_layers(self.main, x)


def build_networks(size=256, ngf=64, ndf=64, blocks=0, d_layers=3, channels=3):
    """(generator, discriminator) of one direction; `blocks` 0 picks the paper's count for `size`."""
    if size < MIN_SIZE or size & (size - 1):
        raise ConfigError(f"cyclegan needs a power-of-two image size of at least {MIN_SIZE}, got {size}")
    blocks = blocks or residual_blocks_for(size)
    return ResnetGenerator(ngf, blocks, channels), PatchDiscriminator(ndf, d_layers, channels)
