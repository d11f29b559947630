"""Sliced Wasserstein distance between Laplacian-pyramid patches (Karras et al. 2018, PGGAN, sec. 5).

For every level of a Laplacian pyramid from the image size down to 16 px, 128 random 7x7
neighbourhoods per image are the descriptors of that level; each set of descriptors is normalised
per colour channel; the distance of a level is the mean over 4 repeats of 128 random unit
directions of the mean absolute difference between the sorted projections of the two sets. It is
reported x1e3 per level (`swd_64`, `swd_32`, `swd_16`) and averaged over the levels (`swd`).
"""
import numpy as np

BINOMIAL_5 = np.float32([1, 4, 6, 4, 1]) / 16   # one axis of the 5x5 binomial filter
NEIGHBOURHOOD = 7
PER_IMAGE = 128
REPEATS = 4
DIRECTIONS = 128
SMALLEST_LEVEL = 16
SCALE = 1e3
CHUNK = 256   # images per pyramid pass, to bound memory


def level_sizes(size):
    """Pyramid resolutions from `size` down to 16 px (or just `size` when it is below 16)."""
    sizes = [size]
    while sizes[-1] // 2 >= SMALLEST_LEVEL:
        sizes.append(sizes[-1] // 2)
    return sizes


def blur(images, gain=1.0):
    """The 5x5 binomial filter (x gain) over (N, C, H, W) images, edges mirrored (d c b | a b c d)."""
    taps = BINOMIAL_5 * np.float32(np.sqrt(gain))
    for axis in (2, 3):
        pad = [(0, 0)] * 4
        pad[axis] = (2, 2)
        padded = np.pad(images, pad, mode="reflect")
        length = images.shape[axis]
        images = sum(tap * np.take(padded, np.arange(k, k + length), axis=axis) for k, tap in enumerate(taps))
    return images


def pyramid_down(images):
    return blur(images)[:, :, ::2, ::2]


def pyramid_up(images):
    """Twice the size: zeros between the samples, then the filter x4 (so the mean is kept)."""
    n, c, h, w = images.shape
    spread = np.zeros((n, c, 2 * h, 2 * w), dtype=images.dtype)
    spread[:, :, ::2, ::2] = images
    return blur(spread, gain=4.0)


def laplacian_pyramid(images, levels):
    """[band at full size, ..., band at size / 2**(levels-2), low-pass residual]: they add up to `images`."""
    pyramid = [np.asarray(images, dtype=np.float32)]
    for _ in range(levels - 1):
        pyramid.append(pyramid_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyramid_up(pyramid[-1])
    return pyramid


def neighbourhoods(level, per_image, rng):
    """(N * per_image, C, 7, 7) patches around random centres (rows drawn first, then columns)."""
    n, c, h, w = level.shape
    half = NEIGHBOURHOOD // 2
    count = n * per_image
    rows = rng.randint(half, h - half, size=count)
    cols = rng.randint(half, w - half, size=count)
    offsets = np.arange(-half, half + 1)
    image = (np.arange(count) // per_image)[:, None, None, None]
    channel = np.arange(c)[None, :, None, None]
    return level[image, channel, (rows[:, None] + offsets)[:, None, :, None],
                 (cols[:, None] + offsets)[:, None, None, :]]


def normalise(patches):
    """Zero mean and unit deviation per channel over all patches; flattened to (N, C * 49)."""
    patches = patches - patches.mean(axis=(0, 2, 3), keepdims=True)
    patches = patches / patches.std(axis=(0, 2, 3), keepdims=True)
    return patches.reshape(len(patches), -1)


def descriptors(images, rng, per_image=PER_IMAGE):
    """{level size: normalised descriptors} of uint8 (N, 3, S, S) images."""
    sizes = level_sizes(images.shape[-1])
    if images.shape[-1] < NEIGHBOURHOOD:
        raise ValueError(f"SWD needs images of at least {NEIGHBOURHOOD} px, got {images.shape[-1]} px")
    parts = {size: [] for size in sizes}
    for start in range(0, len(images), CHUNK):
        pyramid = laplacian_pyramid(images[start:start + CHUNK], len(sizes))
        for size, level in zip(sizes, pyramid):
            parts[size].append(neighbourhoods(level, per_image, rng))
    return {size: normalise(np.concatenate(chunks)) for size, chunks in parts.items()}


def sliced_wasserstein(a, b, rng, repeats=REPEATS, directions=DIRECTIONS):
    """Mean over random unit directions of the 1-D Wasserstein-1 distance of the projections."""
    if a.shape != b.shape:
        raise ValueError(f"SWD compares equal numbers of descriptors, got {a.shape} and {b.shape}")
    distances = []
    for _ in range(repeats):
        units = rng.randn(a.shape[1], directions)
        units = (units / np.sqrt((units ** 2).sum(axis=0, keepdims=True))).astype(np.float32)
        projected_a = np.sort(units.T @ a.T, axis=1)   # (direction, descriptor): contiguous rows sort fast
        projected_b = np.sort(units.T @ b.T, axis=1)
        distances.append(np.abs(projected_a - projected_b).mean())
    return float(np.mean(distances))


def sliced_wasserstein_distance(real, fake, seed=0):
    """{"swd_<size>": x1e3 distance per level, "swd": their mean} of two equal-sized uint8 sets.

    Deterministic given `seed`: the neighbourhoods of each set and the directions are drawn from
    three separate streams, so the real descriptors do not depend on the fake images."""
    if real.shape != fake.shape:
        raise ValueError(f"SWD compares two sets of the same shape, got {real.shape} and {fake.shape}")
    real_descriptors = descriptors(real, np.random.RandomState([seed, 0]))
    fake_descriptors = descriptors(fake, np.random.RandomState([seed, 1]))
    directions = np.random.RandomState([seed, 2])
    result = {f"swd_{size}": SCALE * sliced_wasserstein(real_descriptors[size], fake_descriptors[size],
                                                        directions)
              for size in real_descriptors}
    result["swd"] = float(np.mean(list(result.values())))
    return result
