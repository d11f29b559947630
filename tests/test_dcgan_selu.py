"""Specification of the DCGAN family's SELU variant (model.activation: selu, as "Deep learning with
cats" trains DCGAN): SELU replaces every normalisation and (leaky) ReLU of both nets, the conv
weights are LeCun-normal, and the nets match an independent PyTorch reference
(tests/reference/dcgan_torch.py, nn.SELU) at 64 and 128 px.

Tolerances (float32): images and logits atol 1e-5 + rtol 1e-5 (measured <= 2e-6); every dL/dW
within 1e-5 of the largest |dL/dW| of that loss; the weight change of each tensor after three
training steps, against a float64 reference, within UPDATE_RTOL 1e-3 of its norm (measured <= 3.1e-4,
on the D's second conv, where float32 PyTorch is itself 7.8e-4 off): Adam divides by sqrt(v), so the
float32 noise of a near-zero gradient element becomes noise of its whole step (tests/test_losses.py).
"""
import math

import jittor as jt
import numpy as np
import pytest
import torch

from jgan.config import load_config
from jgan.errors import ConfigError
from jgan.models import build_networks
from jgan.models.dcgan import DCGANModel
from jgan.networks.dcgan import SELU
from jgan.training import Trainer
from jgan.schedule import Phase
from parity import assert_close, copy_parameters, max_abs_diff, to_numpy
from reference import losses_torch as reference
from reference.dcgan_torch import torch_selu_networks
from reference.optim_torch import EpsHatAdam

NZ, WIDTH, BATCH = 16, 8, 4
OUTPUT_ATOL, OUTPUT_RTOL, GRADIENT_RTOL, UPDATE_RTOL = 1e-5, 1e-5, 1e-5, 1e-3


def selu_nets(arch, size, **model):
    return build_networks(arch, {"size": size, "nz": NZ, "ngf": WIDTH, "ndf": WIDTH, "activation": "selu",
                                 **model})


def paired_networks(arch, size, upsample="transposed"):
    jt_g, jt_d = selu_nets(arch, size)
    th_g, th_d = torch_selu_networks(size, NZ, WIDTH, WIDTH, upsample)
    copy_parameters(jt_g, th_g)
    copy_parameters(jt_d, th_d)
    return (jt_g, jt_d), (th_g, th_d)


def test_selu_matches_torch_in_value_and_gradient_and_stays_finite_for_large_inputs():
    x = np.array([-80.0, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.7, 4.0, 100.0, 500.0], np.float32)
    jt_x = jt.array(x)
    y = SELU()(jt_x)
    th_x = torch.tensor(x, requires_grad=True)
    th_y = torch.nn.functional.selu(th_x)
    assert_close("SELU(x)", y, th_y, atol=1e-6, rtol=1e-6)
    grad = jt.grad(y.sum(), jt_x)
    th_y.sum().backward()
    assert np.isfinite(grad.numpy()).all(), "e^x of a large positive x must not reach the gradient"
    assert_close("dSELU/dx", grad, th_x.grad, atol=1e-6, rtol=1e-6)


def test_selu_nets_have_no_norm_no_bias_and_lecun_normal_weights():
    """64 px, the paper's widths: weights ~ N(0, 1/n), n = inputs per output (nz for the 1x1
    latent; in x 2 x 2 for a stride-2 4x4 transposed conv; in x 4 x 4 for a 4x4 conv)."""
    generator, discriminator = build_networks("dcgan", {"size": 64, "activation": "selu"})
    expected = {"G": [100, 512 * 4, 256 * 4, 128 * 4, 64 * 4], "D": [3 * 16, 64 * 16, 128 * 16, 256 * 16, 512 * 16]}
    for label, net in (("G", generator), ("D", discriminator)):
        state = net.state_dict()
        assert not [n for n in state if "running" in n or n.endswith("bias") or state[n].ndim == 1], label
        assert sum(isinstance(m, SELU) for m in net.modules()) == 4, f"{label}: SELU after each hidden conv"
        weights = [v.numpy() for v in state.values() if v.ndim == 4]
        for n, weight in zip(expected[label], weights):
            std, count = 1 / math.sqrt(n), weight.size   # 5 standard errors of the estimates:
            assert abs(weight.mean()) < 5 * std / math.sqrt(count), f"{label} conv with fan-in {n}: mean"
            assert abs(weight.std() / std - 1) < 5 / math.sqrt(2 * count), (
                f"{label} conv with fan-in {n}: std {weight.std():.4f}, LeCun normal {std:.4f}")


def test_lecun_normal_selu_generator_keeps_unit_activations():
    """Self-normalisation at initialisation: every SELU layer of the 64 px generator outputs mean
    ~0 and variance ~1 for z ~ N(0, 1) (a He or DCGAN N(0, 0.02) init gives far from 1)."""
    generator, _ = build_networks("dcgan", {"size": 64, "activation": "selu"})
    x = jt.array(np.random.RandomState(0).randn(64, 100, 1, 1).astype(np.float32))
    for layer in generator.main:
        x = layer(x)
        if isinstance(layer, SELU):
            values = x.numpy()
            assert abs(values.mean()) < 0.2 and 0.6 < values.var() < 1.4, (
                f"{x.shape}: mean {values.mean():.3f}, variance {values.var():.3f}")


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("arch,upsample", [("dcgan", "transposed"), ("wganp", "resize")])
def test_selu_nets_and_their_gradients_match_pytorch(arch, upsample, size):
    (jt_g, jt_d), (th_g, th_d) = paired_networks(arch, size, upsample)
    rng = np.random.RandomState(size)
    z = rng.randn(BATCH, NZ).astype(np.float32)
    x = rng.uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32)
    jt_images, th_images = jt_g(jt.array(z)), th_g(torch.tensor(z))
    jt_scores, th_scores = jt_d(jt.array(x)), th_d(torch.tensor(x))
    print(f"{arch} {size} px: G max abs diff {max_abs_diff(jt_images, th_images):.1e}, "
          f"D {max_abs_diff(jt_scores, th_scores):.1e}")
    assert_close(f"{arch} SELU G(z) at {size} px", jt_images, th_images, OUTPUT_ATOL, OUTPUT_RTOL)
    assert_close(f"{arch} SELU D(x) at {size} px", jt_scores, th_scores, OUTPUT_ATOL, OUTPUT_RTOL)
    weight = rng.randn(BATCH, 3, size, size).astype(np.float32)
    for label, jt_net, jt_loss, th_net, th_loss in (
            ("G", jt_g, (jt_images * jt.array(weight)).sum(), th_g, (th_images * torch.tensor(weight)).sum()),
            ("D", jt_d, jt_scores.sqr().sum(), th_d, (th_scores ** 2).sum())):
        names = sorted(jt_net.state_dict())
        jt_grads = jt.grad(jt_loss, [jt_net.state_dict()[n] for n in names])
        th_params = dict(th_net.named_parameters())
        th_grads = dict(zip(th_params, torch.autograd.grad(th_loss, list(th_params.values()))))
        scale = max(float(g.abs().max()) for g in th_grads.values())
        for name, grad in zip(names, jt_grads):
            assert_close(f"{arch} SELU {label} d/d{name} at {size} px", grad, th_grads[name],
                         atol=GRADIENT_RTOL * scale)


# ----- three training steps -------------------------------------------------------------------
def double(array):
    return torch.tensor(array, dtype=torch.float64)


def draws(seed, size):
    rng = np.random.RandomState(seed)
    return (rng.uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32),
            rng.randn(BATCH, NZ).astype(np.float32), rng.randn(BATCH, NZ).astype(np.float32))


def test_three_training_steps_of_a_selu_dcgan_match_pytorch(tmp_path):
    """jgan's Trainer with the dcgan preset (BCE, Adam 2e-4, betas (0.5, 0.999)) and
    `model.activation: selu` at 64 px, against the reference's loop in float64, from identical
    weights."""
    size, steps = 64, [draws(seed, 64) for seed in range(3)]
    config = load_config("dcgan", False, None, [{
        "model": {"size": size, "nz": NZ, "ngf": WIDTH, "ndf": WIDTH, "activation": "selu"},
        "train": {"batch": BATCH, "num_workers": 0}}])
    trainer = Trainer(config, None, tmp_path / "run", tmp_path / "sample", progress=False)
    model = trainer.model
    th_g, th_d = torch_selu_networks(size, NZ, WIDTH, WIDTH)
    copy_parameters(model.generator, th_g)
    copy_parameters(model.discriminator, th_d)
    before = {label: {n: p.detach().numpy().copy() for n, p in net.named_parameters()}
              for label, net in (("G", th_g), ("D", th_d))}
    latents = iter([jt.array(z) for _, z_d, z_g in steps for z in (z_d, z_g)])
    model.latents = lambda batch, context: ((next(latents),), {})
    phase = Phase(size=size, level=4, alpha=1.0, batch=BATCH, lr=2e-4, index=0, fading=False)
    for real, _, _ in steps:
        trainer.iteration({"images": iter([jt.array(real)])}, phase)

    th_g, th_d = th_g.double(), th_d.double()
    opt_g, opt_d = (EpsHatAdam(net.parameters(), 2e-4, (0.5, 0.999)) for net in (th_g, th_d))
    for real, z_d, z_g in steps:
        d_loss, _ = reference.discriminator_loss("bce", th_d, double(real), th_g(double(z_d)).detach(), None)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        reference.generator_loss("bce", th_d, th_g(double(z_g))).backward()
        opt_g.step()

    for label, jt_net, th_net in (("G", model.generator, th_g), ("D", model.discriminator, th_d)):
        jt_state = jt_net.state_dict()
        for name, th_param in th_net.named_parameters():
            start = before[label][name]
            th_update, jt_update = to_numpy(th_param) - start, to_numpy(jt_state[name]) - start
            error = float(np.linalg.norm(jt_update - th_update) / np.linalg.norm(th_update))
            print(f"SELU {label}.{name}: 3-step update off by {error:.1e} of its norm")
            assert error <= UPDATE_RTOL, f"SELU {label}.{name}: the 3-step update differs by {error:.2e} of its norm"


# ----- configuration --------------------------------------------------------------------------
def test_selu_is_one_config_key_and_lifts_the_batch_norm_penalty_check():
    """`--set model.activation=selu` alone works for a penalised critic whose preset norm is
    irrelevant under SELU, even critic_norm batch; an unknown activation names the choices."""
    for critic_norm in ("instance", "batch"):
        config = load_config("wgan-gp", overrides=[{"model": {"activation": "selu", "critic_norm": critic_norm,
                                                               "size": 16, "ngf": 4, "ndf": 4}}])
        model = DCGANModel(config)
        assert not any("running" in n or "norm" in type(m).__name__.lower()
                       for net in (model.generator, model.discriminator)
                       for n, m in net.named_modules())
    assert load_config("dcgan")["model"]["activation"] == "relu", "the default keeps BatchNorm + ReLU"
    with pytest.raises(ConfigError, match="unknown activation 'elu'; choose one of relu, selu"):
        selu_nets("dcgan", 16, activation="elu")
