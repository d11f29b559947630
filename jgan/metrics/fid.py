"""Fréchet Inception distance (Heusel et al. 2017): the Fréchet distance of two Gaussians fitted to
Inception pool3 features, ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½).

Tr((S1 S2)^½) is computed as the sum of the square roots of the eigenvalues of the symmetric
matrix S1^½ S2 S1^½ (similar to S1 S2), with numpy's eigh instead of scipy's sqrtm. The guards of
pytorch-fid carry over: a non-finite result is retried with eps added to both diagonals, and
eigenvalues below zero (an imaginary part of the square root) are dropped when they come from
rounding and refused when they are large.
"""
import warnings

import numpy as np

EPS = 1e-6
IMAGINARY_TOLERANCE = 1e-3   # pytorch-fid's bound on the imaginary part of the square root


def statistics(features):
    """(mean, covariance) of (N, D) features, in float64 (N - 1 in the covariance)."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise ValueError(f"FID needs at least two feature vectors, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def symmetric_sqrt(matrix):
    """The positive semi-definite square root of a symmetric matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2):
    """Tr((S1 S2)^½) for covariance matrices S1, S2."""
    root = symmetric_sqrt(sigma1)
    values = np.linalg.eigvalsh(root @ sigma2 @ root)
    imaginary = np.sqrt(max(-values.min(), 0.0))
    if imaginary > IMAGINARY_TOLERANCE:
        raise ValueError(f"the square root of S1 S2 has an imaginary part of {imaginary:.3g}; "
                         f"the covariances are not positive semi-definite")
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=EPS):
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"FID compares statistics of one dimension, got {mu1.shape} and {mu2.shape}")
    try:
        with np.errstate(all="ignore"):
            cross = trace_sqrt_product(sigma1, sigma2)
    except np.linalg.LinAlgError:
        cross = np.nan
    if not np.isfinite(cross):
        warnings.warn(f"FID: Tr((S1 S2)^½) is not finite; adding {eps} to the diagonal of both covariances")
        offset = np.eye(len(sigma1)) * eps
        cross = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def frechet_inception_distance(real_features, fake_features):
    return frechet_distance(*statistics(real_features), *statistics(fake_features))
