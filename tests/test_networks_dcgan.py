"""Specification of jgan.networks.dcgan: shapes, sizes, initialisation and parity with PyTorch.

Parity runs at 32 px with ngf = ndf = 8, batch 4. Tolerances: outputs of convolution stacks agree
to float32 rounding (atol 1e-6 on tanh images and on logits of magnitude < 1, rtol 1e-5).
"""
import jittor as jt
import numpy as np
import pytest
import torch

from jgan import onednn_conv, registry
from jgan.config import load_config
from jgan.errors import ConfigError
from jgan.models import build_networks
from jgan.models.dcgan import DCGANModel
from jgan.networks import dcgan as dcgan_networks
from jgan.networks.dcgan import Discriminator, Generator
from parity import assert_close, copy_parameters
from reference.dcgan_torch import batch_norm_sizes, torch_networks, unbiased_running_var_as_biased

SIZE, NZ, WIDTH, BATCH = 32, 100, 8, 4
ARCHS = ("dcgan", "wgan", "wgan-gp", "wganp", "lsgan", "wgan-div")
OUTPUT_ATOL, OUTPUT_RTOL = 1e-6, 1e-5


def inputs(seed=0):
    rng = np.random.RandomState(seed)
    z = rng.randn(BATCH, NZ).astype(np.float32)
    x = rng.uniform(-1, 1, (BATCH, 3, SIZE, SIZE)).astype(np.float32)
    return z, x


def nets(arch, size=SIZE, nz=NZ, ngf=WIDTH, ndf=WIDTH, **model):
    """(G, D) of `arch`'s preset with these sizes and widths."""
    return build_networks(arch, {"size": size, "nz": nz, "ngf": ngf, "ndf": ndf, **model})


def paired_networks(arch, critic_norm=None):
    """Jittor and PyTorch nets of `arch` holding the same (torch-initialised) weights; critic_norm
    None is the preset's."""
    jt_g, jt_d = nets(arch, **({"critic_norm": critic_norm} if critic_norm else {}))
    th_g, th_d = torch_networks(arch, SIZE, NZ, WIDTH, WIDTH, critic_norm or "instance")
    copy_parameters(jt_g, th_g)
    copy_parameters(jt_d, th_d)
    return (jt_g, jt_d), (th_g, th_d)


def assert_running_statistics(label, jt_net, th_net, sizes):
    """running_mean equal; running_var equal once Jittor's biased batch variance is accounted for."""
    assert sizes, f"{label}: no BatchNorm layer was run"
    th_state = dict(th_net.named_buffers())
    for name in sizes:
        assert_close(f"{label}.{name}.running_mean", jt_net.state_dict()[f"{name}.running_mean"],
                     th_state[f"{name}.running_mean"], atol=1e-7)
    for name, (jt_var, th_var) in unbiased_running_var_as_biased(jt_net, th_net, sizes).items():
        assert_close(f"{label}.{name}.running_var (biased vs unbiased)", jt_var, th_var, atol=1e-7)


# ----- shapes and sizes ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["dcgan", "wganp"])
def test_generator_maps_z_to_images_in_tanh_range(arch):
    generator, _ = nets(arch)
    z, _ = inputs()
    flat = generator(jt.array(z))
    assert flat.shape == (BATCH, 3, SIZE, SIZE)
    assert np.abs(flat.numpy()).max() <= 1.0
    spatial = generator(jt.array(z.reshape(BATCH, NZ, 1, 1)))
    assert_close(f"{arch} G(z) for z of shape (B, nz, 1, 1)", spatial, flat, atol=0.0)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("arch", ["dcgan", "wgan-gp", "wganp"])
def test_output_shapes_at_larger_sizes(arch, size):
    generator, discriminator = nets(arch, size, nz=16, ngf=4, ndf=4)
    images = generator(jt.randn(2, 16))
    assert images.shape == (2, 3, size, size)
    assert discriminator(images).shape == (2,)


def test_64px_dcgan_has_the_pytorch_example_layer_shapes():
    """The PyTorch DCGAN example: G 100 -> 512 -> 256 -> 128 -> 64 -> 3, D 3 -> 64 -> ... -> 512 -> 1."""
    generator, discriminator = build_networks("dcgan")
    g_convs = [tuple(p.shape) for n, p in generator.named_parameters() if p.ndim == 4]
    d_convs = [tuple(p.shape) for n, p in discriminator.named_parameters() if p.ndim == 4]
    assert g_convs == [(100, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4), (128, 64, 4, 4), (64, 3, 4, 4)]
    assert d_convs == [(64, 3, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4), (1, 512, 4, 4)]
    convs = [m for net in (generator, discriminator) for m in net.modules()
             if isinstance(m, (jt.nn.Conv2d, jt.nn.ConvTranspose2d))]
    assert len(convs) == 10 and all(conv.bias is None for conv in convs), "DCGAN convs have no bias"


def test_wganp_generator_honours_ngf_and_upsamples_without_transposed_convolutions():
    generator = Generator(SIZE, NZ, ngf=12, upsample="resize")
    convs = [tuple(p.shape) for n, p in generator.named_parameters() if p.ndim == 4]
    assert convs == [(100, 48, 4, 4), (24, 48, 3, 3), (12, 24, 3, 3), (3, 12, 3, 3)]


def test_critic_has_no_batch_norm_and_no_sigmoid():
    for arch in ("wgan-gp", "wganp", "wgan-div"):
        _, critic = nets(arch)
        assert not any("running" in name for name in critic.state_dict()), arch
    _, critic = nets("wgan-gp", critic_norm="none")
    assert not any(isinstance(m, jt.nn.InstanceNorm2d) for m in critic.modules())
    assert isinstance(critic.main[-1], jt.nn.Conv2d), "the critic ends with its 4x4 conv, no sigmoid"


@pytest.mark.parametrize("size", [8, 48, 100, 0, 32.0])
def test_unsupported_size_is_a_config_error(size):
    with pytest.raises(ConfigError, match="power of two"):
        nets("dcgan", size)


def test_unknown_arch_upsample_and_critic_norm_are_config_errors():
    with pytest.raises(ConfigError, match="dcgan, wgan, wgan-gp, wganp, lsgan, wgan-div"):
        nets("gan")
    with pytest.raises(ConfigError, match="batch, instance, none"):
        nets("wgan-gp", critic_norm="layer")
    with pytest.raises(ConfigError, match="transposed, resize"):
        nets("dcgan", upsample="bilinear")
    assert tuple(name for name in registry.names()
                 if registry.get(name).model == "jgan.models.dcgan:DCGANModel") == ARCHS


@pytest.mark.parametrize("arch", ["wgan-gp", "wganp", "wgan-div"])
def test_a_gradient_penalty_with_a_batch_norm_critic_is_refused(arch):
    """The penalty treats each sample apart; batch norm mixes them (Gulrajani et al. 2017)."""
    config = load_config(arch, overrides=[{"model": {"critic_norm": "batch", "ngf": 4, "ndf": 4, "size": 16}}])
    with pytest.raises(ConfigError, match=f"critic_norm batch cannot be used with the {config['loss']['name']} loss"):
        DCGANModel(config)


@pytest.mark.parametrize("arch", ARCHS)
def test_presets_build_each_paper_network(arch):
    """DCGAN, WGAN and LSGAN keep BatchNorm in D; the penalised critics do not; WGANP resizes."""
    generator, critic = build_networks(arch, {"size": 16, "ngf": 4, "ndf": 4})
    assert any("running" in name for name in critic.state_dict()) == (arch in ("dcgan", "wgan", "lsgan"))
    transposed = any(isinstance(m, jt.nn.ConvTranspose2d) for m in generator.main[1:])
    assert transposed == (arch != "wganp")


def test_dcgan_initialisation():
    """Conv weights ~ N(0, 0.02); BatchNorm weights ~ N(1, 0.02), biases 0 (64 px, default widths)."""
    generator, discriminator = Generator(64), Discriminator(64)
    for net in (generator, discriminator):
        state = {n: v.numpy() for n, v in net.state_dict().items()}
        convs = np.concatenate([v.ravel() for v in state.values() if v.ndim == 4])
        norms = np.concatenate([v for n, v in state.items() if v.ndim == 1 and n.endswith("weight")])
        biases = np.concatenate([v for n, v in state.items() if n.endswith("bias")])
        assert abs(convs.mean()) < 1e-3 and abs(convs.std() - 0.02) < 1e-3
        assert abs(norms.mean() - 1) < 5e-3 and abs(norms.std() - 0.02) < 5e-3
        assert not biases.any()


# ----- parity with PyTorch ---------------------------------------------------------------------
PARITY_CASES = [(arch, None) for arch in ARCHS] + [("wgan-gp", "none")]
PARITY_IDS = [arch if norm is None else f"{arch}-critic_norm-{norm}" for arch, norm in PARITY_CASES]


@pytest.fixture(params=[True, False], ids=["channels_last", "channels_first"])
def layout(request, monkeypatch):
    """Each parity test with the nets' activations channels-last (oneDNN's primitives, as on this
    CPU) and channels-first (Jittor's convolutions, as on CUDA or without oneDNN)."""
    monkeypatch.setattr(dcgan_networks, "channels_last", lambda: request.param)
    return request.param


@pytest.mark.parametrize("arch,critic_norm", PARITY_CASES, ids=PARITY_IDS)
def test_eval_mode_outputs_match_pytorch(arch, critic_norm, layout):
    (jt_g, jt_d), (th_g, th_d) = paired_networks(arch, critic_norm)
    for net in (jt_g, jt_d, th_g, th_d):
        net.eval()
    z, x = inputs()
    with torch.no_grad():
        th_images, th_scores = th_g(torch.from_numpy(z)), th_d(torch.from_numpy(x))
    assert_close(f"{arch} G(z) eval", jt_g(jt.array(z)), th_images, OUTPUT_ATOL, OUTPUT_RTOL)
    assert_close(f"{arch} D(x) eval", jt_d(jt.array(x)), th_scores, OUTPUT_ATOL, OUTPUT_RTOL)


@pytest.mark.parametrize("arch,critic_norm", PARITY_CASES, ids=PARITY_IDS)
def test_train_mode_outputs_and_batch_norm_statistics_match_pytorch(arch, critic_norm, layout):
    """Batch statistics agree; running_var differs only by Jittor's biased (n-1)/n estimate."""
    (jt_g, jt_d), (th_g, th_d) = paired_networks(arch, critic_norm)
    z, x = inputs()
    with batch_norm_sizes(th_g, th_d) as (g_sizes, d_sizes):
        th_images, th_scores = th_g(torch.from_numpy(z)), th_d(torch.from_numpy(x))
    assert_close(f"{arch} G(z) train", jt_g(jt.array(z)), th_images, OUTPUT_ATOL, OUTPUT_RTOL)
    assert_close(f"{arch} D(x) train", jt_d(jt.array(x)), th_scores, OUTPUT_ATOL, OUTPUT_RTOL)
    assert_running_statistics(f"{arch} G", jt_g, th_g, g_sizes)
    if d_sizes:
        assert_running_statistics(f"{arch} D", jt_d, th_d, d_sizes)


# ----- channels-last activations (oneDNN's primitives) against channels-first ones (Jittor's) ---
BF16_EPS = 2.0 ** -8


@pytest.fixture(params=["fp32", "bf16"])
def precision(request):
    """Each test with float32 convolutions and with bfloat16 ones."""
    onednn_conv.enable_bfloat16(request.param == "bf16")
    yield request.param
    onednn_conv.enable_bfloat16(False)


def fixed_weights(*networks):
    """Every weight drawn again from a seeded generator, with its former mean and spread: the same nets
    on every run (Jittor's initialisation does not follow jt.set_global_seed)."""
    rng = np.random.RandomState(0)
    for net in networks:
        for value in net.parameters():
            current = value.numpy()
            value.assign(jt.array((current.mean() + current.std() * rng.randn(*current.shape)).astype(np.float32)))


def outputs_and_gradients(g, d, z, x):
    """G(z), D(x), D(G(z)) in training mode and the gradients of a loss of both nets' scores."""
    images = g(jt.array(z))
    real, fake = d(jt.array(x), images)
    parameters = g.parameters() + d.parameters()
    gradients = jt.grad((real * real).sum() + fake.sum(), parameters)
    return {"G(z)": images, "D(x)": real, "D(G(z))": fake,
            **{f"d/d {p.name()}": grad for p, grad in zip(parameters, gradients)}}


@pytest.mark.parametrize("arch,model", [("dcgan", {}), ("wgan-gp", {}), ("wganp", {}),
                                        ("dcgan", {"activation": "selu"}),
                                        ("dcgan", {"upsample": "resize", "critic_norm": "instance"})],
                         ids=["dcgan", "wgan-gp", "wganp", "dcgan-selu", "dcgan-resize-instance"])
def test_the_nets_run_channels_last_as_they_run_channels_first(arch, model, precision, monkeypatch):
    """On this CPU each convolution takes (N, H, W, C) activations, with the precision's products.
    In float32 every output, gradient and running statistic equals the channels-first run's (Jittor's
    convolutions); in bfloat16 the scores and images do to bfloat16's precision (a gradient through
    batch norm over 4 images magnifies the different rounding of two orders of summation; the
    gradients of each convolution are held to PyTorch's in both layouts in tests/test_onednn_conv.py)."""
    calls = []
    for name in ("conv2d", "conv_transpose2d"):
        original = getattr(onednn_conv, name)
        monkeypatch.setattr(onednn_conv, name, lambda *a, _f=original, **k: calls.append(
            (k.get("channels_last", False), k.get("bfloat16", True))) or _f(*a, **k))
    z, x = inputs()
    g, d = nets(arch, **model)
    fixed_weights(g, d)
    initial = [{name: value.numpy().copy() for name, value in net.state_dict().items()} for net in (g, d)]
    last = {label: value.numpy() for label, value in outputs_and_gradients(g, d, z, x).items()}
    assert calls and set(calls) == {(True, precision == "bf16")}, "a convolution ran channels-first or in the other precision"
    statistics = {name: value.numpy() for name, value in {**g.state_dict(), **d.state_dict()}.items()
                  if "running" in name}
    for net, state in zip((g, d), initial):
        net.load_state_dict(state)
    monkeypatch.setattr(dcgan_networks, "channels_last", lambda: False)
    first = outputs_and_gradients(g, d, z, x)
    compared = first if precision == "fp32" else {k: first[k] for k in ("G(z)", "D(x)", "D(G(z))")}
    tolerance = 4 * BF16_EPS if precision == "bf16" else 1e-5
    for label, value in compared.items():
        want = value.numpy()
        assert_close(f"{arch} {label}", last[label], want, atol=tolerance * max(np.abs(want).max(), 1e-6))
    for name, value in {**g.state_dict(), **d.state_dict()}.items():
        if "running" in name:
            assert_close(f"{arch} {name}", statistics[name], value.numpy(), atol=tolerance)


def test_a_generator_in_evaluation_mode_runs_channels_last_as_channels_first(precision, monkeypatch):
    """Evaluation uses the running statistics in either layout: samples, as generate.py draws them."""
    z, _ = inputs()
    g, _ = nets("dcgan")
    fixed_weights(g)
    g(jt.array(z)).sync()          # running statistics away from their initial values
    g.eval()
    last = g(jt.array(z)).numpy()
    monkeypatch.setattr(dcgan_networks, "channels_last", lambda: False)
    assert_close("G(z) eval", last, g(jt.array(z)).numpy(), atol=4 * BF16_EPS if precision == "bf16" else 1e-5)
