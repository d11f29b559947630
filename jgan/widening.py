"""Net2WiderNet (Chen, Goodfellow and Shlens 2016) for StyleGAN: split each channel of the generator's
last block in two, so that a trained run goes on with a block twice as wide.

The widened generator draws the same images. Both copies of a channel compute the same feature, and
the weights that read the features (the next convolution's and toRGB's) are shared out between the
two copies in random proportions: their sum is kept, and the copies get different gradients, so
training pulls them apart. Where a layer's fan-in doubles, its equalised-lr constant c = sqrt(2 /
fan_in) shrinks by sqrt(2) and the stored weights grow by as much (NoiseInjection's c counts channels
too). Adam's moments go with their weights, scaled as the gradients scale (a copy's gradient is
about half its channel's), so that training goes on without a jump.
"""
import copy
import math

import numpy as np

from jgan.errors import CheckpointError

SQRT2 = math.sqrt(2)
SPLIT_RANGE = (0.25, 0.75)     # the share of a read weight that goes to a channel's first copy


def copy_channels(array, axis, groups=1):
    """Each channel twice, [a, a] along `axis`, within each of `groups` equal parts (AdaIN's style
    layer holds gamma, then beta)."""
    return np.concatenate([np.concatenate([part, part], axis) for part in np.split(array, groups, axis)], axis)


def split_reads(array, axis, ratio):
    """The weights that read the channels along `axis`, shared out between their two copies."""
    return np.concatenate([array * ratio, array * (1 - ratio)], axis)


def split_ratios(state, block, rgb, seed):
    """The random shares of conv2's and toRGB's weights that go to the first copies."""
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(*SPLIT_RANGE, np.shape(state[name])).astype(np.float32)
            for name in (f"{block}.conv2.weight", rgb)}


def block_names(block):
    """The parameters of a StyledConvBlock: those whose channels are copied as they are, the
    NoiseInjection weights (copied, times sqrt(2)), and the AdaIN style layers (gamma and beta)."""
    copied = [f"{block}.conv1.weight", f"{block}.conv1.bias", f"{block}.conv2.bias"]
    noise = [f"{block}.noise{layer}.weight" for layer in (1, 2)]
    styles = [f"{block}.adain{layer}.style.{kind}" for layer in (1, 2) for kind in ("weight", "bias")]
    return copied, noise, styles


def widen_weights(state, block, rgb, ratios):
    """A generator's state dict with every channel of `block` split in two (see the module docstring)."""
    state = dict(state)
    copied, noise, styles = block_names(block)
    for name in copied:
        state[name] = copy_channels(state[name], 0)
    for name in noise:
        state[name] = copy_channels(state[name], 1) * SQRT2
    for name in styles:
        state[name] = copy_channels(state[name], 0, groups=2)
    conv2 = f"{block}.conv2.weight"
    state[conv2] = copy_channels(split_reads(state[conv2], 1, ratios[conv2]) * SQRT2, 0)
    state[rgb] = split_reads(state[rgb], 1, ratios[rgb]) * SQRT2
    return {name: np.asarray(value, np.float32) for name, value in state.items()}


def widen_moments(moments, block, rgb, power):
    """Adam's moments (m: power 1, v: power 2) of widen_weights' state: both copies of a weight get
    its moments, divided by sqrt(2)^power where the weight's constant shrinks and by 2^power where
    its channel is copied."""
    moments = dict(moments)
    shrink, half = SQRT2 ** power, 0.5 ** power
    copied, noise, styles = block_names(block)
    for name in copied:
        moments[name] = copy_channels(moments[name], 0) * half
    for name in noise:
        moments[name] = copy_channels(moments[name], 1) * (half / shrink)
    for name in styles:
        moments[name] = copy_channels(moments[name], 0, groups=2) * half
    conv2 = f"{block}.conv2.weight"
    moments[conv2] = copy_channels(copy_channels(moments[conv2], 1) / shrink, 0) * half
    moments[rgb] = copy_channels(moments[rgb], 1) / shrink
    return {name: np.asarray(value, np.float32) for name, value in moments.items()}


def widen_checkpoint(document, seed=0):
    """A StyleGAN training checkpoint (as load_checkpoint reads it) whose generator, EMA generator and
    generator optimiser have the last block twice as wide; `seed` draws the split shares."""
    from jgan.networks.stylegan import StyledConvBlock, build_networks
    from jgan.layers import UpsampleConv2d

    if document.get("arch") != "stylegan":
        raise CheckpointError(f"{document['path']} is a {document.get('arch')} checkpoint; widening takes a "
                              f"StyleGAN one")
    missing = [name for name in ("generator", "generator_ema") if name not in document.get("networks", {})]
    if missing or "generator" not in document.get("optimizers", {}):
        raise CheckpointError(f"{document['path']} holds no {missing[0] if missing else 'generator optimiser'} "
                              f"(a converted or pretrained model?); widen a checkpoint of a training run")
    document = copy.deepcopy(document)
    model = document["config"]["model"]
    generator, _ = build_networks(**model)
    last = len(model["channels"]) - 1
    if not (isinstance(generator.progression[last], StyledConvBlock)
            and isinstance(generator.progression[last].conv1, UpsampleConv2d)):
        raise CheckpointError(f"{document['path']}'s last generator block is not an AdaIN block with "
                              f"nearest upsampling (model.demodulate or model.fused_from); widening takes "
                              f"StyleGAN v1's")
    block, rgb = f"progression.{last}", f"to_rgb.{last}.weight"
    networks = document["networks"]
    ratios = split_ratios(networks["generator"], block, rgb, seed)
    for name in ("generator", "generator_ema"):
        networks[name] = widen_weights(networks[name], block, rgb, ratios)
    names = [name for name, _ in generator.named_parameters()]
    for group in document["optimizers"]["generator"]["groups"]:
        for key, power in (("m", 1), ("values", 2)):
            state = widen_moments(dict(zip(names, group[key], strict=True)), block, rgb, power)
            group[key] = [state[name] for name in names]
    model["critic_channels"] = model.get("critic_channels") or list(model["channels"])   # the critic is kept
    model["channels"] = model["channels"][:-1] + [2 * model["channels"][-1]]
    return document
