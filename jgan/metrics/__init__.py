"""Evaluation of a generator against its training LMDB: SWD, FID and KID.

    from jgan.metrics import evaluate
    result = evaluate(trained_generator, "lmdb", metrics=("swd", "fid"), n=10000, inception="pt_inception.pth")
    # {"size": 32, "n_real": 3786, "n_fake": 10000, "swd_32": ..., "swd_16": ..., "swd": ..., "fid": ...}

SWD works on the images themselves; FID and KID on Inception pool3 features, of which the real
images' are cached (see features.py). FID and KID need pytorch-fid's weight file.
"""
import time

from jgan.data import LMDBImages
from jgan.errors import ConfigError
from jgan.metrics import features
from jgan.metrics.fid import frechet_inception_distance
from jgan.metrics.inception import load_inception, weights_path
from jgan.metrics.kid import kernel_inception_distance
from jgan.metrics.swd import sliced_wasserstein_distance

METRICS = ("swd", "fid", "kid")
INCEPTION_METRICS = ("fid", "kid")


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


def evaluate(generator, lmdb_path, metrics=("swd",), n=10000, seed=0, batch=16, inception=None,
             cache_dir=None, progress=False):
    """Metrics of n images of a TrainedGenerator against (up to) n real images at its resolution."""
    metrics = check_metrics(metrics, n)
    weights = weights_path(inception) if set(metrics) & set(INCEPTION_METRICS) else None
    data = LMDBImages(lmdb_path)
    fake = features.generated_images(generator, n, seed)
    size = fake.shape[-1]
    data.check_size(size)
    indices = features.real_indices(data.length, n)
    return compare(data, size, indices, fake, None, metrics, seed, batch, weights, cache_dir, progress)


def evaluate_real_vs_real(lmdb_path, size=None, metrics=("swd",), n=10000, seed=0, batch=16,
                          inception=None, cache_dir=None, progress=False):
    """The same metrics between two disjoint halves of the LMDB: the floor a generator can reach."""
    metrics = check_metrics(metrics, n)
    weights = weights_path(inception) if set(metrics) & set(INCEPTION_METRICS) else None
    data = LMDBImages(lmdb_path)
    size = size or max(data.sizes)
    data.check_size(size)
    if data.length < 4:
        raise ConfigError(f"{lmdb_path} holds {data.length} images; comparing two halves needs at least 4")
    first, second = features.disjoint_halves(data.length, n)
    fake = features.real_images(data, size, second)
    return compare(data, size, first, fake, second, metrics, seed, batch, weights, cache_dir, progress)


def compare(data, size, indices, fake, fake_indices, metrics, seed, batch, weights, cache_dir, progress):
    """Metrics of the uint8 images `fake` against the real images `indices` of `data`; features of
    real images (the `indices`, and `fake_indices` when the fakes are real too) are cached."""
    result = {"size": size, "n_real": len(indices), "n_fake": len(fake)}
    if "swd" in metrics:
        started = time.time()
        real = features.real_images(data, size, indices)
        count = min(len(real), len(fake))
        result.update(sliced_wasserstein_distance(real[:count], fake[:count], seed))
        result["swd_images"] = count
        result["swd_seconds"] = round(time.time() - started, 2)
    if set(metrics) & set(INCEPTION_METRICS):
        started = time.time()
        model = load_inception(weights)

        def features_of(chosen):
            def compute():
                return features.inception_features(model, features.real_images(data, size, chosen), batch, progress)
            return features.cached_features(features.cache_path(cache_dir, data.path, size, chosen, weights), compute)

        real_features = features_of(indices)
        fake_features = (features_of(fake_indices) if fake_indices is not None
                         else features.inception_features(model, fake, batch, progress))
        if "fid" in metrics:
            result["fid"] = frechet_inception_distance(real_features, fake_features)
        if "kid" in metrics:
            result["kid"], result["kid_std"] = kernel_inception_distance(real_features, fake_features, seed=seed)
        result["inception_seconds"] = round(time.time() - started, 2)
    return result
