"""StyleGAN training against PyTorch: both losses with their penalties and dL/dW, and three full
training iterations of jgan's Trainer, from identical weights and data.

The reference is tests/reference/stylegan_torch.py (rosinality's layout) with the losses of
tests/reference/losses_torch.py, run in float64 so that the differences measured are Jittor's
float32 error (float32 PyTorch is itself the less accurate side on the second-order terms, see
test_networks_stylegan.py). Tiny nets: widths (16, 16, 8, 8) for 4..32 px, code 16, 2 mapping
layers, batch 4, fused up/downsampling from 16 px, so the 16 px fade-in (step 2, alpha 0.5) and the
fully grown 32 px step (step 3, alpha 1) both differentiate twice through Blur and the fused convs.
z, the noise maps, the GP eps and the real images are drawn here and given to both frameworks.

The mapping network: jgan stores its weights / lr_mlp and multiplies by lr_mlp in the forward
pass, so one Adam (lr, eps) over all of G updates the rosinality-stored mapping weights as torch
Adam with lr * lr_mlp and eps / lr_mlp in their own parameter group (m and sqrt(v) scale by lr_mlp).

Tolerances (absolute, float32 Jittor vs float64 reference; measured max abs diffs in brackets,
printed by pytest -s):
  VALUE_ATOL 1e-5: loss values and penalties, |values| <= ~8 [L_D, L_G 9e-7, GP 2e-8, R1 7e-9].
  GRADIENT_RTOL 1e-5: every dL/dW within GRADIENT_RTOL * max |dL/dW| of that loss (~1)
    [<= 6.9e-7 for both losses, L_D and L_G, both phases].
  WEIGHT_ATOL 2e-4 + STORAGE_RTOL |W|, weights after 3 iterations [wgan-gp 6.6e-7; r1 G 2.6e-6,
    r1 D 8.9e-5]. R1's second-iteration gradient has near-zero elements (3.5e-6 on a max of 1e-2)
    that float32 gets ~20% wrong through the second-order cancellations, and Adam divides by the
    per-element RMS, so that becomes ~0.1 lr: float32 PyTorch is off from float64 by the same
    8.9e-5 on the same elements. A wrong learning rate or mapping multiplier is off by ~lr = 1e-3.
  STORAGE_RTOL (4 float32 roundings of W): jgan stores the mapping weights / lr_mlp (|W| up to
    ~300, where the float32 spacing is 3e-5), which the float64 reference does not round [3e-5].
"""
from types import SimpleNamespace

import jittor as jt
import numpy as np
import pytest
import torch

from jgan.config import load_config
from jgan.convert import rosinality_discriminator_state, rosinality_generator_state
from jgan.losses import Critic, build_loss
from jgan.networks.stylegan import Discriminator, StyledGenerator
from jgan.schedule import Phase
from jgan.models.stylegan import NO_MIXING
from jgan.training import Trainer
from parity import assert_close, gradient_pairs, max_abs_diff, to_numpy
from reference import losses_torch as reference
from reference import stylegan_torch as ref
from reference.optim_torch import EpsHatAdam

CHANNELS, CODE, N_MLP, FUSED_FROM, LR_MLP, BATCH = (16, 16, 8, 8), 16, 2, 16, 0.01, 4
LOSSES = {"wgan-gp": {"gp_weight": 10.0, "drift": 0.001},   # rosinality's default
          "r1": {"gamma": 10.0}}
LAZY = {"r1": {"every": 2}}   # the training test's R1 falls on its first and third step, weighted 2
PENALTY = {"wgan-gp": "gp", "r1": "r1"}
PHASES = {"16 px fade-in": (2, 0.5), "32 px grown": (3, 1.0)}   # (step, alpha)
LR, BETAS, ITERATIONS = 1e-3, (0.0, 0.99), 3
TRAINING_STEP, TRAINING_ALPHAS, CROSSOVERS = 2, (0.5, 0.55, 0.6), (1, 2, NO_MIXING)

VALUE_ATOL = 1e-5
GRADIENT_RTOL = 1e-5
WEIGHT_ATOL = 2e-4
STORAGE_RTOL = 4 * float(np.finfo(np.float32).eps)


def report(name, jt_value, th_value):
    """Print the max abs diff (pytest -s) and return it."""
    diff = max_abs_diff(jt_value, th_value)
    print(f"{name}: max abs diff {diff:.2e} (max abs value {np.abs(to_numpy(th_value)).max():.2e})")
    return diff


def numpy_state(module):
    return {name: tensor.detach().numpy() for name, tensor in module.state_dict().items()}


def torch_networks():
    """The float32 reference G and D with every weight, bias and noise weight non-zero."""
    torch.manual_seed(0)
    th_g = ref.randomize(ref.StyledGenerator(CODE, N_MLP, CHANNELS, FUSED_FROM), seed=1)
    th_d = ref.randomize(ref.Discriminator(CHANNELS, FUSED_FROM), seed=2)
    return th_g, th_d


def load_jittor(jt_g, jt_d, th_g, th_d):
    jt_g.load_state_dict(rosinality_generator_state(numpy_state(th_g), lr_mlp=LR_MLP))
    jt_d.load_state_dict(rosinality_discriminator_state(numpy_state(th_d)))


def paired_networks():
    """((jgan G, jgan D), (float64 reference G, D)) with the same weights."""
    th_g, th_d = torch_networks()
    jt_g = StyledGenerator(CODE, N_MLP, CHANNELS, FUSED_FROM, lr_mlp=LR_MLP)
    jt_d = Discriminator(CHANNELS, FUSED_FROM)
    load_jittor(jt_g, jt_d, th_g, th_d)
    return (jt_g, jt_d), (th_g.double(), th_d.double())


def draws(step, seed):
    """Real images, the (z, z2) pairs and per-layer noise of a D call and a G call, and GP eps."""
    rng = np.random.RandomState(seed)
    size = 4 * 2 ** step

    def generator_input():
        z = rng.randn(2, BATCH, CODE).astype(np.float32)
        noise = [rng.randn(BATCH, 1, 4 * 2 ** i, 4 * 2 ** i).astype(np.float32)
                 for i in range(step + 1) for _ in range(2)]
        return list(z), noise

    return SimpleNamespace(real=rng.uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32),
                           d_input=generator_input(), g_input=generator_input(),
                           eps=rng.uniform(0, 1, (BATCH, 1, 1, 1)).astype(np.float32))


def double(array):
    return torch.tensor(array, dtype=torch.float64)


def jittor_fake(jt_g, generator_input, step, alpha, crossover=None):
    z, noise = generator_input
    if crossover is None:
        return jt_g(jt.array(z[0]), noise=[jt.array(n) for n in noise], level=step, alpha=alpha)
    return jt_g([jt.array(v) for v in z], noise=[jt.array(n) for n in noise], level=step,
                alpha=alpha, crossover=jt.array(np.int32(crossover)))


def torch_fake(th_g, generator_input, step, alpha, crossover=None):
    z, noise = generator_input
    pairs = [(double(a), double(b)) for a, b in zip(noise[::2], noise[1::2])]
    if crossover is None:
        return th_g(double(z[0]), pairs, step=step, alpha=alpha)
    return th_g([double(v) for v in z], pairs, step=step, alpha=alpha, crossover=crossover)


def jittor_loss(name, eps):
    """jgan's loss with the GP draw fixed to eps."""
    loss = build_loss(name, **LOSSES[name])
    loss.draw_epsilon = lambda batch: jt.array(eps)
    return loss


def generator_gradients(grads):
    """rosinality G gradients in jgan's naming: a mapping weight stored / lr_mlp has gradient * lr_mlp."""
    state = rosinality_generator_state(grads, lr_mlp=1.0)
    return {n: g * LR_MLP if n.startswith("style.") else g for n, g in state.items()}


def assert_gradients_close(label, pairs):
    scale = max(float(np.abs(expected).max()) for _, _, expected in pairs)
    worst = max(report(f"{label} d/d{name}", g, expected) for name, g, expected in pairs)
    print(f"{label} dL/dW: worst max abs diff {worst:.2e}, largest |dL/dW| {scale:.2e}")
    for name, g, expected in pairs:
        assert_close(f"{label} d/d{name}", g, expected, atol=GRADIENT_RTOL * scale)


# ----- losses, penalties and dL/dW ------------------------------------------------------------
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", LOSSES)
def test_losses_penalties_and_gradients_match_pytorch(name, phase):
    """L_D, its penalty and every dL_D/dW; L_G and every dL_G/dW (alpha a jt.Var, as in training)."""
    step, alpha = PHASES[phase]
    (jt_g, jt_d), (th_g, th_d) = paired_networks()
    data = draws(step, seed=step)
    jt_alpha = jt.array(np.float32(alpha))

    jt_critic = Critic(lambda images: jt_d(images, level=step, alpha=jt_alpha))

    def th_critic(images):
        return th_d(images, step=step, alpha=alpha)

    loss = jittor_loss(name, data.eps)
    fake = jittor_fake(jt_g, data.d_input, step, jt_alpha).detach()
    jt_d_loss, jt_terms = loss.discriminator_loss(jt_critic, jt.array(data.real), fake)
    th_d_loss, th_terms = reference.discriminator_loss(
        name, th_critic, double(data.real), torch_fake(th_g, data.d_input, step, alpha).detach(),
        double(data.eps), **LOSSES[name])
    label = f"{name} {phase}"
    report(f"{label} L_D", jt_d_loss, th_d_loss.reshape(1))
    assert_close(f"{label} L_D", jt_d_loss, th_d_loss.reshape(1), atol=VALUE_ATOL)
    key = PENALTY[name]
    report(f"{label} {key}", jt_terms[key], th_terms[key].reshape(1))
    assert_close(f"{label} {key}", jt_terms[key], th_terms[key].reshape(1), atol=VALUE_ATOL)
    assert_gradients_close(f"{label} L_D", gradient_pairs(jt_d_loss, jt_d, th_d_loss, th_d,
                                                          rosinality_discriminator_state))

    jt_g_loss, _ = loss.generator_loss(jt_critic, jittor_fake(jt_g, data.g_input, step, jt_alpha))
    th_g_loss = reference.generator_loss(name, th_critic, torch_fake(th_g, data.g_input, step, alpha))
    report(f"{label} L_G", jt_g_loss, th_g_loss.reshape(1))
    assert_close(f"{label} L_G", jt_g_loss, th_g_loss.reshape(1), atol=VALUE_ATOL)
    assert_gradients_close(f"{label} L_G", gradient_pairs(jt_g_loss, jt_g, th_g_loss, th_g,
                                                          generator_gradients))


# ----- three training iterations --------------------------------------------------------------
def jittor_trainer(name, tmp_path, iteration_draws):
    """jgan's Trainer (Adam, betas and loss from the configuration) with the reference's weights;
    its generator calls take the z pairs, noise and crossovers of `iteration_draws` in order."""
    config = load_config("stylegan", False, None, [{
        "model": {"code_dim": CODE, "n_mlp": N_MLP, "channels": list(CHANNELS), "fused_from": FUSED_FROM},
        "loss": {"name": name, **LOSSES[name], **LAZY.get(name, {})},
        "optim": {"lr_g": LR, "lr_d": LR, "betas": list(BETAS)},
        "progressive": {"init_size": 8, "max_size": 4 * 2 ** len(CHANNELS[1:]), "mixing": 0.0},
        "train": {"batch": BATCH, "n_critic": 1, "ema": 0.0, "num_workers": 0}}])
    trainer = Trainer(config, None, tmp_path / "run", tmp_path / "sample", progress=False)
    load_jittor(trainer.model.generator, trainer.model.discriminator, *torch_networks())
    calls = iter([(generator_input, crossover) for data, crossover in iteration_draws
                  for generator_input in (data.d_input, data.g_input)])

    def generate(generator, batch, context, inputs):
        generator_input, crossover = next(calls)
        return jittor_fake(generator, generator_input, context.phase.level, inputs["alpha"], crossover)

    trainer.model.generate = generate
    return trainer


def train_jittor(name, tmp_path, iteration_draws, alphas):
    trainer = jittor_trainer(name, tmp_path, iteration_draws)
    for step, ((data, _), alpha) in enumerate(zip(iteration_draws, alphas)):
        trainer.step = step
        trainer.model.loss.draw_epsilon = lambda batch, eps=data.eps: jt.array(eps)
        phase = Phase(size=4 * 2 ** TRAINING_STEP, level=TRAINING_STEP, alpha=alpha, batch=BATCH,
                      lr=LR, index=0, fading=True)
        trainer.set_learning_rate(phase)
        trainer.iteration({"images": iter([jt.array(data.real)])}, phase)
    return trainer.model.generator, trainer.model.discriminator


def train_torch(name, iteration_draws, alphas):
    """rosinality's loop: Adam betas (0, 0.99), the mapping network in its own group (see above)."""
    th_g, th_d = (net.double() for net in torch_networks())
    mapping = list(th_g.style.parameters())
    synthesis = list(th_g.generator.parameters())
    opt_g = EpsHatAdam([{"params": synthesis},
                        {"params": mapping, "lr": LR * LR_MLP, "eps": 1e-8 / LR_MLP}], LR, BETAS)
    opt_d = EpsHatAdam(th_d.parameters(), LR, BETAS)
    step, every = TRAINING_STEP, LAZY.get(name, {}).get("every", 1)
    for index, ((data, crossover), alpha) in enumerate(zip(iteration_draws, alphas)):
        def critic(images, alpha=alpha):
            return th_d(images, step=step, alpha=alpha)

        fake = torch_fake(th_g, data.d_input, step, alpha, crossover).detach()
        d_loss, _ = reference.discriminator_loss(name, critic, double(data.real), fake, double(data.eps),
                                                 index % every == 0, **LOSSES[name], **LAZY.get(name, {}))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = reference.generator_loss(name, critic, torch_fake(th_g, data.g_input, step, alpha,
                                                                   crossover))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    return th_g, th_d


@pytest.mark.parametrize("name", LOSSES)
def test_three_training_iterations_match_pytorch(name, tmp_path):
    """Trainer.iteration x 3 (D step, G step) in the 16 px fade-in with alpha 0.5, 0.55, 0.6 and
    style mixing at crossovers 1, 2 and none, R1 lazily on the first and third: every weight of G and
    D against the reference."""
    iteration_draws = [(draws(TRAINING_STEP, seed=10 + i), c) for i, c in enumerate(CROSSOVERS)]
    jt_g, jt_d = train_jittor(name, tmp_path, iteration_draws, TRAINING_ALPHAS)
    th_g, th_d = train_torch(name, iteration_draws, TRAINING_ALPHAS)
    initial_g, initial_d = torch_networks()
    for label, jt_net, after, before in (
            ("G", jt_g, rosinality_generator_state(numpy_state(th_g), lr_mlp=LR_MLP),
             rosinality_generator_state(numpy_state(initial_g), lr_mlp=LR_MLP)),
            ("D", jt_d, rosinality_discriminator_state(numpy_state(th_d)),
             rosinality_discriminator_state(numpy_state(initial_d)))):
        jt_state = jt_net.state_dict()
        diffs = {n: max_abs_diff(jt_state[n], value) for n, value in after.items()}
        for n, value in after.items():
            print(f"{name} {label}.{n} after {ITERATIONS} iterations: max abs diff {diffs[n]:.2e} "
                  f"(max |W| {np.abs(value).max():.2e}, max |W_3 - W_0| "
                  f"{np.abs(value - before[n]).max():.2e})")
        print(f"{name} {label} weights after {ITERATIONS} iterations: worst max abs diff "
              f"{max(diffs.values()):.2e}")
        for n, value in after.items():
            assert_close(f"{name} {label}.{n} after {ITERATIONS} iterations", jt_state[n], value,
                         atol=WEIGHT_ATOL, rtol=STORAGE_RTOL)
