"""Kernel Inception distance (Bińkowski et al. 2018): the unbiased estimate of the squared MMD
between Inception features under the cubic kernel k(x, y) = (x·y / d + 1)³, averaged over random
subsets (100 of 1000 features by default, fewer when fewer features are given)."""
import numpy as np

SUBSETS = 100
SUBSET_SIZE = 1000


def polynomial_kernel(x, y):
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x, y):
    """MMD² with the diagonal terms k(x_i, x_i) left out of the within-set means."""
    m = len(x)
    within_x, within_y = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within = (within_x.sum() - np.trace(within_x) + within_y.sum() - np.trace(within_y)) / (m * (m - 1))
    return float(within - 2 * polynomial_kernel(x, y).mean())


def kernel_inception_distance(real_features, fake_features, seed=0, subsets=SUBSETS, subset_size=SUBSET_SIZE):
    """(mean, standard deviation) of the MMD² over `subsets` random subsets of each set."""
    real = np.asarray(real_features, dtype=np.float64)
    fake = np.asarray(fake_features, dtype=np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least two features per set, got {len(real)} and {len(fake)}")
    rng = np.random.RandomState(seed)
    values = [mmd2_unbiased(fake[rng.choice(len(fake), size, replace=False)],
                            real[rng.choice(len(real), size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))
