"""Specification of jgan.convert: rosinality StyleGAN state dicts -> jgan state dicts.

The checkpoints are state dicts of the PyTorch reference (tests/reference/stylegan_torch.py),
whose names are rosinality's; the names of a real rosinality checkpoint are pinned below.
Round trip tolerance: images and scores ATOL 1e-4 + RTOL 1e-4 (float32, as in the network tests).
"""
import jittor as jt
import numpy as np
import pytest
import torch

from jgan.convert import (discriminator_shapes, generator_shapes, infer_discriminator_widths,
                          infer_generator_widths, rosinality_discriminator_state,
                          rosinality_generator_state)
from jgan.errors import CheckpointError
from jgan.networks.stylegan import CHANNELS, Discriminator, StyledGenerator
from parity import assert_close, max_abs_diff
from reference import stylegan_torch as ref

TINY = {"code_dim": 16, "n_mlp": 3, "channels": [16, 16, 8, 8], "fused_from": 16, "image_channels": 3}
BATCH, STEP = 2, 3


def numpy_state(module):
    return {name: tensor.detach().numpy() for name, tensor in module.state_dict().items()}


def tiny_reference_generator(seed=0):
    torch.manual_seed(seed)
    return ref.randomize(ref.StyledGenerator(TINY["code_dim"], TINY["n_mlp"], TINY["channels"],
                                             TINY["fused_from"]))


def shapes_of(state):
    return {name: tuple(value.shape) for name, value in state.items()}


# ----- the names of rosinality's checkpoints --------------------------------------------------
def test_reference_has_the_parameter_names_of_a_rosinality_checkpoint():
    """Keys of rosinality's 1024 px StyledGenerator / Discriminator (its model.py, fused=True)."""
    generator = numpy_state(ref.StyledGenerator(512, 8, CHANNELS, 128))
    for key in ["style.1.linear.weight_orig", "style.15.linear.bias",
                "generator.progression.0.conv1.input",
                "generator.progression.0.noise1.weight_orig",
                "generator.progression.0.adain1.style.linear.weight_orig",
                "generator.progression.0.conv2.conv.weight_orig",
                "generator.progression.4.conv1.1.conv.weight_orig",
                "generator.progression.4.conv1.2.weight", "generator.progression.4.conv1.2.weight_flip",
                "generator.progression.5.conv1.0.weight", "generator.progression.5.conv1.0.bias",
                "generator.progression.5.conv1.1.weight_flip",
                "generator.progression.8.adain2.style.linear.bias",
                "generator.to_rgb.8.conv.weight_orig"]:
        assert key in generator, key
    assert generator["generator.progression.5.conv1.0.weight"].shape == (256, 128, 3, 3)
    assert generator["generator.to_rgb.8.conv.weight_orig"].shape == (3, 16, 1, 1)
    discriminator = numpy_state(ref.Discriminator(CHANNELS, 128))
    for key in ["progression.0.conv1.0.conv.weight_orig", "progression.0.conv2.0.weight_flip",
                "progression.0.conv2.1.weight", "progression.3.conv2.1.bias",
                "progression.4.conv2.1.conv.weight_orig", "progression.8.conv1.0.conv.weight_orig",
                "progression.8.conv2.0.conv.weight_orig", "from_rgb.0.conv.weight_orig",
                "from_rgb.8.conv.bias", "linear.linear.weight_orig"]:
        assert key in discriminator, key
    assert discriminator["progression.8.conv1.0.conv.weight_orig"].shape == (512, 513, 3, 3)


# ----- architecture inference -----------------------------------------------------------------
def test_infers_rosinality_full_size_architecture():
    generator = numpy_state(ref.StyledGenerator(512, 8, CHANNELS, 128))
    assert infer_generator_widths(generator) == {
        "code_dim": 512, "n_mlp": 8, "channels": list(CHANNELS), "fused_from": 128, "image_channels": 3}
    discriminator = numpy_state(ref.Discriminator(CHANNELS, 128, from_rgb_activate=True))
    assert infer_discriminator_widths(discriminator) == {
        "channels": list(CHANNELS), "fused_from": 128, "from_rgb_activate": True, "image_channels": 3}


def test_infers_no_fused_resolution_as_beyond_the_top():
    state = numpy_state(ref.StyledGenerator(8, 1, (8, 8), 128))
    assert infer_generator_widths(state)["fused_from"] == 16


def test_expected_shapes_are_those_of_the_jgan_networks():
    generator = StyledGenerator(**TINY)
    expected = generator_shapes(**TINY)
    expected["w_avg"] = (1, TINY["code_dim"])
    assert shapes_of(generator.state_dict()) == expected
    for activate in (False, True):
        discriminator = Discriminator(TINY["channels"], 16, from_rgb_activate=activate)
        assert shapes_of(discriminator.state_dict()) == discriminator_shapes(TINY["channels"], 16, activate)


# ----- round trips ----------------------------------------------------------------------------
def test_generator_round_trip_gives_the_same_images():
    th = tiny_reference_generator()
    state = numpy_state(th)
    widths = infer_generator_widths(state)
    assert widths == TINY
    generator = StyledGenerator(**widths, lr_mlp=0.01)
    converted = rosinality_generator_state(state, lr_mlp=0.01)
    assert set(converted) == set(generator.state_dict()) - {"w_avg"}
    generator.load_state_dict(converted)
    rng = np.random.RandomState(0)
    z = rng.randn(BATCH, TINY["code_dim"]).astype(np.float32)
    noise = [rng.randn(BATCH, 1, 4 * 2 ** i, 4 * 2 ** i).astype(np.float32) for i in range(STEP + 1)]
    image = generator(jt.array(z), noise=[jt.array(n) for n in noise], level=STEP, alpha=0.5)
    with torch.no_grad():
        expected = th(torch.tensor(z), [torch.tensor(n) for n in noise], step=STEP, alpha=0.5)
    print(f"round-trip G image: max abs diff {max_abs_diff(image, expected):.2e}")
    assert_close("round-trip G image", image, expected, atol=1e-4, rtol=1e-4)


def test_mapping_weights_are_divided_by_lr_mlp():
    state = numpy_state(tiny_reference_generator())
    for lr_mlp in (0.01, 1.0):
        converted = rosinality_generator_state(state, lr_mlp=lr_mlp)
        assert_close(f"style.3.weight with lr_mlp {lr_mlp}", converted["style.3.weight"],
                     state["style.3.linear.weight_orig"] / lr_mlp, atol=0, rtol=1e-7)
        assert_close(f"style.3.bias with lr_mlp {lr_mlp}", converted["style.3.bias"],
                     state["style.3.linear.bias"] / lr_mlp, atol=0, rtol=1e-7)
    assert_close("progression.1.conv2.weight is copied", converted["progression.1.conv2.weight"],
                 state["generator.progression.1.conv2.conv.weight_orig"], atol=0)


@pytest.mark.parametrize("activate", [False, True])
def test_discriminator_round_trip_gives_the_same_scores(activate):
    torch.manual_seed(1)
    th = ref.randomize(ref.Discriminator(TINY["channels"], 16, from_rgb_activate=activate))
    state = numpy_state(th)
    widths = infer_discriminator_widths(state)
    discriminator = Discriminator(**widths)
    converted = rosinality_discriminator_state(state)
    assert set(converted) == set(discriminator.state_dict())
    discriminator.load_state_dict(converted)
    x = np.random.RandomState(0).randn(BATCH, 3, 32, 32).astype(np.float32)
    scores = discriminator(jt.array(x), level=STEP, alpha=0.5)
    with torch.no_grad():
        expected = th(torch.tensor(x), step=STEP, alpha=0.5)[:, 0]
    print(f"round-trip D scores (from_rgb_activate={activate}): "
          f"max abs diff {max_abs_diff(scores, expected):.2e}")
    assert_close("round-trip D scores", scores, expected, atol=1e-4, rtol=1e-4)


def test_data_parallel_prefix_is_accepted():
    state = numpy_state(tiny_reference_generator())
    prefixed = {f"module.{key}": value for key, value in state.items()}
    plain, stripped = rosinality_generator_state(state), rosinality_generator_state(prefixed)
    assert all(np.array_equal(plain[k], stripped[k]) for k in plain) and set(plain) == set(stripped)


# ----- bad checkpoints ------------------------------------------------------------------------
def test_unknown_entries_are_refused():
    state = numpy_state(tiny_reference_generator())
    state["generator.progression.1.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match="1 unknown entries, e.g. generator.progression.1.extra.weight"):
        rosinality_generator_state(state)


def test_missing_entries_are_refused():
    state = numpy_state(tiny_reference_generator())
    del state["generator.progression.2.noise2.weight_orig"]
    with pytest.raises(CheckpointError, match="lacks 1 entries, e.g. the one for "
                                              "progression.2.noise2.weight"):
        rosinality_generator_state(state)
    d_state = numpy_state(ref.Discriminator(TINY["channels"], 16))
    del d_state["linear.linear.bias"]
    with pytest.raises(CheckpointError, match="lacks 1 entries, e.g. the one for linear.bias"):
        rosinality_discriminator_state(d_state)


def test_inconsistent_shapes_are_refused():
    state = numpy_state(tiny_reference_generator())
    state["generator.to_rgb.2.conv.weight_orig"] = np.zeros((3, 4, 1, 1), np.float32)
    with pytest.raises(CheckpointError, match=r"generator.to_rgb.2.conv.weight_orig has shape "
                                              r"\(3, 4, 1, 1\), .* needs \(3, 8, 1, 1\)"):
        rosinality_generator_state(state)


def test_a_state_dict_of_another_network_is_refused():
    discriminator = numpy_state(ref.Discriminator(TINY["channels"], 16))
    with pytest.raises(CheckpointError, match="not a rosinality StyledGenerator state dict"):
        rosinality_generator_state(discriminator)
    with pytest.raises(CheckpointError, match="not a rosinality Discriminator state dict"):
        rosinality_discriminator_state(numpy_state(tiny_reference_generator()))
