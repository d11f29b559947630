"""Evaluation of a generator against its training LMDB: SWD, FID and KID.

    from jgan.metrics import evaluate
    result = evaluate(trained_generator, "lmdb", metrics=("swd", "fid"), n=10000, inception="pt_inception.pth")
    # {"size": 32, "n_real": 3786, "n_fake": 10000, "swd_32": ..., "swd_16": ..., "swd": ..., "fid": ...}

SWD works on the images themselves; FID and KID on Inception pool3 features, of which the real
images' are cached (see features.py). FID and KID need pytorch-fid's weight file.
`append_record` (from jgan.stats) keeps a run's evaluations as JSON lines in its metrics.jsonl.
"""
import time
from dataclasses import dataclass
from pathlib import Path

from jgan.data import LMDBImages
from jgan.errors import ConfigError
from jgan.metrics import features
from jgan.metrics.fid import frechet_inception_distance
from jgan.metrics.inception import load_inception, weights_path
from jgan.metrics.kid import kernel_inception_distance
from jgan.metrics.swd import sliced_wasserstein_distance
from jgan.stats import append_record  # noqa: F401 (part of this package's interface)

METRICS = ("swd", "fid", "kid")
INCEPTION_METRICS = ("fid", "kid")


@dataclass
class Settings:
    """How to evaluate: which metrics, the seed of latents and draws, the Inception batch and
    weight file, and where real-image features are cached."""
    metrics: tuple
    seed: int = 0
    batch: int = 16
    weights: Path = None
    cache_dir: str = None
    progress: bool = False

    @property
    def inception(self):
        return bool(set(self.metrics) & set(INCEPTION_METRICS))


def check_metrics(metrics, n):
    """The requested metrics in canonical order; a ConfigError for unknown names or too small n."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    names = [name.strip().lower() for item in metrics for name in item.split(",") if name.strip()]
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise ConfigError(f"unknown metric {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(METRICS)} (comma-separated)")
    if n < 2:
        raise ConfigError(f"--n must be at least 2 images, got {n}")
    return tuple(name for name in METRICS if name in names)


def settings(metrics, n, seed, batch, inception, cache_dir, progress):
    """Checked Settings; the Inception weight file is looked for first, before any slow work."""
    metrics = check_metrics(metrics, n)
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    options = Settings(metrics, seed, batch, None, cache_dir, progress)
    if options.inception:
        options.weights = weights_path(inception)
    return options


def evaluate(generator, lmdb_path, metrics=("swd",), n=10000, seed=0, batch=16, inception=None,
             cache_dir=None, progress=False):
    """Metrics of n images of a TrainedGenerator (latents random_z(n, dim, seed)) against up to n
    real images of the LMDB at the generator's resolution."""
    options = settings(metrics, n, seed, batch, inception, cache_dir, progress)
    data = LMDBImages(lmdb_path)
    fake = features.generated_images(generator, n, seed)
    size = fake.shape[-1]
    data.check_size(size)
    return compare(data, size, features.real_indices(data.length, n), fake, options)


def evaluate_real_vs_real(lmdb_path, size=None, metrics=("swd",), n=10000, seed=0, batch=16,
                          inception=None, cache_dir=None, progress=False):
    """The same metrics between two disjoint halves of the LMDB (up to n images each): the floor a
    generator can reach."""
    options = settings(metrics, n, seed, batch, inception, cache_dir, progress)
    data = LMDBImages(lmdb_path)
    size = size or max(data.sizes)
    data.check_size(size)
    if data.length < 4:
        raise ConfigError(f"{lmdb_path} holds {data.length} images; comparing two halves needs at least 4")
    first, second = features.disjoint_halves(data.length, n)
    return compare(data, size, first, features.real_images(data, size, second), options, fake_indices=second)


def compare(data, size, indices, fake, options, fake_indices=None):
    """Metrics of the uint8 images `fake` against the real images `indices` of `data`; features of
    real images (the `indices`, and `fake_indices` when the fakes are real too) are cached."""
    result = {"size": size, "n_real": len(indices), "n_fake": len(fake)}
    if "swd" in options.metrics:
        started = time.time()
        real = features.real_images(data, size, indices)
        count = min(len(real), len(fake))
        result.update(sliced_wasserstein_distance(real[:count], fake[:count], options.seed))
        result["swd_images"] = count
        result["swd_seconds"] = round(time.time() - started, 2)
    if options.inception:
        started = time.time()
        model = load_inception(options.weights)

        def features_of(images):
            return features.inception_features(model, images, options.batch, options.progress)

        def real_features(subset):
            path = features.cache_path(options.cache_dir, data.path, size, subset, options.weights)
            return features.cached_features(path, lambda: features_of(features.real_images(data, size, subset)))

        reals = real_features(indices)
        fakes = real_features(fake_indices) if fake_indices is not None else features_of(fake)
        if "fid" in options.metrics:
            result["fid"] = frechet_inception_distance(reals, fakes)
        if "kid" in options.metrics:
            result["kid"], result["kid_std"] = kernel_inception_distance(reals, fakes, seed=options.seed)
        result["inception_seconds"] = round(time.time() - started, 2)
    return result
