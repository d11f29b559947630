"""StyleGAN v1 (Karras et al. 2019) with progressive growing, as in rosinality's style-based-gan-pytorch.

Resolution index i is 4 * 2**i px; `channels[i]` is the width of the generator block and of the
discriminator's from-RGB layer at that resolution. `level` is the index of the current output
resolution (rosinality calls it `step`) and `alpha` the fade-in weight of its newest block:
  * alpha as a Python float follows rosinality: the fade-in is applied only when 0 <= alpha < 1;
  * alpha as a jt.Var always blends for level > 0 (alpha = 1 gives the new block alone), so one
    phase of training compiles one graph while alpha ramps up.
Parameter names follow rosinality's without its `.conv`/`.linear` wrappers and `_orig` suffixes
(see jgan.convert).
"""
import jittor as jt
from jittor import nn

from jgan.errors import ConfigError
from jgan.layers import (AdaptiveInstanceNorm, Blur, ConstantInput, ConvDownsample2d, EqualConv2d,
                         EqualLinear, FromRGB, FusedDownsample, FusedUpsample, MinibatchStddev,
                         ModulatedConv2d, NoiseInjection, PixelNorm, ToRGB, UpsampleConv2d, check_shape,
                         LRELU_SLOPE, leaky_relu, lerp)
from jgan.kernels import add_channel_bias, average_pool_2x2, upsample_nearest_2x
from jgan.batching import score_batches

CHANNELS = (512, 512, 512, 512, 256, 128, 64, 32, 16)


def resolution(index):
    """Side in pixels of resolution index `index`."""
    return 4 * 2 ** index


def fades_in(alpha, level):
    """Whether the output is blended with the upsampled (downsampled) previous resolution."""
    if level == 0:
        return False
    return isinstance(alpha, jt.Var) or 0 <= alpha < 1


def check_channels(channels):
    if len(channels) == 0 or any(int(c) != c or c < 1 for c in channels):
        raise ConfigError(f"channels must be a non-empty list of positive widths, got {list(channels)}")


def check_architecture(channels, fused_from):
    check_channels(channels)
    if int(fused_from) != fused_from or fused_from < 1:
        raise ConfigError(f"fused_from must be a resolution in pixels, got {fused_from!r}")


def unreached_modules(progression, to_rgb, level, alpha):
    """The blocks of a progressive generator above `level` and its to-RGB layers other than
    level's and, while fading in, the previous one's."""
    reached = {level, level - 1} if fades_in(alpha, level) else {level}
    return list(progression)[level + 1:] + [layer for i, layer in enumerate(to_rgb) if i not in reached]


class StyledConvBlock(nn.Module):
    """One synthesis resolution: conv1 -> noise -> lrelu -> AdaIN -> conv2 -> noise -> lrelu -> AdaIN.

    The first block starts from the learned 4x4 constant; the others upsample x2 with nearest +
    3x3 conv, or with a fused transposed conv (`fused`), then blur. Both AdaINs take the same style.
    """

    def __init__(self, in_channels, out_channels, style_dim, initial=False, fused=False, style_gain=1.0):
        self.initial = initial
        if initial:
            self.conv1 = ConstantInput(out_channels)
        else:
            upsample = FusedUpsample if fused else UpsampleConv2d
            self.conv1 = upsample(in_channels, out_channels, 3, padding=1)
            self.blur = Blur()
        self.noise1 = NoiseInjection(out_channels)
        self.adain1 = AdaptiveInstanceNorm(out_channels, style_dim, style_gain)
        self.conv2 = EqualConv2d(out_channels, out_channels, 3, padding=1)
        self.noise2 = NoiseInjection(out_channels)
        self.adain2 = AdaptiveInstanceNorm(out_channels, style_dim, style_gain)

    def execute(self, x, style, noise1, noise2):
        """`x` is the previous block's output (ignored by the first block)."""
        out = self.conv1(style.shape[0]) if self.initial else self.blur(self.conv1(x))
        out = self.adain1(leaky_relu(self.noise1(out, noise1)), style)
        out = self.conv2(out)
        return self.adain2(leaky_relu(self.noise2(out, noise2)), style)


class ModulatedConvBlock(nn.Module):
    """One synthesis resolution as StyleGAN2 draws it, without AdaIN: modulated conv -> noise ->
    bias -> lrelu, twice (the first block starts from the learned 4x4 constant, then noise and lrelu).

    The other blocks upsample x2 with nearest + 3x3 conv, then blur, before the noise. Both convs
    take the block's style (ModulatedConv2d)."""

    def __init__(self, in_channels, out_channels, style_dim, initial=False, style_gain=1.0):
        self.initial = initial
        if initial:
            self.conv1 = ConstantInput(out_channels)
        else:
            self.conv1 = ModulatedConv2d(UpsampleConv2d(in_channels, out_channels), style_dim, style_gain)
            self.blur = Blur()
        self.noise1 = NoiseInjection(out_channels)
        self.conv2 = ModulatedConv2d(EqualConv2d(out_channels, out_channels, 3, padding=1), style_dim,
                                     style_gain)
        self.noise2 = NoiseInjection(out_channels)

    def execute(self, x, style, noise1, noise2):
        """`x` is the previous block's output (ignored by the first block)."""
        if self.initial:
            out = leaky_relu(self.noise1(self.conv1(style.shape[0]), noise1))
        else:
            out = self.noise1(self.blur(self.conv1(x, style)), noise1)
            out = add_channel_bias(out, self.conv1.conv.bias, LRELU_SLOPE)
        out = self.noise2(self.conv2(out, style), noise2)
        return add_channel_bias(out, self.conv2.conv.bias, LRELU_SLOPE)


class StyledGenerator(nn.Module):
    """Mapping network z -> w (PixelNorm, n_mlp x (EqualLinear, lrelu)) and the style-based synthesis.

    lr_mlp: learning-rate multiplier of the mapping network (rosinality trains it at lr * 0.01).
    w_avg: a saved, never trained buffer (1, code_dim) holding the running average of w that the
      training loop maintains with `update_w_avg`.
    demodulate: StyleGAN2's modulated convolutions in place of AdaIN (ModulatedConvBlock; these
      always upsample with nearest + conv, never fused).
    """

    def __init__(self, code_dim=512, n_mlp=8, channels=CHANNELS, fused_from=128, lr_mlp=0.01,
                 image_channels=3, style_gain=1.0, demodulate=False):
        check_architecture(channels, fused_from)
        self.code_dim = code_dim
        self.channels = tuple(channels)
        self.image_channels = image_channels
        mapping = [PixelNorm()]
        for _ in range(n_mlp):
            mapping += [EqualLinear(code_dim, code_dim, lr_mul=lr_mlp), nn.LeakyReLU(0.2)]
        self.style = nn.Sequential(*mapping)
        self.progression = nn.ModuleList([
            self._block(self.channels[max(i - 1, 0)], width, code_dim, i, fused_from, style_gain, demodulate)
            for i, width in enumerate(self.channels)])
        self.to_rgb = nn.ModuleList([ToRGB(width, image_channels) for width in self.channels])
        self.w_avg = jt.zeros((1, code_dim)).stop_grad()
        self._training_w = None   # "_": not state (Jittor's state_dict skips such names)

    @staticmethod
    def _block(in_channels, out_channels, code_dim, index, fused_from, style_gain, demodulate):
        if demodulate:
            return ModulatedConvBlock(in_channels, out_channels, code_dim, index == 0, style_gain)
        return StyledConvBlock(in_channels, out_channels, code_dim, initial=(index == 0),
                               fused=resolution(index) >= fused_from, style_gain=style_gain)

    @property
    def max_level(self):
        return len(self.channels) - 1

    def idle_modules(self, level, alpha):
        """The modules a forward pass at (level, alpha) never reaches: the blocks above `level` and
        the to-RGB layers other than level's and, while fading in, the previous one's."""
        return unreached_modules(self.progression, self.to_rgb, level, alpha)

    def mean_style(self, z):
        """The average w of the latents z, shape (1, code_dim) (rosinality's truncation centre)."""
        return self.style(z).mean(dim=0, keepdims=True)

    @property
    def training_w(self):
        """w of the first latents of the last forward pass in training mode (None before one)."""
        return self._training_w

    def update_w_avg(self, w, decay):
        """w_avg <- decay * w_avg + (1 - decay) * mean(w): the running average latent of training."""
        new = self.w_avg * decay + w.detach().mean(dim=0, keepdims=True) * (1 - decay)
        self.w_avg.update(new.stop_grad())

    def execute(self, input, noise=None, level=0, alpha=-1, mean_style=None, style_weight=0,
                mixing_range=(-1, -1), crossover=None, truncation_cutoff=None):
        """Images (B, image_channels, 4 * 2**level, 4 * 2**level) from z (B, code_dim) or a list of 1-2 z's.

        noise: None (drawn here, one map per conv layer), rosinality's list of one (B, 1, s, s) map
          per resolution (used by both layers there), or a list of one map per conv layer.
        mean_style, style_weight: truncation w = mean_style + style_weight (w - mean_style), on the
          first `truncation_cutoff` resolutions (all when None); pass `mean_style=G.w_avg` to
          truncate towards the running average of training.
        mixing_range=(a, b): with two z's, resolutions a..b take the second style (generation).
        crossover: with two z's, a jt.Var c: resolutions i >= c take the second style (training);
          drawn uniformly in [1, level] when None; c > level means no mixing.
        """
        latents = list(input) if isinstance(input, (list, tuple)) else [input]
        self._check_inputs(latents, level)
        batch = latents[0].shape[0]
        styles = self.map_latents(latents)
        if self.is_training():
            self._training_w = styles[0].detach()
        truncated = styles if mean_style is None else [
            mean_style + style_weight * (s - mean_style) for s in styles]
        cutoff = level + 1 if truncation_cutoff is None else truncation_cutoff
        if len(styles) == 2 and mixing_range == (-1, -1) and crossover is None and level > 0:
            crossover = jt.randint(1, level + 1, shape=(1,))
        noise = self._layer_noise(noise, batch, level)

        out = previous = None
        for i in range(level + 1):
            style = self._block_style(truncated if i < cutoff else styles, i, mixing_range, crossover)
            previous = out
            out = self.progression[i](out, style, noise[2 * i], noise[2 * i + 1])
        image = self.to_rgb[level](out)
        if fades_in(alpha, level):
            image = lerp(upsample_nearest_2x(self.to_rgb[level - 1](previous)), image, alpha)
        return image

    def map_latents(self, latents):
        """[w] of each z in `latents`, all through the mapping network in one pass (it maps each
        row on its own, so this is the same maths with half the layer calls for two latents)."""
        if len(latents) == 1:
            return [self.style(latents[0])]
        batch = latents[0].shape[0]
        w = self.style(jt.concat(latents, dim=0))
        return [w[i * batch:(i + 1) * batch] for i in range(len(latents))]

    @staticmethod
    def _block_style(styles, index, mixing_range, crossover):
        if len(styles) == 1:
            return styles[0]
        if mixing_range != (-1, -1):
            return styles[1] if mixing_range[0] <= index <= mixing_range[1] else styles[0]
        if crossover is None:
            return styles[0]
        if not isinstance(crossover, jt.Var):
            crossover = jt.array([crossover])
        second = (crossover <= index).float32()
        return styles[0] + second * (styles[1] - styles[0])

    def _check_inputs(self, latents, level):
        if not 0 <= level <= self.max_level:
            raise ConfigError(f"level must be in 0..{self.max_level} for {len(self.channels)} "
                              f"resolutions, got {level}")
        if len(latents) not in (1, 2):
            raise ValueError(f"the generator takes one z or a list of two, got {len(latents)}.")
        for z in latents:
            check_shape("z", z, (latents[0].shape[0], self.code_dim))

    def _layer_noise(self, noise, batch, level):
        """One noise map per conv layer, 2 per resolution, from any accepted noise format."""
        if noise is None:
            return [jt.randn(batch, 1, resolution(i), resolution(i))
                    for i in range(level + 1) for _ in range(2)]
        noise = list(noise)
        per_layer = len(noise) >= 2 and noise[0].shape[-1] == noise[1].shape[-1]
        if len(noise) < (2 if per_layer else 1) * (level + 1):
            raise ValueError(f"noise for level {level} needs {level + 1} maps (one per resolution) or "
                             f"{2 * (level + 1)} (one per conv layer), got {len(noise)}.")
        if not per_layer:
            noise = [n for n in noise for _ in range(2)]
        for i in range(level + 1):
            size = resolution(i)
            for n in noise[2 * i:2 * i + 2]:
                check_shape(f"noise at {size} px", n, (batch, 1, size, size))
        return noise


class ConvBlock(nn.Module):
    """One discriminator resolution: conv3x3 -> lrelu -> [blur -> conv3x3 -> avg-pool2 | fused] -> lrelu.

    The last block (4x4, `downsample=False`) ends with a 4x4 valid conv to a 1x1 map instead.
    """

    def __init__(self, in_channels, out_channels, downsample=True, fused=False):
        self.downsample = downsample
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, padding=1)
        if downsample:
            self.blur = Blur()
            conv = FusedDownsample if fused else ConvDownsample2d
            self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        else:
            self.conv2 = EqualConv2d(out_channels, out_channels, 4)

    def execute(self, x):
        out = self.conv1(x, slope=LRELU_SLOPE)
        if self.downsample:
            out = self.blur(out)
        return self.conv2(out, slope=LRELU_SLOPE)


class Discriminator(nn.Module):
    """Progressive discriminator mirroring StyledGenerator; minibatch stddev before the last block.

    As in rosinality, `progression[0]` and `from_rgb[0]` belong to the highest resolution and
    `progression[-1]` to 4x4. from_rgb_activate adds a leaky ReLU after each from-RGB layer;
    stddev_group is the minibatch-stddev group size (None: the whole batch, as rosinality).
    """

    def __init__(self, channels=CHANNELS, fused_from=128, from_rgb_activate=False, stddev_group=None,
                 image_channels=3):
        check_architecture(channels, fused_from)
        self.channels = tuple(channels)
        self.image_channels = image_channels
        count = len(self.channels)
        blocks = []
        for index in range(count):
            i = count - 1 - index  # resolution index of this block
            if i == 0:
                blocks.append(ConvBlock(self.channels[0] + 1, self.channels[0], downsample=False))
            else:
                blocks.append(ConvBlock(self.channels[i], self.channels[i - 1],
                                        fused=resolution(i) >= fused_from))
        self.progression = nn.ModuleList(blocks)
        self.from_rgb = nn.ModuleList([
            FromRGB(self.channels[count - 1 - index], image_channels, activate=from_rgb_activate)
            for index in range(count)])
        self.stddev = MinibatchStddev(stddev_group)
        self.linear = EqualLinear(self.channels[0], 1)

    @property
    def max_level(self):
        return len(self.channels) - 1

    def idle_modules(self, level, alpha):
        """The modules scoring at (level, alpha) never reaches: the blocks above `level` and the
        from-RGB layers other than level's and, while fading in, the previous one's."""
        first = len(self.channels) - 1 - level
        reached = {first, first + 1} if fades_in(alpha, level) else {first}
        return (list(self.progression)[:first]
                + [layer for i, layer in enumerate(self.from_rgb) if i not in reached])

    def execute(self, *images, level=0, alpha=-1):
        """Scores (B,) of images (B, image_channels, 4 * 2**level, 4 * 2**level); given several
        batches, a tuple with the scores of each (in one pass when that is faster)."""
        if not 0 <= level <= self.max_level:
            raise ConfigError(f"level must be in 0..{self.max_level} for {len(self.channels)} "
                              f"resolutions, got {level}")
        size = resolution(level)
        for input in images:
            check_shape(f"discriminator input at level {level}", input,
                        (None, self.image_channels, size, size))
        return score_batches(lambda x, parts: self.score(x, parts, level, alpha), images)

    def score(self, input, parts, level, alpha):
        last = len(self.channels) - 1
        out = self.from_rgb[last - level](input)
        for i in range(level, -1, -1):
            index = last - i
            if i == 0:
                out = self.stddev(out, parts)
            out = self.progression[index](out)
            if i == level and fades_in(alpha, level):
                skip = self.from_rgb[index + 1](average_pool_2x2(input))
                out = lerp(skip, out, alpha)
        return self.linear(out.reshape(out.shape[0], -1)).reshape(out.shape[0])


def build_networks(code_dim=512, n_mlp=8, channels=CHANNELS, fused_from=128, lr_mlp=0.01,
                   stddev_group=None, from_rgb_activate=False, image_channels=3, style_gain=1.0,
                   critic_channels=None, demodulate=False):
    """(StyledGenerator, Discriminator) of one configuration's `model` section."""
    generator = StyledGenerator(code_dim, n_mlp, channels, fused_from, lr_mlp, image_channels, style_gain,
                                demodulate)
    discriminator = Discriminator(critic_channels or channels, fused_from, from_rgb_activate, stddev_group,
                                  image_channels)
    return generator, discriminator
