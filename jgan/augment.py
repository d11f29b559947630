"""Differentiable augmentation (DiffAugment, Zhao et al. 2020): the same kind of random transform on
real and fake images before the discriminator, differentiable w.r.t. the images to any order.

Images are NCHW batches in [-1, 1]. Each transform takes its random parameters explicitly, one per
sample, as jt.Vars of shape (N,); each `draw_*` function draws them with Jittor's RNG, so
jt.set_seed fixes them. `Augment` applies a policy: the named transforms, in order, each to an image
with a probability p (1: DiffAugment). `AdaptiveProbability` tunes p during training as stylegan2-ada
does (Karras et al. 2020): up while the discriminator calls too many real images real, down otherwise.
"""
import jittor as jt
import numpy as np

from jgan.errors import ConfigError
from jgan.losses import sign
from jgan.scalar import scalar_var

TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def per_sample(values):
    """(N,) -> (N, 1, 1, 1): one value per image, broadcast over C x H x W."""
    return values.reshape(-1, 1, 1, 1)


def color(x, brightness, saturation, contrast):
    """Brightness x + b, then saturation (scale x - pixel_mean by s), then contrast (scale x - image_mean
    by c), per image, in closed form: c s x + c (1 - s) pixel_mean + (1 - c) image_mean + b."""
    pixel_mean = x.mean(1, keepdims=True)
    image_mean = pixel_mean.mean((2, 3), keepdims=True)
    b, s, c = per_sample(brightness), per_sample(saturation), per_sample(contrast)
    return c * s * x + c * (1 - s) * pixel_mean + (1 - c) * image_mean + b


def translate(x, shift_x, shift_y):
    """y[n, c, i, j] = x[n, c, i - shift_y_n, j - shift_x_n], zero where that falls outside x."""
    return x.reindex(x.shape, ["i0", "i1", "i2-@e1(i0)", "i3-@e0(i0)"], extras=[shift_x, shift_y])


def span(length, start, size):
    """(N, length): 1 at positions [start_n, start_n + size) of a line of `length`, 0 elsewhere."""
    positions = jt.arange(length, dtype="int32").reshape(1, length)
    start = start.reshape(-1, 1)
    return (positions >= start) & (positions < start + size)


def square_mask(x, centre_x, centre_y, size):
    """(N, 1, H, W): 0 on the rows and columns [centre - size // 2, centre - size // 2 + size), 1 elsewhere."""
    _, _, height, width = x.shape
    rows = span(height, centre_y - size // 2, size).cast(x.dtype).reshape(-1, 1, height, 1)
    cols = span(width, centre_x - size // 2, size).cast(x.dtype).reshape(-1, 1, 1, width)
    return 1 - rows * cols


def cutout(x, centre_x, centre_y, size):
    """x with a size x size square of zeros centred at (centre_x_n, centre_y_n), clipped at the borders."""
    return x * square_mask(x, centre_x, centre_y, size)


def draw_color(x):
    """(brightness ~ U(-0.5, 0.5), saturation ~ U(0, 2), contrast ~ U(0.5, 1.5)), one per image."""
    batch = x.shape[0]
    return jt.rand(batch) - 0.5, jt.rand(batch) * 2, jt.rand(batch) + 0.5


def draw_translation(x, ratio=TRANSLATION_RATIO):
    """(shift_x, shift_y), integers uniform in [-r, r] with r = ratio of the width (height), rounded."""
    batch, _, height, width = x.shape
    reach_x, reach_y = int(width * ratio + 0.5), int(height * ratio + 0.5)
    return (jt.randint(-reach_x, reach_x + 1, shape=(batch,)),
            jt.randint(-reach_y, reach_y + 1, shape=(batch,)))


def draw_cutout(x, ratio=CUTOUT_RATIO):
    """(centre_x, centre_y, size): size = ratio of the shorter side, rounded; each centre uniform over
    the positions that keep at least half of the square's side inside the image."""
    batch, _, height, width = x.shape
    size = int(min(height, width) * ratio + 0.5)
    even = 1 - size % 2
    return (jt.randint(0, width + even, shape=(batch,)),
            jt.randint(0, height + even, shape=(batch,)), size)


POLICIES = {"color": (draw_color, color),
            "translation": (draw_translation, translate),
            "cutout": (draw_cutout, cutout)}


def parse_policy(policy):
    """"color,translation" -> ["color", "translation"]; "" -> []; an unknown name is a ConfigError."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    for name in names:
        if name not in POLICIES:
            raise ConfigError(f"Unknown augmentation policy '{name}': use a comma-separated list of "
                              f"{', '.join(POLICIES)}, or an empty string for none.")
    return names


def probability_var(value):
    """A probability as the Var that Augment reads (jgan.scalar: a new value needs no new kernels)."""
    return scalar_var(np.asarray(value, np.float32).reshape(-1)[0])


class Augment:
    """T(x): the policy's transforms in order, each with fresh parameters per image and per call,
    each applied to an image with probability `probability` (a scalar Var, so that a tuned value needs
    no new kernels; None: always, as DiffAugment)."""

    def __init__(self, policy="color,translation,cutout", probability=None):
        self.policy = parse_policy(policy)
        self.probability = probability

    def __call__(self, x):
        """The draws come first, each transform's parameters (from the shape of x alone) and then the
        per-image choices, so that with probability 1 the parameters are DiffAugment's."""
        draws = [(POLICIES[name][1], POLICIES[name][0](x)) for name in self.policy]
        chosen = [None if self.probability is None else self.choose(x) for _ in draws]
        for (transform, parameters), picked in zip(draws, chosen):
            transformed = transform(x, *parameters)
            x = transformed if picked is None else x + picked * (transformed - x)
        return x

    def choose(self, x):
        """(N, 1, 1, 1): 1 for the images a transform applies to (each with the probability), else 0."""
        return per_sample((jt.rand(x.shape[0]) < self.probability).cast(x.dtype))


class AdaptiveProbability:
    """stylegan2-ada's tuning of the augmentation probability p: after each discriminator step,
    p moves by (images of the step) / span, up when the mean sign of D's logits on the real images,
    r = E[sign D(x)], is above `target` (D overfits), down when below, within [0, 1]. The update
    stays on the device (no host synchronisation); `value` is the scalar Var that Augment reads."""

    def __init__(self, start, target, span):
        self.target, self.span = target, span
        self.value = probability_var(start)

    def adjust(self, real_sign, images):
        """One step's tuning from r = real_sign (a scalar Var) after `images` real images."""
        step = sign(real_sign.detach() - self.target) * (images / self.span)
        self.value.update((self.value + step).clamp(0.0, 1.0).stop_grad())

    def state(self):
        return np.asarray(self.value.numpy(), np.float32).reshape(1)   # the checkpoint's (1,) record

    def load_state(self, value):
        self.value.update(probability_var(value))
        self.value.sync()   # Jittor 1.3.11 miscompiles an unrun array op fused into the broadcast that reads it
