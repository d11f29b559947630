"""rosinality/style-based-gan-pytorch weights as jgan StyleGAN state dicts (numpy arrays in and out).

rosinality keeps an equalised-lr weight as `<layer>.conv.weight_orig` / `<layer>.linear.weight_orig`
(scaled by sqrt(2 / fan_in) in a forward hook) and stores each Blur's constant kernels as buffers.
jgan stores the same N(0, 1) weight as `<layer>.weight` and scales it in the forward pass, and Blur
has no state. The mapping network differs by one convention: rosinality slows it down with a 100x
smaller learning rate, jgan with `lr_mul` inside EqualLinear, so its weights and biases are divided
by `lr_mlp` here (the forward pass is unchanged).

rosinality checkpoints carry no average latent: compute one with `G.mean_style(z)` after loading.
"""
import re

import numpy as np

from jgan.errors import CheckpointError

G_RULES = [  # (rosinality name, jgan name, part of the mapping network)
    (r"style\.(\d+)\.linear\.weight_orig", r"style.\1.weight", True),
    (r"style\.(\d+)\.linear\.bias", r"style.\1.bias", True),
    (r"generator\.progression\.(\d+)\.conv1\.input", r"progression.\1.conv1.input", False),
    (r"generator\.progression\.(\d+)\.conv1\.1\.conv\.weight_orig", r"progression.\1.conv1.weight", False),
    (r"generator\.progression\.(\d+)\.conv1\.1\.conv\.bias", r"progression.\1.conv1.bias", False),
    (r"generator\.progression\.(\d+)\.conv1\.0\.(weight|bias)", r"progression.\1.conv1.\2", False),
    (r"generator\.progression\.(\d+)\.conv1\.[12]\.(weight|weight_flip)", None, False),  # Blur
    (r"generator\.progression\.(\d+)\.noise([12])\.weight_orig", r"progression.\1.noise\2.weight", False),
    (r"generator\.progression\.(\d+)\.adain([12])\.style\.linear\.weight_orig",
     r"progression.\1.adain\2.style.weight", False),
    (r"generator\.progression\.(\d+)\.adain([12])\.style\.linear\.bias",
     r"progression.\1.adain\2.style.bias", False),
    (r"generator\.progression\.(\d+)\.conv2\.conv\.weight_orig", r"progression.\1.conv2.weight", False),
    (r"generator\.progression\.(\d+)\.conv2\.conv\.bias", r"progression.\1.conv2.bias", False),
    (r"generator\.to_rgb\.(\d+)\.conv\.weight_orig", r"to_rgb.\1.weight", False),
    (r"generator\.to_rgb\.(\d+)\.conv\.bias", r"to_rgb.\1.bias", False),
]

D_RULES = [  # (rosinality name, jgan name)
    (r"progression\.(\d+)\.conv1\.0\.conv\.weight_orig", r"progression.\1.conv1.weight"),
    (r"progression\.(\d+)\.conv1\.0\.conv\.bias", r"progression.\1.conv1.bias"),
    (r"progression\.(\d+)\.conv2\.[01]\.conv\.weight_orig", r"progression.\1.conv2.weight"),
    (r"progression\.(\d+)\.conv2\.[01]\.conv\.bias", r"progression.\1.conv2.bias"),
    (r"progression\.(\d+)\.conv2\.1\.(weight|bias)", r"progression.\1.conv2.\2"),  # FusedDownsample
    (r"progression\.(\d+)\.conv2\.0\.(weight|weight_flip)", None),  # Blur
    (r"from_rgb\.(\d+)\.(?:0\.)?conv\.weight_orig", r"from_rgb.\1.weight"),
    (r"from_rgb\.(\d+)\.(?:0\.)?conv\.bias", r"from_rgb.\1.bias"),
    (r"linear\.linear\.weight_orig", r"linear.weight"),
    (r"linear\.linear\.bias", r"linear.bias"),
]


def _strip_data_parallel(state):
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _require(state, key, kind):
    if key not in state:
        raise CheckpointError(f"this is not a rosinality {kind} state dict: it has no {key}")
    return np.shape(state[key])


def _count(state, pattern):
    return sum(1 for key in state if re.fullmatch(pattern, key))


def _resolution(index):
    return 4 * 2 ** index


def infer_generator_widths(state):
    """StyledGenerator keyword arguments (code_dim, n_mlp, channels, fused_from, image_channels)
    of a rosinality StyledGenerator state dict, read from its shapes."""
    state = _strip_data_parallel(state)
    code_dim = _require(state, "style.1.linear.weight_orig", "StyledGenerator")[1]
    n_mlp = _count(state, r"style\.\d+\.linear\.weight_orig")
    count = _count(state, r"generator\.progression\.\d+\.adain1\.style\.linear\.weight_orig")
    channels = [_require(state, f"generator.progression.{i}.adain1.style.linear.weight_orig",
                         "StyledGenerator")[0] // 2 for i in range(count)]
    fused = [i for i in range(count) if f"generator.progression.{i}.conv1.0.weight" in state]
    image_channels = _require(state, "generator.to_rgb.0.conv.weight_orig", "StyledGenerator")[0]
    return {"code_dim": code_dim, "n_mlp": n_mlp, "channels": channels,
            "fused_from": _resolution(min(fused) if fused else count), "image_channels": image_channels}


def infer_discriminator_widths(state):
    """Discriminator keyword arguments (channels, fused_from, from_rgb_activate, image_channels)
    of a rosinality Discriminator state dict, read from its shapes."""
    state = _strip_data_parallel(state)
    count = _count(state, r"from_rgb\.\d+\.(?:0\.)?conv\.weight_orig")
    if count == 0:
        raise CheckpointError("this is not a rosinality Discriminator state dict: it has no "
                              "from_rgb.0.conv.weight_orig")
    activate = "from_rgb.0.0.conv.weight_orig" in state
    prefix = "from_rgb.{}.0.conv" if activate else "from_rgb.{}.conv"
    shapes = [_require(state, prefix.format(index) + ".weight_orig", "Discriminator")
              for index in range(count)]
    channels = [shapes[count - 1 - i][0] for i in range(count)]
    fused = [count - 1 - index for index in range(count)
             if f"progression.{index}.conv2.1.weight" in state]
    return {"channels": channels, "fused_from": _resolution(min(fused) if fused else count),
            "from_rgb_activate": activate, "image_channels": shapes[0][1]}


def generator_shapes(code_dim, n_mlp, channels, fused_from, image_channels=3):
    """{jgan name: shape} of every parameter of a StyledGenerator (the buffer w_avg excluded)."""
    shapes = {}
    for k in range(n_mlp):
        shapes[f"style.{2 * k + 1}.weight"] = (code_dim, code_dim)
        shapes[f"style.{2 * k + 1}.bias"] = (code_dim,)
    for i, width in enumerate(channels):
        block = f"progression.{i}"
        previous = channels[max(i - 1, 0)]
        if i == 0:
            shapes[f"{block}.conv1.input"] = (1, width, 4, 4)
        else:
            fused = _resolution(i) >= fused_from
            shapes[f"{block}.conv1.weight"] = (previous, width, 3, 3) if fused else (width, previous, 3, 3)
            shapes[f"{block}.conv1.bias"] = (width,)
        for layer in ("1", "2"):
            shapes[f"{block}.noise{layer}.weight"] = (1, width, 1, 1)
            shapes[f"{block}.adain{layer}.style.weight"] = (2 * width, code_dim)
            shapes[f"{block}.adain{layer}.style.bias"] = (2 * width,)
        shapes[f"{block}.conv2.weight"] = (width, width, 3, 3)
        shapes[f"{block}.conv2.bias"] = (width,)
        shapes[f"to_rgb.{i}.weight"] = (image_channels, width, 1, 1)
        shapes[f"to_rgb.{i}.bias"] = (image_channels,)
    return shapes


def discriminator_shapes(channels, fused_from=128, from_rgb_activate=False, image_channels=3):
    """{jgan name: shape} of every parameter of a Discriminator (`progression.0` = top resolution)."""
    count = len(channels)
    shapes = {}
    for index in range(count):
        i = count - 1 - index
        block = f"progression.{index}"
        if i == 0:
            shapes[f"{block}.conv1.weight"] = (channels[0], channels[0] + 1, 3, 3)
            shapes[f"{block}.conv2.weight"] = (channels[0], channels[0], 4, 4)
        else:
            shapes[f"{block}.conv1.weight"] = (channels[i - 1], channels[i], 3, 3)
            shapes[f"{block}.conv2.weight"] = (channels[i - 1], channels[i - 1], 3, 3)
        shapes[f"{block}.conv1.bias"] = shapes[f"{block}.conv2.bias"] = (channels[max(i - 1, 0)],)
        shapes[f"from_rgb.{index}.weight"] = (channels[i], image_channels, 1, 1)
        shapes[f"from_rgb.{index}.bias"] = (channels[i],)
    shapes["linear.weight"] = (1, channels[0])
    shapes["linear.bias"] = (1,)
    return shapes


def _rename(state, rules, kind):
    """{jgan name: (rosinality name, array, rule extra)}; CheckpointError on unknown names."""
    renamed, unknown = {}, []
    for key, value in state.items():
        for pattern, target, *extra in rules:
            match = re.fullmatch(pattern, key)
            if match:
                name = None if target is None else match.expand(target)
                if name in renamed:
                    raise CheckpointError(f"the rosinality {kind} state dict holds both "
                                          f"{renamed[name][0]} and {key}")
                if name is not None:
                    renamed[name] = (key, np.asarray(value, dtype=np.float32), *extra)
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"the rosinality {kind} state dict has {len(unknown)} unknown "
                              f"entries, e.g. {', '.join(sorted(unknown)[:3])}")
    return renamed


def _check_against(renamed, expected, kind):
    missing = sorted(set(expected) - set(renamed))
    if missing:
        raise CheckpointError(f"the rosinality {kind} state dict lacks {len(missing)} entries, "
                              f"e.g. the one for {', '.join(missing[:3])}")
    for name, shape in expected.items():
        key, value = renamed[name][:2]
        if value.shape != tuple(shape):
            raise CheckpointError(f"{key} has shape {value.shape}, but the architecture read from "
                                  f"the checkpoint needs {tuple(shape)}")


def rosinality_generator_state(state, lr_mlp=0.01):
    """jgan StyledGenerator state dict (numpy float32) of a rosinality StyledGenerator state dict.

    The result loads into `StyledGenerator(**infer_generator_widths(state), lr_mlp=lr_mlp)`.
    """
    state = _strip_data_parallel(state)
    expected = generator_shapes(**infer_generator_widths(state))
    renamed = _rename(state, G_RULES, "StyledGenerator")
    _check_against(renamed, expected, "StyledGenerator")
    return {name: value / np.float32(lr_mlp) if mapping else value
            for name, (_, value, mapping) in renamed.items()}


def rosinality_discriminator_state(state):
    """jgan Discriminator state dict (numpy float32) of a rosinality Discriminator state dict.

    The result loads into `Discriminator(**infer_discriminator_widths(state))`.
    """
    state = _strip_data_parallel(state)
    expected = discriminator_shapes(**infer_discriminator_widths(state))
    renamed = _rename(state, D_RULES, "Discriminator")
    _check_against(renamed, expected, "Discriminator")
    return {name: value for name, (_, value) in renamed.items()}


def rosinality_checkpoint(states, size=None):
    """The payload of a jgan checkpoint (see jgan.checkpoint) from rosinality's state dicts.

    `states` holds numpy state dicts under rosinality's names: `g_running` and/or `generator`,
    optionally `discriminator` (a `train_step-N.model`), or a bare StyledGenerator state dict under
    `g_running`. The run is set at `size` px (default: the largest the generator has), fully grown.
    """
    from jgan.config import preset

    generator_state = states.get("generator", states.get("g_running"))
    if generator_state is None:
        raise CheckpointError("this rosinality checkpoint holds neither `generator` nor `g_running`")
    widths = infer_generator_widths(generator_state)
    largest = _resolution(len(widths["channels"]) - 1)
    size = size or largest
    if size not in [_resolution(i) for i in range(len(widths["channels"]))]:
        raise CheckpointError(f"--size {size} is not a resolution of this generator; "
                              f"use a power of two from 4 to {largest}")
    config = preset("stylegan")
    config["model"].update(code_dim=int(widths["code_dim"]), n_mlp=int(widths["n_mlp"]),
                           channels=[int(c) for c in widths["channels"]],
                           fused_from=int(widths["fused_from"]))
    config["progressive"].update(init_size=size, max_size=size)
    no_average = np.zeros((1, int(widths["code_dim"])), np.float32)  # untracked: estimated when needed
    networks = {"generator": {**rosinality_generator_state(generator_state), "w_avg": no_average}}
    if "g_running" in states:
        networks["generator_ema"] = {**rosinality_generator_state(states["g_running"]), "w_avg": no_average}
    if "discriminator" in states:
        networks["discriminator"] = rosinality_discriminator_state(states["discriminator"])
    return {"arch": "stylegan", "config": config, "step": 0, "images": 0, "networks": networks,
            "converted_from": "rosinality/style-based-gan-pytorch"}
