"""jgan.metrics: SWD, FID and KID against direct implementations, the FID Inception against a PyTorch
reference of pytorch-fid's, the feature cache, and scripts/evaluate.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import jittor as jt
from jgan.errors import ConfigError
from jgan.metrics import check_metrics, evaluate_real_vs_real, features
from jgan.metrics import fid, inception, kid, swd
from conftest import shape_image
from reference.inception_torch import FIDInception, randomize

REPO = Path(__file__).resolve().parent.parent


# ----- FID Inception ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_weights(tmp_path_factory):
    """(PyTorch reference with random weights, its state dict saved under pytorch-fid's file name)."""
    reference = randomize(FIDInception(), seed=0)
    path = tmp_path_factory.mktemp("inception") / inception.WEIGHTS_NAME
    torch.save(reference.state_dict(), path)
    return reference, path


def test_fid_inception_pool3_features_match_the_pytorch_reference_loaded_from_its_weight_file(reference_weights):
    reference, path = reference_weights
    model = inception.load_inception(path)
    images = np.random.RandomState(1).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy((images + 1) / 2)).numpy()   # pytorch-fid takes [0, 1]
    with jt.no_grad():
        got = model(jt.array(images)).numpy()
    assert got.shape == (2, inception.FEATURES)
    relative = np.abs(got - expected).max() / np.abs(expected).max()
    assert relative <= 1e-4, f"pool3 features differ by {relative:.2e} of their largest value"


def test_an_npz_of_the_same_arrays_loads_the_same_weights(reference_weights, tmp_path):
    _, path = reference_weights
    arrays = {name: tensor.numpy() for name, tensor in torch.load(path, weights_only=True).items()}
    np.savez(tmp_path / "inception.npz", **arrays)
    from_pth = inception.load_inception(path).state_dict()
    from_npz = inception.load_inception(tmp_path / "inception.npz").state_dict()
    assert all(np.array_equal(from_pth[name].numpy(), from_npz[name].numpy()) for name in from_pth)


def test_a_missing_weight_file_names_the_file_and_where_it_comes_from(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"pt_inception-2015-12-05-6726825d\.pth.*pytorch-fid's GitHub release"):
        inception.weights_path(None)
    with pytest.raises(ConfigError, match="elsewhere.pth does not exist"):
        inception.weights_path(tmp_path / "elsewhere.pth")
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "env.pth"))
    with pytest.raises(ConfigError, match="env.pth does not exist"):
        inception.weights_path(None)


def test_weights_of_another_network_are_refused(tmp_path):
    np.savez(tmp_path / "other.npz", **{"conv.weight": np.zeros((3, 3, 1, 1), np.float32)})
    with pytest.raises(ConfigError, match="not pytorch-fid's Inception weight file"):
        inception.load_inception(tmp_path / "other.npz")


# ----- FID ----------------------------------------------------------------------------------------


def test_fid_of_two_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    got = fid.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-12)
    assert fid.frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(2 ** 2 + (2 - 3) ** 2, rel=1e-12)


def test_fid_of_full_covariances_uses_the_eigenvalues_of_their_product():
    rng = np.random.RandomState(0)
    a, b = rng.randn(6, 6), rng.randn(6, 3)
    sigma1, sigma2 = a @ a.T, b @ b.T                        # sigma2 is singular (rank 3)
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvals(sigma1 @ sigma2).real, 0, None)).sum()
    expected = np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    # three zero eigenvalues: rounding of ~1e-14 in them becomes ~1e-7 after the square root
    assert fid.frechet_distance(np.zeros(6), sigma1, np.zeros(6), sigma2) == pytest.approx(expected, rel=1e-6)


def test_fid_of_samples_approaches_that_of_their_gaussians_and_is_zero_for_one_set():
    rng = np.random.RandomState(0)
    x, y = rng.randn(20000, 2), rng.randn(20000, 2) * 2 + 1
    assert fid.frechet_inception_distance(x, y) == pytest.approx(2 * 1 + 2 * (1 + 4 - 2 * 2), rel=0.05)
    assert abs(fid.frechet_inception_distance(x, x)) < 1e-9


def test_fid_refuses_covariances_that_are_far_from_positive():
    with pytest.raises(ValueError, match="imaginary part"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2))


# ----- KID ----------------------------------------------------------------------------------------


def direct_kid(real, fake, seed, subsets, subset_size):
    """Straight from the definition, with explicit sums over pairs."""
    rng = np.random.RandomState(seed)
    d = real.shape[1]

    def k(u, v):
        return (np.dot(u, v) / d + 1) ** 3

    values = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), subset_size, replace=False)]
        y = real[rng.choice(len(real), subset_size, replace=False)]
        m = subset_size
        xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        values.append(xx + yy - 2 * xy)
    return np.mean(values), np.std(values)


def test_kid_matches_the_definition():
    rng = np.random.RandomState(0)
    real, fake = rng.randn(30, 5), rng.randn(25, 5) + 0.5
    got = kid.kernel_inception_distance(real, fake, seed=3, subsets=4, subset_size=10)
    np.testing.assert_allclose(got, direct_kid(real, fake, 3, 4, 10), rtol=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.RandomState(0)
    real, same, shifted = rng.randn(400, 5), rng.randn(400, 5), rng.randn(400, 5) + 1
    apart = kid.kernel_inception_distance(real, shifted, subsets=5, subset_size=200)[0]
    alike = kid.kernel_inception_distance(real, same, subsets=5, subset_size=200)[0]
    assert apart > 0 and abs(alike) < 0.05 * apart, f"KID of one distribution {alike:.4f}, of two {apart:.4f}"


# ----- SWD ----------------------------------------------------------------------------------------


def slow_blur(image, gain=1.0):
    """One (H, W) plane through the 5x5 binomial filter, edges mirrored, pixel by pixel."""
    taps = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256 * gain
    h, w = image.shape

    def mirror(i, n):
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            out[y, x] = sum(taps[dy + 2, dx + 2] * image[mirror(y + dy, h), mirror(x + dx, w)]
                            for dy in range(-2, 3) for dx in range(-2, 3))
    return out


def slow_pyramid(image, levels):
    """Laplacian pyramid of one (H, W) plane: band = image - expand(reduce(image))."""
    bands, current = [], image.astype(np.float64)
    for _ in range(levels - 1):
        reduced = slow_blur(current)[::2, ::2]
        spread = np.zeros_like(current)
        spread[::2, ::2] = reduced
        bands.append(current - slow_blur(spread, gain=4))
        current = reduced
    return bands + [current]


def slow_descriptors(images, sizes, rng):
    """Per level: 128 patches per image at centres drawn rows first then columns, per-channel normalised."""
    planes = [[slow_pyramid(image[c], len(sizes)) for c in range(3)] for image in images]
    result = {}
    for level, size in enumerate(sizes):
        count = len(images) * swd.PER_IMAGE
        rows, cols = rng.randint(3, size - 3, count), rng.randint(3, size - 3, count)
        patches = np.zeros((count, 3, 7, 7))
        for p in range(count):
            for c in range(3):
                plane = planes[p // swd.PER_IMAGE][c][level]
                patches[p, c] = plane[rows[p] - 3:rows[p] + 4, cols[p] - 3:cols[p] + 4]
        for c in range(3):
            patches[:, c] = (patches[:, c] - patches[:, c].mean()) / patches[:, c].std()
        result[size] = patches.reshape(count, -1)
    return result


def slow_swd(real, fake, seed):
    sizes = swd.level_sizes(real.shape[-1])
    a = slow_descriptors(real, sizes, np.random.RandomState([seed, 0]))
    b = slow_descriptors(fake, sizes, np.random.RandomState([seed, 1]))
    rng = np.random.RandomState([seed, 2])
    result = {}
    for size in sizes:
        repeats = []
        for _ in range(swd.REPEATS):
            directions = rng.randn(a[size].shape[1], swd.DIRECTIONS)
            gaps = []
            for d in range(swd.DIRECTIONS):
                unit = directions[:, d] / np.linalg.norm(directions[:, d])
                gaps += [abs(p - q) for p, q in zip(sorted(a[size] @ unit), sorted(b[size] @ unit))]
            repeats.append(np.mean(gaps))
        result[f"swd_{size}"] = 1e3 * np.mean(repeats)
    result["swd"] = np.mean(list(result.values()))
    return result


def test_pyramid_levels_run_from_the_image_size_down_to_16px():
    assert swd.level_sizes(64) == [64, 32, 16]
    assert swd.level_sizes(16) == [16]
    assert swd.level_sizes(8) == [8]


def test_laplacian_bands_add_up_to_the_image():
    images = np.random.RandomState(0).randint(0, 256, (2, 3, 32, 32)).astype(np.float32)
    bands = swd.laplacian_pyramid(images, 3)
    assert [band.shape[-1] for band in bands] == [32, 16, 8]
    rebuilt = bands[-1]
    for band in bands[-2::-1]:
        rebuilt = band + swd.pyramid_up(rebuilt)
    np.testing.assert_allclose(rebuilt, images, atol=1e-3)


def test_swd_matches_a_direct_implementation_and_depends_only_on_the_seed():
    rng = np.random.RandomState(0)
    real = rng.randint(0, 256, (2, 3, 32, 32)).astype(np.uint8)
    fake = np.clip(real.astype(int) + rng.randint(-60, 60, real.shape), 0, 255).astype(np.uint8)
    got = swd.sliced_wasserstein_distance(real, fake, seed=5)
    expected = slow_swd(real, fake, seed=5)
    assert sorted(got) == sorted(expected) == ["swd", "swd_16", "swd_32"]
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-4), f"{key}: {got[key]} vs {expected[key]}"
    assert swd.sliced_wasserstein_distance(real, fake, seed=5) == got
    assert swd.sliced_wasserstein_distance(real, fake, seed=6) != got


def test_swd_between_two_halves_of_one_image_set_is_far_below_swd_against_noise():
    images = np.stack([np.asarray(shape_image(i).resize((32, 32))).transpose(2, 0, 1) for i in range(72)])
    order = np.random.RandomState(0).permutation(len(images))
    half_a, half_b = images[order[:36]], images[order[36:]]
    noise = np.random.RandomState(1).randint(0, 256, half_a.shape).astype(np.uint8)
    halves = swd.sliced_wasserstein_distance(half_a, half_b)["swd"]
    against_noise = swd.sliced_wasserstein_distance(half_a, noise)["swd"]
    assert halves < 0.3 * against_noise, f"SWD of the halves {halves:.1f}, against noise {against_noise:.1f}"


# ----- shared parts ---------------------------------------------------------------------------


def test_metric_names_are_checked():
    assert check_metrics("kid, SWD", 10) == ("swd", "kid")
    with pytest.raises(ConfigError, match="unknown metric is"):
        check_metrics("swd,is", 10)
    with pytest.raises(ConfigError, match="--n must be at least 2"):
        check_metrics("swd", 1)


def test_real_features_are_cached_per_lmdb_size_and_selection(tiny_lmdb, tmp_path, reference_weights):
    _, weights = reference_weights
    path = features.cache_path(tmp_path, tiny_lmdb, 32, np.arange(10), weights)
    assert path.parent == tmp_path and path.name.startswith("lmdb-32px-inception-n10-")
    assert path != features.cache_path(tmp_path, tiny_lmdb, 16, np.arange(10), weights)
    assert path != features.cache_path(tmp_path, tiny_lmdb, 32, np.arange(1, 11), weights)
    calls = []

    def compute():
        calls.append(1)
        return np.ones((10, 4), np.float32)

    first = features.cached_features(path, compute)
    again = features.cached_features(path, compute)
    assert len(calls) == 1 and np.array_equal(first, again)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_real_vs_real_compares_disjoint_halves_of_the_lmdb(tiny_lmdb):
    first, second = features.disjoint_halves(24, 100)
    assert len(first) == len(second) == 12 and not set(first) & set(second)
    result = evaluate_real_vs_real(tiny_lmdb, size=16, metrics="swd", n=5)
    assert result["n_real"] == result["n_fake"] == result["swd_images"] == 5
    assert set(result) >= {"swd_16", "swd"}


# ----- scripts/evaluate.py ------------------------------------------------------------------------


def run_script(script, *args, cwd, env=None):
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop(inception.WEIGHTS_ENV, None)
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=environment)


def test_fid_without_the_weight_file_is_one_sentence_and_exit_2(tiny_lmdb, tmp_path):
    result = run_script("scripts/evaluate.py", tiny_lmdb, "--real-vs-real", "--metrics", "fid", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("evaluate.py: error: FID and KID need pytorch-fid's Inception weights "
                              "pt_inception-2015-12-05-6726825d.pth")


def test_evaluate_a_trained_checkpoint_prints_swd_per_level_fid_kid_and_logs_a_json_line(
        tiny_lmdb, tmp_path, reference_weights):
    _, weights = reference_weights
    trained = run_script("train.py", tiny_lmdb, "--arch", "dcgan", "--size", "32", "--iters", 2,
                         "--batch", 4, "--name", "tiny", "--set", "model.ngf=8", "--set", "model.ndf=8",
                         "--workers", "0", "--no-progress", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "checkpoint" / "tiny"
    result = run_script("scripts/evaluate.py", tiny_lmdb, "-g", run_dir, "--metrics", "swd,fid,kid",
                        "--n", 4, "--batch", 2, "--inception", weights, "--cache-dir", tmp_path / "cache",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = dict(line.split(None, 1) for line in result.stdout.splitlines() if line and "appended" not in line)
    assert {"swd_32", "swd_16", "swd", "fid", "kid"} <= set(printed)
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and record["n_fake"] == 4 and record["size"] == 32
    assert float(printed["swd_32"]) == pytest.approx(record["swd_32"], abs=1e-4)
    assert len(list((tmp_path / "cache").glob("lmdb-32px-inception-n4-*.npz"))) == 1
