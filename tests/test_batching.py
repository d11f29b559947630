"""Specification of jgan.batching: a discriminator given several batches scores each as
if it had been called on it alone, whether it runs one pass or several.

Batch norm (DCGAN) and minibatch stddev (StyleGAN) mix the samples of a batch, so the one-pass
path must keep each batch's statistics apart: the scores, the gradients of a loss over both
batches (w.r.t. the weights and the images) and the running statistics must equal those of two
separate calls.
"""
import jittor as jt
import numpy as np
import pytest

from jgan import batching
from jgan.losses import Critic
from jgan.models import build_networks
from parity import assert_close

DCGAN_TINY = {"size": 16, "nz": 8, "ngf": 4, "ndf": 4}
STYLEGAN_TINY = {"code_dim": 8, "n_mlp": 1, "channels": [8, 8, 4]}
CASES = {
    "dcgan (batch norm)": ("dcgan", DCGAN_TINY, {}),
    "wgan-gp (instance norm)": ("wgan-gp", DCGAN_TINY, {}),
    "stylegan (stddev over the batch)": ("stylegan", STYLEGAN_TINY, {"level": 2, "alpha": 0.4}),
    "stylegan (stddev groups of 2)": ("stylegan", {**STYLEGAN_TINY, "stddev_group": 2}, {"level": 1}),
}


def images(seed, size, batch=4):
    return jt.array(np.random.RandomState(seed).randn(batch, 3, size, size).astype(np.float32))


def scored(case, max_images, monkeypatch):
    """(scores of two batches, gradients of a loss over both, D's state afterwards) with D called
    on both batches at once and `max_images` as the one-pass limit."""
    arch, model, inputs = case
    monkeypatch.setattr(batching, "ONE_PASS_MAX_IMAGES", max_images)
    jt.set_global_seed(0)
    _, discriminator = build_networks(arch, model)
    size = 4 * 2 ** inputs["level"] if "level" in inputs else 16
    real, fake = images(1, size), images(2, size)
    d_real, d_fake = discriminator(real, fake, **inputs)
    loss = (d_real * d_real).mean() - 3 * d_fake.mean()
    weights = [p for p in discriminator.parameters() if not p.is_stop_grad()]
    gradients = jt.grad(loss, weights + [real, fake])
    state = {name: var.numpy() for name, var in discriminator.state_dict().items()}
    return [d_real.numpy(), d_fake.numpy()], [g.numpy() for g in gradients], state


@pytest.mark.parametrize("name", CASES)
def test_one_pass_equals_separate_calls(name, monkeypatch):
    one_scores, one_gradients, one_state = scored(CASES[name], 8, monkeypatch)
    two_scores, two_gradients, two_state = scored(CASES[name], 0, monkeypatch)
    assert_close(f"{name} scores", one_scores, two_scores, 1e-6)
    for k, (one, two) in enumerate(zip(one_gradients, two_gradients)):
        assert_close(f"{name} gradient {k}", one, two, 1e-5 * max(1.0, np.abs(two).max()))
    for key in two_state:
        assert_close(f"{name} {key} after the step", one_state[key], two_state[key], 1e-6)


def test_batch_norm_parts_differ_from_joint_statistics(monkeypatch):
    """The one-pass path is not a joint batch norm: scoring real and fake together with shared
    statistics gives other scores (so the test above can tell the two apart)."""
    monkeypatch.setattr(batching, "ONE_PASS_MAX_IMAGES", 8)
    jt.set_global_seed(0)
    _, discriminator = build_networks("dcgan", DCGAN_TINY)
    real, fake = images(1, 16), images(2, 16) * 3 + 1
    d_real, _ = discriminator(real, fake)
    joint = discriminator(jt.concat([real, fake], 0))[:4]
    assert np.abs(d_real.numpy() - joint.numpy()).max() > 1e-3


def test_one_pass_policy(monkeypatch):
    monkeypatch.setattr(jt.flags, "use_cuda", 0)
    small, other = images(0, 8, batch=4), images(0, 8, batch=3)
    assert batching.one_pass([small, small])
    assert not batching.one_pass([small])
    assert not batching.one_pass([small, other]), "unequal batches cannot be split back"
    monkeypatch.setattr(batching, "ONE_PASS_MAX_IMAGES", 7)
    assert not batching.one_pass([small, small]), "8 images exceed a one-pass limit of 7"


def test_a_critic_of_one_batch_scores_a_pair_in_separate_calls():
    calls = []

    def critic(x):
        calls.append(x.shape[0])
        return x.reshape(x.shape[0], -1).sum(1)
    a, b = images(0, 8, batch=2), images(1, 8, batch=3)
    d_a, d_b = Critic(critic).pair(a, b)
    assert calls == [2, 3]
    assert_close("plain critic, first batch", d_a, a.numpy().reshape(2, -1).sum(1), 1e-4)
    assert_close("plain critic, second batch", d_b, b.numpy().reshape(3, -1).sum(1), 1e-4)


def test_a_critic_of_a_discriminator_scores_a_pair_in_one_call(monkeypatch):
    """Critic.of hands both batches to the discriminator at once, which may score them in one pass."""
    calls = []
    monkeypatch.setattr(batching, "ONE_PASS_MAX_IMAGES", 8)
    jt.set_global_seed(0)
    _, discriminator = build_networks("dcgan", DCGAN_TINY)
    real, fake = images(1, 16), images(2, 16)
    one_pass = discriminator.score
    monkeypatch.setattr(discriminator, "score", lambda x, parts: calls.append(parts) or one_pass(x, parts))
    d_real, d_fake = Critic.of(discriminator).pair(real, fake)
    assert calls == [2], "real and fake were not scored in one pass"
    assert_close("pair vs separate scores", d_real, discriminator(real), 1e-6)


def test_a_generator_of_per_sample_layers_maps_batches_in_as_few_passes_as_fit_as_in_separate_calls(monkeypatch):
    """CycleGAN's generators (instance norm): consecutive batches share a pass while they fit in
    ONE_PASS_MAX_IMAGES; each batch's output and the gradients of a loss over all equal those of
    separate calls."""
    monkeypatch.setattr(batching, "ONE_PASS_MAX_IMAGES", 4)
    jt.set_global_seed(0)
    generator, _ = build_networks("cyclegan", {"size": 32, "ngf": 4, "ndf": 4, "blocks": 1})
    batches = [images(1, 32, batch=2), images(2, 32, batch=2), images(3, 32, batch=3)]
    calls = []

    def counted(x):
        calls.append(x.shape[0])
        return generator(x)
    together = batching.apply_per_sample(counted, batches)
    assert calls == [4, 3], calls
    apart = tuple(generator(x) for x in batches)
    weights = generator.parameters()
    for k, (x, y) in enumerate(zip(together, apart)):
        assert_close(f"batch {k} output", x, y, 1e-5)
    loss = lambda out: (out[0] * out[0]).mean() - 2 * out[1].mean() + (out[2] * out[0][:1]).mean()
    for k, (g1, g2) in enumerate(zip(jt.grad(loss(together), weights), jt.grad(loss(apart), weights))):
        assert_close(f"gradient {k}", g1, g2, 1e-5 * max(1.0, np.abs(g2.numpy()).max()))
