"""Specification of PGGAN (jgan.networks.pggan, jgan.models.pggan) against independent PyTorch
references: the generator of tests/reference/pggan_torch.py and StyleGAN's discriminator of
tests/reference/stylegan_torch.py (PGGAN reuses jgan's StyleGAN discriminator), with the losses of
tests/reference/losses_torch.py.

Tiny nets: widths (16, 16, 16, 8, 8) for 4..64 px, latent 16, batch 4, minibatch stddev in groups
of 2 (two groups per batch) and from-RGB activations, as in the preset. The Jittor nets get the
reference's weights, biases randomised away from zero so that every parameter shows.
Tolerances (float32 Jittor; atol + rtol * |reference|; measured max abs diffs printed by pytest -s):
  NET_ATOL 1e-4 + NET_RTOL 1e-4: G images (|values| <= ~4) and D scores against float32 PyTorch.
  VALUE_ATOL 1e-5: loss values and the gradient penalty against a float64 reference.
  GRADIENT_RTOL 5e-5: every dL/dW within GRADIENT_RTOL * max |dL/dW| of that loss [Jittor 1.2e-5 on
    the 16 px fade-in's L_D, where float32 PyTorch itself is 2.9e-4 off the float64 reference: the
    penalty's second-order terms cancel].
  WEIGHT_ATOL 5e-5: every weight of G, D and the EMA generator after three training iterations
    (Adam lr 1e-3 moves a weight by ~1e-3 per step: a wrong lr, beta or EMA decay is ~20x over;
    measured worst 1.1e-5 on one G conv weight, 6.9e-7 on D, 3.9e-7 on the EMA generator).
"""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jittor as jt
import numpy as np
import pytest
import torch
from PIL import Image

from jgan.config import load_config
from jgan.convert import rosinality_discriminator_state
from jgan.errors import ConfigError
from jgan.losses import Critic, build_loss
from jgan.models.pggan import PGGANModel
from jgan.networks.pggan import Generator, build_networks
from jgan.schedule import Phase
from jgan.training import Trainer
from parity import assert_close, copy_parameters, gradient_pairs, max_abs_diff, report_close
from reference import losses_torch as reference
from reference import pggan_torch as ref
from reference import stylegan_torch as ref_d
from reference.optim_torch import EpsHatAdam

REPO = Path(__file__).resolve().parent.parent
CHANNELS, CODE, BATCH, GROUP = (16, 16, 16, 8, 8), 16, 4, 2
STEPS, ALPHAS = range(len(CHANNELS)), (0.0, 0.5, 1.0)
NO_FUSED = 10 ** 4
NET_ATOL, NET_RTOL = 1e-4, 1e-4
VALUE_ATOL, GRADIENT_RTOL, WEIGHT_ATOL = 1e-5, 5e-5, 5e-5
LOSS = {"gp_weight": 10.0, "drift": 0.001}
LR, BETAS, EMA = 1e-3, (0.0, 0.99), 0.999
TRAINING_CHANNELS, TRAINING_STEP, TRAINING_ALPHAS = (16, 16, 8, 8), 2, (0.5, 0.55, 0.6)
PHASES = {"16 px fade-in": (2, 0.5), "32 px grown": (3, 1.0)}   # (step, alpha) on TRAINING_CHANNELS


def compare(name, jt_value, th_value, atol=NET_ATOL, rtol=NET_RTOL):
    report_close(name, jt_value, th_value, atol, rtol)


def numpy_state(module):
    return {name: tensor.detach().numpy() for name, tensor in module.state_dict().items()}


def reference_networks(channels, seed=0):
    """The float32 reference G and D (stddev groups of 2, from-RGB activations), biases non-zero."""
    torch.manual_seed(seed)
    th_g = ref.randomize(ref.Generator(CODE, channels), seed=1)
    th_d = ref_d.randomize(ref_d.Discriminator(channels, NO_FUSED, from_rgb_activate=True,
                                               stddev_group=GROUP), seed=2)
    return th_g, th_d


def generator_state(th_g):
    """The reference generator's weights (or gradients) in jgan's naming."""
    return {ref.jgan_name(name): value for name, value in numpy_state(th_g).items()}


def load_jittor(jt_g, jt_d, th_g, th_d):
    copy_parameters(jt_g, th_g, rename=ref.jgan_name)
    jt_d.load_state_dict(rosinality_discriminator_state(numpy_state(th_d)))


def paired_networks(channels):
    """((jgan G, jgan D), (reference G, D)) with the same weights."""
    th_g, th_d = reference_networks(channels)
    jt_g, jt_d = build_networks(CODE, channels, stddev_group=GROUP, from_rgb_activate=True)
    load_jittor(jt_g, jt_d, th_g, th_d)
    return (jt_g, jt_d), (th_g, th_d)


@pytest.fixture(scope="module")
def networks():
    return paired_networks(CHANNELS)


def latents(seed=0):
    return np.random.RandomState(seed).randn(BATCH, CODE).astype(np.float32)


def images(step, seed=0):
    size = 4 * 2 ** step
    return np.random.RandomState(200 + seed).uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32)


# ----- the networks at every step and alpha ---------------------------------------------------
@pytest.mark.parametrize("step", STEPS)
def test_generator_matches_the_reference_at_every_step_and_alpha(networks, step):
    (jt_g, _), (th_g, _) = networks
    z = latents()
    for alpha in ALPHAS:
        with torch.no_grad():
            expected = th_g(torch.tensor(z), step=step, alpha=alpha)
        for kind, jt_alpha in (("float", alpha), ("Var", jt.array(np.float32(alpha)))):
            image = jt_g(jt.array(z), level=step, alpha=jt_alpha)
            assert image.shape == (BATCH, 3, 4 * 2 ** step, 4 * 2 ** step)
            compare(f"G step {step} alpha {alpha} ({kind})", image, expected)


@pytest.mark.parametrize("step", STEPS)
def test_discriminator_matches_the_reference_at_every_step_and_alpha(networks, step):
    (_, jt_d), (_, th_d) = networks
    x = images(step)
    for alpha in ALPHAS:
        with torch.no_grad():
            expected = th_d(torch.tensor(x), step=step, alpha=alpha)[:, 0]
        for kind, jt_alpha in (("float", alpha), ("Var", jt.array(np.float32(alpha)))):
            compare(f"D step {step} alpha {alpha} ({kind})", jt_d(jt.array(x), level=step, alpha=jt_alpha),
                    expected)


def test_fade_in_starts_at_the_upsampled_previous_image_and_ends_at_the_new_one(networks):
    (jt_g, _), _ = networks
    z = jt.array(latents())
    previous = jt_g(z, level=1).numpy().repeat(2, axis=2).repeat(2, axis=3)
    compare("alpha 0 at 16 px vs the 8 px image upsampled", jt_g(z, level=2, alpha=jt.array(np.float32(0))),
            previous, atol=1e-6, rtol=0)
    grown = jt_g(z, level=2).numpy()
    compare("alpha Var(1) vs no fade-in", jt_g(z, level=2, alpha=jt.array(np.float32(1))), grown, atol=1e-6, rtol=0)
    assert max_abs_diff(grown, previous) > 1e-2, "the 16 px block changes the image"


def test_the_generator_checks_its_inputs(networks):
    (jt_g, _), _ = networks
    with pytest.raises(ValueError, match=r"z should have shape \(\*, 16\), got \(4, 8\)"):
        jt_g(jt.zeros((BATCH, 8)))
    with pytest.raises(ConfigError, match="level must be in 0..4"):
        jt_g(jt.array(latents()), level=5)
    with pytest.raises(ConfigError, match="channels must be a non-empty list"):
        Generator(CODE, [])


@pytest.mark.parametrize("alpha", ["var", 1.0])
def test_idle_modules_are_exactly_the_generator_weights_without_gradient(networks, alpha):
    """Training freezes idle_modules(level, alpha): none of them may get a gradient, every other
    weight must."""
    (jt_g, _), _ = networks
    alpha = jt.array(np.float32(0.5)) if alpha == "var" else alpha
    named = dict(jt_g.state_dict())
    grads = jt.grad(jt_g(jt.array(latents()), level=2, alpha=alpha).sqr().sum(), list(named.values()))
    zero = {name for name, grad in zip(named, grads) if not np.any(grad.numpy())}
    idle = {id(var) for layer in jt_g.idle_modules(2, alpha) for var in layer.parameters()}
    assert zero == {name for name, var in named.items() if id(var) in idle}
    assert zero, "level 2 of 5 leaves blocks 3 and 4 idle"


# ----- losses with their gradients ------------------------------------------------------------
def double(array):
    return torch.tensor(array, dtype=torch.float64)


def draws(step, seed):
    """Real images, the z of a D call and of a G call, and the GP interpolation eps."""
    rng = np.random.RandomState(seed)
    size = 4 * 2 ** step
    return SimpleNamespace(real=rng.uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32),
                           d_z=rng.randn(BATCH, CODE).astype(np.float32),
                           g_z=rng.randn(BATCH, CODE).astype(np.float32),
                           eps=rng.uniform(0, 1, (BATCH, 1, 1, 1)).astype(np.float32))


def assert_gradients_close(label, pairs):
    scale = max(float(np.abs(expected).max()) for _, _, expected in pairs)
    worst = max(max_abs_diff(g, expected) for _, g, expected in pairs)
    print(f"{label} dL/dW: worst max abs diff {worst:.2e}, largest |dL/dW| {scale:.2e}")
    for name, g, expected in pairs:
        assert_close(f"{label} d/d{name}", g, expected, atol=GRADIENT_RTOL * scale)


@pytest.mark.parametrize("phase", PHASES)
def test_wgan_gp_drift_terms_and_gradients_match_pytorch(phase):
    """L_D (WGAN-GP, lambda 10, drift 0.001), its penalty and every dL_D/dW; L_G and every
    dL_G/dW, against the float64 reference (alpha a jt.Var, as in training)."""
    step, alpha = PHASES[phase]
    (jt_g, jt_d), (th_g, th_d) = paired_networks(TRAINING_CHANNELS)
    th_g, th_d = th_g.double(), th_d.double()
    # The penalty's gradient jumps where a pre-activation crosses a leaky ReLU's kink: draws that put
    # one within float32 rounding of it (seeds 2 and 23 do: changing z by 1e-6 moves dL/db_from_rgb
    # by 2e-4 in either framework) compare rounding, not the model; these draws have none.
    data = draws(step, seed=10 + step)
    jt_alpha = jt.array(np.float32(alpha))
    jt_critic = Critic(lambda x: jt_d(x, level=step, alpha=jt_alpha))

    def th_critic(x):
        return th_d(x, step=step, alpha=alpha)[:, 0]

    loss = build_loss("wgan-gp", **LOSS)
    loss.draw_epsilon = lambda batch: jt.array(data.eps)
    fake = jt_g(jt.array(data.d_z), level=step, alpha=jt_alpha).detach()
    jt_d_loss, jt_terms = loss.discriminator_loss(jt_critic, jt.array(data.real), fake)
    th_fake = th_g(double(data.d_z), step=step, alpha=alpha).detach()
    th_d_loss, th_terms = reference.discriminator_loss("wgan-gp", th_critic, double(data.real), th_fake,
                                                       double(data.eps), **LOSS)
    compare(f"{phase} L_D", jt_d_loss, th_d_loss.reshape(1), atol=VALUE_ATOL, rtol=0)
    compare(f"{phase} gp", jt_terms["gp"], th_terms["gp"].reshape(1), atol=VALUE_ATOL, rtol=0)
    assert_gradients_close(f"{phase} L_D", gradient_pairs(jt_d_loss, jt_d, th_d_loss, th_d,
                                                          rosinality_discriminator_state))
    jt_g_loss, _ = loss.generator_loss(jt_critic, jt_g(jt.array(data.g_z), level=step, alpha=jt_alpha))
    th_g_loss = reference.generator_loss("wgan-gp", th_critic, th_g(double(data.g_z), step=step, alpha=alpha))
    compare(f"{phase} L_G", jt_g_loss, th_g_loss.reshape(1), atol=VALUE_ATOL, rtol=0)
    assert_gradients_close(f"{phase} L_G", gradient_pairs(jt_g_loss, jt_g, th_g_loss, th_g,
                                                          lambda grads: {ref.jgan_name(n): g for n, g in grads.items()}))


# ----- three training iterations --------------------------------------------------------------
def training_config(**train):
    return load_config("pggan", False, None, [{
        "model": {"code_dim": CODE, "channels": list(TRAINING_CHANNELS), "stddev_group": GROUP},
        "optim": {"lr_g": LR, "lr_d": LR, "betas": list(BETAS)},
        "progressive": {"init_size": 8, "max_size": 32},
        "train": {"batch": BATCH, "n_critic": 1, "ema": EMA, "num_workers": 0, **train}}])


def train_jittor(tmp_path, iteration_draws):
    """jgan's Trainer from the preset (Adam, betas, loss, EMA) with the reference's weights."""
    trainer = Trainer(training_config(), None, tmp_path / "run", tmp_path / "sample", progress=False)
    model = trainer.model
    load_jittor(model.generator, model.discriminator, *reference_networks(TRAINING_CHANNELS))
    load_jittor(model.generator_ema, model.discriminator, *reference_networks(TRAINING_CHANNELS))
    z = iter([jt.array(v) for data in iteration_draws for v in (data.d_z, data.g_z)])
    model.latents = lambda batch, context: ((next(z),), {})
    for data, alpha in zip(iteration_draws, TRAINING_ALPHAS):
        model.loss.draw_epsilon = lambda batch, eps=data.eps: jt.array(eps)
        phase = Phase(size=4 * 2 ** TRAINING_STEP, level=TRAINING_STEP, alpha=alpha, batch=BATCH, lr=LR,
                      index=1, fading=True)
        trainer.set_learning_rate(phase)
        trainer.iteration({"images": iter([jt.array(data.real)])}, phase)
    return model


def train_torch(iteration_draws):
    """rosinality's loop: D step, G step, then ema <- 0.999 ema + 0.001 G, in float64."""
    th_g, th_d = (net.double() for net in reference_networks(TRAINING_CHANNELS))
    th_ema = ref.Generator(CODE, TRAINING_CHANNELS).double()
    th_ema.load_state_dict(th_g.state_dict())
    opt_g, opt_d = EpsHatAdam(th_g.parameters(), LR, BETAS), EpsHatAdam(th_d.parameters(), LR, BETAS)
    step = TRAINING_STEP
    for data, alpha in zip(iteration_draws, TRAINING_ALPHAS):
        def critic(x, alpha=alpha):
            return th_d(x, step=step, alpha=alpha)[:, 0]

        fake = th_g(double(data.d_z), step=step, alpha=alpha).detach()
        d_loss, _ = reference.discriminator_loss("wgan-gp", critic, double(data.real), fake, double(data.eps),
                                                 **LOSS)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = reference.generator_loss("wgan-gp", critic, th_g(double(data.g_z), step=step, alpha=alpha))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        with torch.no_grad():
            for ema, param in zip(th_ema.parameters(), th_g.parameters()):
                ema.mul_(EMA).add_(param, alpha=1 - EMA)
    return th_g, th_d, th_ema


def test_three_training_iterations_match_pytorch_weight_by_weight(tmp_path):
    """Trainer.iteration x 3 in the 16 px fade-in (alpha 0.5, 0.55, 0.6): every weight of G, D and
    the EMA generator against the reference."""
    iteration_draws = [draws(TRAINING_STEP, seed=10 + i) for i in range(3)]
    model = train_jittor(tmp_path, iteration_draws)
    th_g, th_d, th_ema = train_torch(iteration_draws)
    initial_g, _ = reference_networks(TRAINING_CHANNELS)
    moved = max(max_abs_diff(generator_state(th_g)[n], v) for n, v in generator_state(initial_g).items())
    assert moved > 1e-3, f"three Adam steps move the generator (largest change {moved:.1e})"
    for label, jt_net, expected in (("G", model.generator, generator_state(th_g)),
                                    ("EMA G", model.generator_ema, generator_state(th_ema)),
                                    ("D", model.discriminator, rosinality_discriminator_state(numpy_state(th_d)))):
        jt_state = jt_net.state_dict()
        worst = max(max_abs_diff(jt_state[n], value) for n, value in expected.items())
        print(f"{label} weights after 3 iterations: worst max abs diff {worst:.2e}")
        for name, value in expected.items():
            assert_close(f"{label}.{name} after 3 iterations", jt_state[name], value, atol=WEIGHT_ATOL)


def test_a_batch_the_stddev_groups_do_not_divide_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="model.stddev_group 2 does not divide the batch of 3 images per rank "
                                          "at 8 px; use a batch divisible by 2"):
        PGGANModel(training_config(batch=3))


# ----- train.py and generate.py ---------------------------------------------------------------
def run_script(script, *args, cwd):
    result = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    return result


def test_pggan_trains_resumes_and_draws_grid_walk_progress_and_interpolation(tiny_lmdb, tmp_path):
    tiny = ["--set", "model.code_dim=16", "--set", "model.channels=[16,16,8]", "--workers", 0,
            "--no-progress", "--log-every", 1, "--ckpt-every", 4, "--sample-every", 100]
    trained = run_script("train.py", tiny_lmdb, "--arch", "pggan", "--max-size", 16, "--phase", 16,
                         "--batch", 4, "--iters", 10, "--name", "t-pg", *tiny, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    resumed = run_script("train.py", tiny_lmdb, "--arch", "pggan", "--iters", 12, "--name", "t-pg", "--resume",
                         "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0 and "at step 10" in resumed.stderr, resumed.stderr
    generated = run_script("generate.py", "-g", "checkpoint/t-pg", "--walk", "--progress", "--interpolate",
                           "--n", 16, "--nrow", 4, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    cell = 16 + 2
    for figure, size in (("samples.png", 2 + 4 * cell), ("interpolation.png", 2 + 8 * cell)):
        with Image.open(tmp_path / "results" / f"t-pg-0000012-{figure}") as image:
            assert image.size == (size, size), figure
    for gif in ("walk", "progress"):
        with Image.open(tmp_path / "results" / f"t-pg-0000012-{gif}.gif") as image:
            assert image.n_frames > 1, gif
    for flag in ("--mixing", "--noise"):
        refused = run_script("generate.py", "-g", "checkpoint/t-pg", flag, cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "needs a StyleGAN checkpoint" in refused.stderr.strip().splitlines()[-1]
