"""Specification of jgan.losses: values, penalties, dLoss/dW and three optimiser steps vs PyTorch.

Nets at 32 px, ngf = ndf = 8, batch 4, weights copied from the PyTorch reference; the GP draw
eps is handed to both frameworks. Tolerances are stated where they are used.
"""
import jittor as jt
import numpy as np
import pytest
import torch

from jgan.errors import ConfigError
from jgan.losses import LOSSES, Critic, build_loss, input_gradient
from jgan.models import build_networks
from parity import assert_close, copy_parameters, to_numpy
from reference import losses_torch as reference
from reference.dcgan_torch import batch_norm_sizes, torch_networks, unbiased_running_var_as_biased
from reference.optim_torch import EpsHatAdam

SIZE, NZ, WIDTH, BATCH = 32, 100, 8, 4
MODEL = {"size": SIZE, "nz": NZ, "ngf": WIDTH, "ndf": WIDTH}
PENALTIES = {"wgan-gp": "gp", "wgan-div": "div", "r1": "r1"}

# arch -> (loss, loss parameters, optimiser, lr, betas): the settings of each paper.
PAPER_SETUPS = {
    "dcgan": ("bce", {}, "adam", 2e-4, (0.5, 0.999)),
    "lsgan": ("lsgan", {}, "adam", 2e-4, (0.5, 0.999)),
    "wgan": ("wgan", {"clip": 0.01}, "rmsprop", 5e-5, None),
    "wgan-gp": ("wgan-gp", {"gp_weight": 10.0}, "adam", 1e-4, (0.0, 0.9)),
    "wganp": ("wgan-gp", {"gp_weight": 10.0}, "adam", 1e-4, (0.0, 0.9)),
    "wgan-div": ("wgan-div", {"k": 2.0, "p": 6.0}, "adam", 1e-4, (0.0, 0.9)),
}
PAPER_CASES = [(arch, setup[0], setup[1]) for arch, setup in PAPER_SETUPS.items()]
LOSS_CASES = PAPER_CASES + [
    ("wgan-gp", "wgan-gp", {"gp_weight": 10.0, "drift": 0.001}),   # StyleGAN's setting
    ("wgan-gp", "r1", {"gamma": 10.0}),
    ("wgan-gp", "r1", {"gamma": 10.0, "every": 4}),   # a lazy R1 step: the penalty weighted 4
    ("dcgan", "bce", {"real_label": 0.9}),            # one-sided label smoothing
]

# Jittor reduces to shape (1,) where torch gives (): torch scalars are reshaped to (1,).
# Tolerances (float32): loss values and penalties relative (WGAN-div's reaches 3.6e4 at init);
# gradients absolutely, at 1e-5 of the largest torch gradient of the same loss (measured <= 2.4e-6).
VALUE_ATOL, VALUE_RTOL = 1e-6, 1e-5
GRADIENT_RTOL = 1e-5
# Adam and RMSprop divide by sqrt(v): the float32 noise of a gradient element that is ~0 becomes a
# noise of its whole step (up to lr), so the weight change over 3 steps is compared per tensor:
# ||dW_jittor - dW_torch|| <= UPDATE_RTOL ||dW_torch||.
STEPS, UPDATE_RTOL = 3, 1e-3


def data(seed):
    """(real images, z for D's step, z for G's step, GP eps) as float32 arrays."""
    rng = np.random.RandomState(seed)
    real = rng.uniform(-1, 1, (BATCH, 3, SIZE, SIZE)).astype(np.float32)
    z_d, z_g = rng.randn(2, BATCH, NZ).astype(np.float32)
    eps = rng.uniform(0, 1, (BATCH, 1, 1, 1)).astype(np.float32)
    return real, z_d, z_g, eps


def paired_networks(arch):
    jt_g, jt_d = build_networks(arch, MODEL)
    th_g, th_d = torch_networks(arch, SIZE, NZ, WIDTH, WIDTH)
    copy_parameters(jt_g, th_g)
    copy_parameters(jt_d, th_d)
    return (jt_g, jt_d), (th_g, th_d)


def jittor_loss(name, params, eps):
    """build_loss(name, **params) with the GP draw fixed to eps."""
    loss = build_loss(name, **params)
    loss.draw_epsilon = lambda batch: jt.array(eps)
    return loss


def trainable(module):
    return {name: p for name, p in module.named_parameters() if not p.is_stop_grad()}


def assert_gradients_match(label, jt_loss, jt_net, th_loss, th_net):
    """dLoss/dW of every trainable parameter, atol = GRADIENT_RTOL * max |torch gradient|."""
    names, jt_params = zip(*trainable(jt_net).items())
    th_params = dict(th_net.named_parameters())
    assert set(names) == set(th_params), f"{label}: parameter sets differ"
    jt_grads = jt.grad(jt_loss, list(jt_params))
    th_grads = torch.autograd.grad(th_loss, [th_params[n] for n in names])
    scale = max(float(g.abs().max()) for g in th_grads)
    for name, jt_grad, th_grad in zip(names, jt_grads, th_grads):
        assert_close(f"{label} d/d {name}", jt_grad, th_grad, atol=GRADIENT_RTOL * scale)


# ----- values, penalties and gradients ---------------------------------------------------------
@pytest.mark.parametrize("arch,name,params", LOSS_CASES)
def test_discriminator_loss_penalty_and_gradients_match_pytorch(arch, name, params):
    (jt_g, jt_d), (th_g, th_d) = paired_networks(arch)
    real, z, _, eps = data(0)
    loss = jittor_loss(name, params, eps)
    jt_value, terms = loss.discriminator_loss(Critic.of(jt_d), jt.array(real).stop_grad(),
                                              jt_g(jt.array(z)).detach())
    th_value, th_terms = reference.discriminator_loss(
        name, th_d, torch.from_numpy(real), th_g(torch.from_numpy(z)).detach(), torch.from_numpy(eps), **params)
    assert_close(f"{name} L_D", jt_value, th_value.reshape(1), VALUE_ATOL, VALUE_RTOL)
    if name in PENALTIES:
        key = PENALTIES[name]
        assert_close(f"{name} penalty {key}", terms[key], th_terms[key].reshape(1), VALUE_ATOL, VALUE_RTOL)
    assert_gradients_match(f"{arch} {name} L_D", jt_value, jt_d, th_value, th_d)


@pytest.mark.parametrize("arch,name,params", PAPER_CASES)
def test_generator_loss_and_gradients_match_pytorch(arch, name, params):
    (jt_g, jt_d), (th_g, th_d) = paired_networks(arch)
    _, _, z, _ = data(0)
    jt_value, terms = build_loss(name, **params).generator_loss(Critic.of(jt_d), jt_g(jt.array(z)))
    th_value = reference.generator_loss(name, th_d, th_g(torch.from_numpy(z)))
    assert_close(f"{name} L_G", jt_value, th_value.reshape(1), VALUE_ATOL, VALUE_RTOL)
    assert set(terms) == {"d_fake"}
    assert_gradients_match(f"{arch} {name} L_G", jt_value, jt_g, th_value, th_g)


# ----- three optimiser steps -------------------------------------------------------------------
def jittor_optimizer(kind, params, lr, betas):
    if kind == "adam":
        return jt.optim.Adam(params, lr, eps=1e-8, betas=betas)
    return jt.optim.RMSprop(params, lr, eps=1e-8, alpha=0.99)


def torch_optimizer(kind, params, lr, betas):
    """The same update rules: RMSprop's defaults coincide with Jittor's; Adam needs EpsHatAdam."""
    if kind == "adam":
        return EpsHatAdam(params, lr, betas=betas, eps=1e-8)
    return torch.optim.RMSprop(params, lr, alpha=0.99, eps=1e-8)


def train_jittor(arch, steps):
    """`steps` iterations of (one D step, one G step) with the paper's loss and optimiser."""
    name, params, kind, lr, betas = PAPER_SETUPS[arch]
    (jt_g, jt_d), _ = paired_networks(arch)
    opt_g, opt_d = (jittor_optimizer(kind, net.parameters(), lr, betas) for net in (jt_g, jt_d))
    for step in range(steps):
        real, z_d, z_g, eps = data(step)
        loss = jittor_loss(name, params, eps)
        d_loss, _ = loss.discriminator_loss(Critic.of(jt_d), jt.array(real), jt_g(jt.array(z_d)).detach())
        opt_d.step(d_loss)
        loss.after_discriminator_step(jt_d)
        g_loss, _ = loss.generator_loss(Critic.of(jt_d), jt_g(jt.array(z_g)))
        opt_g.step(g_loss)
    return jt_g, jt_d


def train_torch(arch, steps):
    name, params, kind, lr, betas = PAPER_SETUPS[arch]
    th_g, th_d = torch_networks(arch, SIZE, NZ, WIDTH, WIDTH)
    opt_g, opt_d = (torch_optimizer(kind, net.parameters(), lr, betas) for net in (th_g, th_d))
    with batch_norm_sizes(th_g, th_d) as sizes:
        for step in range(steps):
            real, z_d, z_g, eps = (torch.from_numpy(a) for a in data(step))
            opt_d.zero_grad()
            d_loss, _ = reference.discriminator_loss(name, th_d, real, th_g(z_d).detach(), eps, **params)
            d_loss.backward()
            opt_d.step()
            if name == "wgan":
                reference.clip_weights(th_d, params["clip"])
            opt_g.zero_grad()
            reference.generator_loss(name, th_d, th_g(z_g)).backward()
            opt_g.step()
    return th_g, th_d, sizes


def relative_update_error(jt_after, th_after, before):
    """||dW_jittor - dW_torch|| / ||dW_torch|| with dW = W_after - W_before."""
    jt_update, th_update = to_numpy(jt_after) - to_numpy(before), to_numpy(th_after) - to_numpy(before)
    return float(np.linalg.norm(jt_update - th_update) / np.linalg.norm(th_update))


@pytest.mark.parametrize("arch", list(PAPER_SETUPS))
def test_three_optimiser_steps_match_pytorch(arch):
    """Weights after 3 x (D step, G step) from identical weights and data: updates within UPDATE_RTOL."""
    jt_g, jt_d = train_jittor(arch, STEPS)
    th_g, th_d, sizes = train_torch(arch, STEPS)
    initial = torch_networks(arch, SIZE, NZ, WIDTH, WIDTH)
    for label, jt_net, th_net, th_initial, bn_sizes in (("G", jt_g, th_g, initial[0], sizes[0]),
                                                        ("D", jt_d, th_d, initial[1], sizes[1])):
        jt_params, before = trainable(jt_net), dict(th_initial.named_parameters())
        for name, th_param in th_net.named_parameters():
            error = relative_update_error(jt_params[name], th_param, before[name])
            assert error <= UPDATE_RTOL, (f"{arch} {label}.{name}: the 3-step update differs by "
                                          f"{error:.2e} of its norm (> {UPDATE_RTOL:.0e})")
        for name, (jt_var, th_var) in unbiased_running_var_as_biased(jt_net, th_net, bn_sizes).items():
            assert_close(f"{arch} {label}.{name}.running_var (biased)", jt_var, th_var, atol=1e-6)


# ----- specifications --------------------------------------------------------------------------
def test_wgan_clipping_bounds_every_discriminator_parameter_by_the_clip_parameter():
    _, discriminator = build_networks("wgan", MODEL)
    running = {n: v.numpy().copy() for n, v in discriminator.state_dict().items() if "running" in n}
    build_loss("wgan", clip=0.003).after_discriminator_step(discriminator)
    for name, parameter in trainable(discriminator).items():
        assert np.abs(parameter.numpy()).max() <= np.float32(0.003), f"{name} exceeds the clip value 0.003"
    weights = trainable(discriminator)["main.3.weight"].numpy()   # BatchNorm weights ~ N(1, 0.02)
    assert np.allclose(weights, 0.003), "BatchNorm weights were not clipped to 0.003"
    for name, value in running.items():
        assert np.array_equal(discriminator.state_dict()[name].numpy(), value), f"{name} was clipped"


SCALES = np.array([0.5, 2.0, 1.0, 3.0], dtype=np.float32)


def linear_critic():
    """D(x) = <W_b, x_b> on 4 x 8 x 8 images, W_b = s_b/16 everywhere: grad_x D = W_b, ||W_b|| = s_b.

    Each channel holds a quarter of the squared norm, so a per-channel norm would give s_b/2 and
    a norm over the whole batch (sum s_b^2)^(1/2): the closed forms below tell them apart.
    """
    weights = jt.array(np.ones((BATCH, 4, 8, 8), np.float32) * SCALES[:, None, None, None] / 16)
    return Critic(lambda x: (x * weights).sum([1, 2, 3]))


def images(seed):
    return jt.array(np.random.RandomState(seed).randn(BATCH, 4, 8, 8).astype(np.float32))


def test_gradient_penalty_norm_is_per_sample_over_all_of_c_h_w():
    """GP = mean((s_b - 1)^2) for the linear critic (exact in float32)."""
    loss = jittor_loss("wgan-gp", {}, np.full((BATCH, 1, 1, 1), 0.5, np.float32))
    gp = loss.gradient_penalty(linear_critic(), images(0), images(1))
    assert_close("GP of a linear critic", gp, [np.mean((SCALES - 1) ** 2)], atol=1e-7)


def test_penalty_parameters_are_read_drift_k_p_and_gamma():
    """drift adds drift E[D(x)^2]; WGAN-div adds k E[s^p] (real and fake alike); R1 adds gamma/2 E[s^2]."""
    critic, real, fake = linear_critic(), images(0), images(1)
    eps = np.full((BATCH, 1, 1, 1), 0.5, np.float32)
    plain, _ = jittor_loss("wgan-gp", {}, eps).discriminator_loss(critic, real, fake)
    drifted, terms = jittor_loss("wgan-gp", {"drift": 0.5}, eps).discriminator_loss(critic, real, fake)
    expected_drift = np.mean(critic(real).numpy() ** 2)
    assert_close("drift term", terms["drift"], [expected_drift], atol=0, rtol=1e-6)
    assert_close("drift in L_D", drifted - plain, [0.5 * expected_drift], atol=1e-6, rtol=1e-5)
    _, terms = build_loss("wgan-div", k=3.0, p=4.0).discriminator_loss(critic, real, fake)
    assert_close("WGAN-div k E[||g||^p]", terms["div"], [3.0 * np.mean(SCALES ** 4)], atol=0, rtol=1e-6)
    _, terms = build_loss("r1", gamma=4.0).discriminator_loss(critic, real, fake)
    assert_close("R1 E[||g||^2]", terms["r1"], [np.mean(SCALES ** 2)], atol=0, rtol=1e-6)


def test_wgan_div_gradient_reaches_the_real_images_and_equals_pytorch():
    """The ports' bug: real images fed as stop_grad give a silently zero gradient; ours flows."""
    (_, jt_d), (_, th_d) = paired_networks("wgan-div")
    real, fake = data(1)[0], data(2)[0]
    _, jt_gradient = input_gradient(jt_d, jt.array(real).stop_grad())
    _, th_terms = reference.wgan_div_d(th_d, torch.from_numpy(real), torch.from_numpy(fake))
    assert float(jt_gradient.abs().max()) > 0, "the gradient w.r.t. the real images is zero"
    scale = float(th_terms["real_grad"].detach().abs().max())
    assert_close("WGAN-div grad_x D(x) on real x", jt_gradient, th_terms["real_grad"],
                 atol=GRADIENT_RTOL * scale)


def test_build_loss_names_and_bad_parameters_are_config_errors():
    assert set(LOSSES) == {"bce", "wgan", "wgan-gp", "lsgan", "wgan-div", "r1"}
    assert build_loss("wgan", clip=0.05).clip == 0.05
    assert build_loss("wgan-div").k == 2.0 and build_loss("wgan-div").p == 6.0
    with pytest.raises(ConfigError, match="bce, wgan, wgan-gp, lsgan, wgan-div, r1"):
        build_loss("hinge")
    with pytest.raises(ConfigError, match="gp_weight"):
        build_loss("wgan-gp", lambda_gp=10)


def test_default_epsilon_is_uniform_per_sample():
    eps = build_loss("wgan-gp").draw_epsilon(BATCH).numpy()
    assert eps.shape == (BATCH, 1, 1, 1) and (eps >= 0).all() and (eps <= 1).all()


def test_jittor_adam_adds_eps_before_bias_correction_and_rmsprop_matches_torch_defaults():
    """One step on w = 1 with dL/dw = g: Jittor's Adam is EpsHatAdam, not torch's stock Adam."""
    g, lr, betas, eps = 1e-3, 0.1, (0.5, 0.999), 1e-4      # eps large enough to see its placement
    results = {}
    for label, optimizer in (("jittor adam", lambda p: jt.optim.Adam(p, lr, eps=eps, betas=betas)),
                             ("jittor rmsprop", lambda p: jt.optim.RMSprop(p, lr, eps=eps))):
        w = jt.array([1.0])
        optimizer([w]).step(w * g)
        results[label] = to_numpy(w)
    for label, optimizer in (("torch adam", lambda p: torch.optim.Adam(p, lr, betas=betas, eps=eps)),
                             ("eps-hat adam", lambda p: EpsHatAdam(p, lr, betas, eps)),
                             ("torch rmsprop", lambda p: torch.optim.RMSprop(p, lr, eps=eps))):
        w = torch.ones(1, requires_grad=True)
        step = optimizer([w])
        (w * g).sum().backward()
        step.step()
        results[label] = to_numpy(w)
    assert_close("Jittor Adam vs eps-hat Adam", results["jittor adam"], results["eps-hat adam"], atol=1e-7)
    assert abs(results["jittor adam"] - results["torch adam"]).max() > 1e-2, "stock torch Adam differs"
    assert_close("Jittor RMSprop vs torch RMSprop", results["jittor rmsprop"], results["torch rmsprop"],
                 atol=1e-7)


def test_lazy_r1_adds_the_penalty_weighted_by_its_interval_only_when_asked():
    """StyleGAN2's lazy R1: every k steps, gamma/2 * k * E[||g||^2]; the other steps are the plain logistic loss."""
    critic, real, fake = linear_critic(), images(0), images(1)
    plain, plain_terms = build_loss("bce").discriminator_loss(critic, real, fake)
    lazy = build_loss("r1", gamma=4.0, every=8)
    regularised, terms = lazy.discriminator_loss(critic, real, fake, regularise=True)
    assert_close("lazy R1 term", regularised - plain, [8 * 4.0 / 2 * np.mean(SCALES ** 2)], atol=1e-5, rtol=1e-5)
    skipped, skipped_terms = lazy.discriminator_loss(critic, real, fake, regularise=False)
    assert_close("lazy R1 off-step", skipped, plain.numpy(), atol=0, rtol=0)
    assert "r1" in terms and "r1" not in skipped_terms
    assert lazy.regularise_every == 8 and build_loss("r1").regularise_every == 1
    _, gp_terms = jittor_loss("wgan-gp", {}, np.full((BATCH, 1, 1, 1), 0.5, np.float32)).discriminator_loss(
        critic, real, fake, regularise=False)
    assert "gp" not in gp_terms
    with pytest.raises(ConfigError, match="loss.every must be a whole number of steps of at least 1, got 0"):
        build_loss("r1", every=0)


def test_label_smoothing_stops_pushing_real_logits_at_the_targets_logit():
    """With target t the real term's gradient in the logit s is sigmoid(s) - t: zero at
    s = log(t / (1 - t)), pushing down above it, while plain BCE keeps pushing up."""
    t = 0.9
    optimum = np.log(t / (1 - t))
    fake = jt.array(np.full(BATCH, -3.0, np.float32))
    for offset, sign in ((-1.0, -1), (0.0, 0), (1.0, 1)):
        logits = jt.array(np.full(BATCH, optimum + offset, np.float32))
        critic = Critic(lambda images: images)
        smoothed, _ = build_loss("bce", real_label=t).discriminator_loss(critic, logits, fake)
        gradient = jt.grad(smoothed, logits).numpy()
        assert np.allclose(gradient, (1 / (1 + np.exp(-(optimum + offset))) - t) / BATCH, atol=1e-7)
        assert np.sign(np.round(gradient, 6)).tolist() == [sign] * BATCH
        plain, _ = build_loss("bce").discriminator_loss(critic, logits, fake)
        assert (jt.grad(plain, logits).numpy() < 0).all()
    with pytest.raises(ConfigError, match=r"loss.real_label must be in \(0.5, 1\], got 0.4"):
        build_loss("bce", real_label=0.4)


def test_the_loop_regularises_every_k_th_step(tiny_lmdb, tmp_path):
    import json

    from jgan.config import load_config
    from jgan.training import Trainer
    config = load_config("wgan-gp", overrides=[{"model": {"size": 16, "ngf": 4, "ndf": 4, "nz": 8},
                                                "loss": {"name": "r1", "gamma": 1.0, "every": 3},
                                                "train": {"batch": 4, "n_critic": 1, "num_workers": 0,
                                                          "n_sample": 4, "log_every": 1}}])
    Trainer(config, tiny_lmdb, tmp_path / "run", tmp_path / "s", progress=False).train(7)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "r1" in r] == [1, 4, 7]   # steps 0, 3 and 6 done before them


@pytest.mark.parametrize("has_cuda", [False, True])
def test_the_reference_losses_take_every_presets_loss_section(has_cuda):
    """scripts/bench.py trains the reference with each preset's loss section as it stands (every
    arch that learns from one image set; CycleGAN's reference has its own losses)."""
    from jgan import registry
    from jgan.config import load_config
    real, _, _, eps = data(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 1))
    fake = torch.tensor(real[::-1].copy())
    for arch in (name for name in registry.names() if len(registry.get(name).model_class().streams) == 1):
        params = dict(load_config(arch, has_cuda)["loss"])
        name = params.pop("name")
        for regularise in (True, False):
            loss, _ = reference.discriminator_loss(name, critic, torch.tensor(real), fake, torch.tensor(eps),
                                                   regularise, **params)
            assert torch.isfinite(loss), f"{arch}'s preset loss {name} {params} gave {loss}"
