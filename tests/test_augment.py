"""Specification of jgan.augment (DiffAugment) against an independent PyTorch reference.

Every transform is compared, for the same explicit per-image parameters, on its output, on the
input gradient of sum(w * T(x)) (w fixed random) and on a second-order gradient, the derivative of
||d/dx sum(w * tanh(T(x)))||^2 (the WGAN-GP and R1 penalties differentiate twice through T).
Sizes: 8x8 and 12x20 (not square), batch 5, 3 channels. Tolerance: ATOL 1e-5 + RTOL 1e-5 *
|reference| (float32). Measured max abs diffs (pytest -s prints them): translation and cutout 0 in
value and first gradient; colour <= 2.4e-7; second-order gradients <= 1.2e-6.
"""
import jittor as jt
import numpy as np
import pytest
import torch

from jgan import augment
from jgan.errors import ConfigError
from parity import assert_close, to_numpy
from reference import diffaugment_torch as ref

ATOL, RTOL = 1e-5, 1e-5
BATCH, CHANNELS = 5, 3
SIZES = [(8, 8), (12, 20)]


def random_array(*shape, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)


def colour(rng, brightness=False, saturation=False, contrast=False):
    """(b, s, c) per image: drawn from the paper's ranges where asked, neutral (0, 1, 1) elsewhere."""
    def draw(asked, low, high, neutral):
        return (rng.uniform(low, high, BATCH) if asked else np.full(BATCH, neutral)).astype(np.float32)
    return [draw(brightness, -0.5, 0.5, 0), draw(saturation, 0, 2, 1), draw(contrast, 0.5, 1.5, 1)]


def parameters(case, height, width, seed=1):
    """(transform name, explicit per-image parameters as numpy arrays and Python ints) of a test case."""
    rng = np.random.RandomState(seed)
    if case in ("brightness", "saturation", "contrast"):
        return "color", colour(rng, **{case: True})
    if case == "color":
        return "color", colour(rng, brightness=True, saturation=True, contrast=True)
    if case == "translate":   # every shift up to 1/4 of the side, both signs and zero
        return "translate", [rng.randint(-width // 4, width // 4 + 1, BATCH).astype(np.int32),
                             rng.randint(-height // 4, height // 4 + 1, BATCH).astype(np.int32)]
    if case == "cutout":      # centres at and beyond the borders; odd and even sizes
        return "cutout", [np.array([0, width, 3, width - 1, 1], np.int32),
                          np.array([0, height, height - 1, 2, 4], np.int32), min(height, width) // 2 + seed % 2]
    raise KeyError(case)


CASES = ["brightness", "saturation", "contrast", "color", "translate", "cutout"]


def as_jittor(values):
    return [jt.array(v) if isinstance(v, np.ndarray) else v for v in values]


def as_torch(values):
    return [torch.tensor(v) if isinstance(v, np.ndarray) else v for v in values]


def compare(name, jt_value, th_value):
    print(f"{name}: max abs diff {np.abs(to_numpy(jt_value) - to_numpy(th_value)).max():.2e}")
    assert_close(name, jt_value, th_value, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_transform_matches_reference_in_value_and_input_gradient(case, size, seed):
    height, width = size
    images = random_array(BATCH, CHANNELS, height, width, seed=seed)
    name, params = parameters(case, height, width, seed)
    jt_x, th_x = jt.array(images), torch.tensor(images, requires_grad=True)
    jt_out = getattr(augment, name)(jt_x, *as_jittor(params))
    th_out = getattr(ref, name)(th_x, *as_torch(params))
    compare(f"{case} {size} output", jt_out, th_out)
    weight = random_array(*th_out.shape, seed=99)
    jt_grad = jt.grad((jt_out * jt.array(weight)).sum(), jt_x)
    th_grad, = torch.autograd.grad((th_out * torch.tensor(weight)).sum(), th_x)
    compare(f"{case} {size} d/dx", jt_grad, th_grad)


def penalty_gradient(module, x, transform, params, weight):
    """d/dx ||d/dx sum(w * tanh(T(x)))||^2, built in framework `module` (jt or torch)."""
    if module is jt:
        inner = jt.grad((weight * jt.tanh(transform(x, *params))).sum(), x, retain_graph=True)
        return jt.grad((inner * inner).sum(), x)
    inner, = torch.autograd.grad((weight * torch.tanh(transform(x, *params))).sum(), x, create_graph=True)
    return torch.autograd.grad((inner * inner).sum(), x)[0]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", CASES)
def test_transform_second_order_gradient_matches_reference(case, size):
    height, width = size
    images = random_array(BATCH, CHANNELS, height, width, seed=3)
    weight = random_array(BATCH, CHANNELS, height, width, seed=98)
    name, params = parameters(case, height, width)
    jt_grad = penalty_gradient(jt, jt.array(images), getattr(augment, name), as_jittor(params), jt.array(weight))
    th_grad = penalty_gradient(torch, torch.tensor(images, requires_grad=True), getattr(ref, name),
                               as_torch(params), torch.tensor(weight))
    assert np.abs(to_numpy(th_grad)).max() > 1e-3, "the reference's second-order gradient is not trivially zero"
    compare(f"{case} {size} second-order d/dx", jt_grad, th_grad)


# ----- known cases ------------------------------------------------------------------------------
def ramp_4x4():
    return np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) + 1


def test_translate_moves_content_right_and_down_with_zeros_coming_in():
    right = augment.translate(jt.array(ramp_4x4()), jt.array([1], "int32"), jt.array([0], "int32"))
    np.testing.assert_array_equal(right.numpy()[0, 0], [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15]])
    up = augment.translate(jt.array(ramp_4x4()), jt.array([0], "int32"), jt.array([-1], "int32"))
    np.testing.assert_array_equal(up.numpy()[0, 0], [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [0, 0, 0, 0]])


def test_cutout_zeroes_the_square_around_the_centre_clipped_at_the_border():
    ones = jt.ones((2, 1, 4, 4))
    out = augment.cutout(ones, jt.array([1, 0], "int32"), jt.array([2, 3], "int32"), 2).numpy()
    np.testing.assert_array_equal(out[0, 0], [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(out[1, 0], [[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]])


def test_zero_translation_and_empty_cutout_are_identities():
    images = random_array(BATCH, CHANNELS, 8, 8)
    zeros = jt.zeros(BATCH, dtype="int32")
    np.testing.assert_array_equal(augment.translate(jt.array(images), zeros, zeros).numpy(), images)
    np.testing.assert_array_equal(augment.cutout(jt.array(images), zeros + 4, zeros + 4, 0).numpy(), images)


def test_colour_greys_each_pixel_then_halves_its_distance_to_the_image_mean():
    pixels = jt.array([[[[0.6, 0.5]], [[0.0, 0.5]], [[-0.3, 0.5]]]])   # (1, 3, 1, 2): means 0.1 and 0.5
    out = augment.color(pixels, jt.array([0.2]), jt.array([0.0]), jt.array([0.5])).numpy()
    np.testing.assert_allclose(out[0, :, 0], [[0.4, 0.6]] * 3, atol=1e-6)


def test_colour_with_neutral_parameters_is_the_identity():
    images = random_array(BATCH, CHANNELS, 8, 8)
    out = augment.color(jt.array(images), jt.zeros(BATCH), jt.ones(BATCH), jt.ones(BATCH))
    np.testing.assert_allclose(out.numpy(), images, atol=1e-6)


# ----- random draws -----------------------------------------------------------------------------
def test_colour_draws_are_in_the_papers_ranges_and_differ_between_images():
    jt.set_seed(0)
    draws = [d.numpy() for d in augment.draw_color(jt.zeros((256, 3, 8, 8)))]
    for label, values, (low, high) in zip(["brightness", "saturation", "contrast"], draws,
                                          [(-0.5, 0.5), (0, 2), (0.5, 1.5)]):
        assert values.shape == (256,)
        assert low <= values.min() and values.max() < high, f"{label} outside [{low}, {high})"
        assert values.max() - values.min() > 0.9 * (high - low), f"{label} does not cover its range"


@pytest.mark.parametrize("size, reach", [(8, 1), (32, 4), (64, 8)])
def test_translation_draws_every_integer_shift_up_to_an_eighth_of_the_side(size, reach):
    jt.set_seed(0)
    shift_x, shift_y = (s.numpy() for s in augment.draw_translation(jt.zeros((512, 3, size, size))))
    for shifts in (shift_x, shift_y):
        assert shifts.dtype == np.int32
        assert set(shifts.tolist()) == set(range(-reach, reach + 1))
    assert (shift_x != shift_y).any(), "x and y are drawn independently"


@pytest.mark.parametrize("size", [8, 9])
def test_cutout_draws_half_size_squares_that_keep_at_least_half_their_side_inside(size):
    jt.set_seed(0)
    centre_x, centre_y, side = augment.draw_cutout(jt.zeros((512, 3, size, size)))
    assert side == int(size / 2 + 0.5)
    even = 1 - side % 2
    for centres in (centre_x.numpy(), centre_y.numpy()):
        assert set(centres.tolist()) == set(range(0, size + even))


def test_augment_draws_per_image_and_repeats_after_the_same_seed():
    images = jt.array(np.tile(random_array(1, CHANNELS, 16, 16), (8, 1, 1, 1)))
    augmentation = augment.Augment("color,translation,cutout")
    jt.set_seed(7)
    first = augmentation(images).numpy()
    second = augmentation(images).numpy()
    jt.set_seed(7)
    again = augmentation(images).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, second), "a new call draws new parameters"
    for n in range(1, 8):
        assert not np.allclose(first[0], first[n]), f"images 0 and {n} of identical inputs got the same transform"


def test_augment_output_is_differentiable_with_respect_to_the_images():
    images = jt.array(random_array(4, CHANNELS, 16, 16))
    jt.set_seed(3)
    grad = jt.grad((augment.Augment()(images) ** 2).sum(), images).numpy()
    assert np.abs(grad).max() > 0 and np.isfinite(grad).all()


# ----- policies ---------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["", " , "])
def test_empty_policy_is_the_identity(policy):
    images = random_array(BATCH, CHANNELS, 8, 8)
    np.testing.assert_array_equal(augment.Augment(policy)(jt.array(images)).numpy(), images)


def test_policy_applies_its_transforms_in_order_each_with_its_own_draw(monkeypatch):
    shifts = jt.array([1, -1, 0, 2, -2], "int32"), jt.array([0, 1, -1, 2, 0], "int32")
    centres = jt.array([0, 3, 8, 5, 2], "int32"), jt.array([4, 8, 1, 0, 7], "int32"), 4
    monkeypatch.setitem(augment.POLICIES, "translation", (lambda x: shifts, augment.translate))
    monkeypatch.setitem(augment.POLICIES, "cutout", (lambda x: centres, augment.cutout))
    images = jt.array(random_array(BATCH, CHANNELS, 8, 8))
    out = augment.Augment("translation, cutout")(images).numpy()
    expected = augment.cutout(augment.translate(images, *shifts), *centres).numpy()
    np.testing.assert_array_equal(out, expected)


def test_unknown_policy_is_a_config_error_naming_it_and_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        augment.Augment("color,flip")
    message = str(error.value)
    assert "'flip'" in message and all(name in message for name in ("color", "translation", "cutout"))
