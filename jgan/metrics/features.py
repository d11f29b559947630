"""What the metrics share: the images they compare (uint8 NCHW), their Inception features, and a
cache of the features of real images.

Real images are read from the LMDB at the generator's resolution without flips. When fewer than
all of them are used, they are a fixed random subset (independent of the seed, so that the cache
stays valid); `--real-vs-real` compares two disjoint halves of one such permutation.
"""
import hashlib
import json
import os
from pathlib import Path

import jittor as jt
import numpy as np
from tqdm import tqdm

from jgan.generation import random_z
from jgan.visual import to_uint8

SUBSET_SEED = 0


def quantize(images):
    """NCHW floats in [-1, 1] -> NCHW uint8, as an image file would hold them."""
    return to_uint8(images).transpose(0, 3, 1, 2)


def generated_images(generator, n, seed, batch=64):
    """n uint8 images of `generator` for the latents random_z(n, latent_dim, seed)."""
    z = random_z(n, generator.latent_dim, seed)
    return np.concatenate([quantize(generator(jt.array(z[i:i + batch])).numpy())
                           for i in range(0, n, batch)])


def real_indices(length, n):
    """All indices when n >= length, else n of them drawn once and for all (sorted)."""
    if n >= length:
        return np.arange(length)
    return np.sort(np.random.RandomState(SUBSET_SEED).permutation(length)[:n])


def disjoint_halves(length, n):
    """Two disjoint sets of min(n, length // 2) indices each."""
    order = np.random.RandomState(SUBSET_SEED).permutation(length)
    half = min(n, length // 2)
    return np.sort(order[:half]), np.sort(order[half:2 * half])


def real_images(data, size, indices):
    """uint8 (N, 3, size, size) images of the LMDBImages `data`."""
    return np.stack([data.image(size, int(i)).transpose(2, 0, 1) for i in indices])


def inception_features(model, images, batch=16, progress=False):
    """(N, 2048) float32 pool3 features of uint8 images; the last batch is padded to the full batch
    size so that every call runs the same compiled kernels."""
    parts = []
    for start in tqdm(range(0, len(images), batch), disable=not progress, desc="inception", unit="batch"):
        chunk = images[start:start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        with jt.no_grad():
            features = model(jt.array(padded.astype(np.float32) / np.float32(127.5) - 1)).numpy()
        parts.append(features[:len(chunk)])
    return np.concatenate(parts)


def default_cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jgan" / "metrics"


def file_identity(path):
    """Resolved path, size and modification time: a file rewritten in place gets a new identity."""
    stat = os.stat(path)
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def cache_path(cache_dir, lmdb_path, size, indices, weights):
    """The cache file of the Inception features of `indices` of one LMDB at one size."""
    key = {"lmdb": file_identity(Path(lmdb_path) / "data.mdb"), "size": size, "features": "inception",
           "weights": file_identity(weights), "indices": hashlib.sha1(np.asarray(indices, np.int64)).hexdigest()}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{Path(lmdb_path).resolve().name}-{size}px-inception-n{len(indices)}-{digest}.npz"
    return Path(cache_dir or default_cache_dir()) / name


def cached_features(path, compute):
    """The features stored at `path`, or `compute()` stored there (atomically) for the next time."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as archive:
            return archive["features"]
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(temporary, features=features)
    os.replace(temporary, path)
    return features
