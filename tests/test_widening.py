"""Widening a StyleGAN run's last generator block (jgan.widening, scripts/widen_stylegan.py): the wider
generator draws the same images, the copies of a channel learn apart, Adam's moments follow their
weights, and the new run resumes."""
import math

import jittor as jt
import numpy as np
import pytest
from PIL import Image

from jgan import checkpoint as ckpt
from jgan.errors import CheckpointError
from jgan.networks.stylegan import build_networks
from jgan.widening import widen_checkpoint
from test_train_cli import TINY_STYLEGAN, ok, run_script

MODEL = {"code_dim": 16, "n_mlp": 2, "channels": [16, 16, 8], "critic_channels": None, "fused_from": 128,
         "style_gain": 1.0}
LEVEL = 2                                   # 16 px, the last block
BATCH = 3


def random_state(module, rng, scale=0.5):
    """Every entry random, so that noise weights, style weights and biases all matter."""
    return {name: (rng.standard_normal(tuple(var.shape)) * scale).astype(np.float32)
            for name, var in module.state_dict().items()}


def generator_of(model, state):
    generator, _ = build_networks(**model)
    generator.load_state_dict({name: jt.array(value) for name, value in state.items()})
    return generator


@pytest.fixture(scope="module")
def document():
    """A StyleGAN training checkpoint as load_checkpoint returns it, with random weights and moments."""
    rng = np.random.default_rng(0)
    generator, _ = build_networks(**MODEL)
    state = random_state(generator, rng)
    shapes = [tuple(var.shape) for _, var in generator.named_parameters()]
    moments = {"m": [rng.standard_normal(s).astype(np.float32) for s in shapes],
               "values": [rng.random(s).astype(np.float32) for s in shapes]}
    return {"arch": "stylegan", "path": "run/0000007.jgan", "step": 7, "config": {"model": dict(MODEL)},
            "networks": {"generator": state, "generator_ema": random_state(generator, rng),
                         "discriminator": {"w": np.ones(2, np.float32)}},
            "optimizers": {"generator": {"n_step": 7, "groups": [moments]}}}


@pytest.fixture(scope="module")
def widened(document):
    return widen_checkpoint(document, seed=0)


def draw(generator, seed=0):
    rng = np.random.default_rng(seed)
    z = jt.array(rng.standard_normal((BATCH, MODEL["code_dim"])).astype(np.float32))
    noise = [jt.array(rng.standard_normal((BATCH, 1, 4 * 2 ** i, 4 * 2 ** i)).astype(np.float32))
             for i in range(LEVEL + 1) for _ in range(2)]
    return generator(z, noise=noise, level=LEVEL)


def test_the_last_block_doubles_and_nothing_else_changes(document, widened):
    model = widened["config"]["model"]
    assert model["channels"] == [16, 16, 16] and model["critic_channels"] == [16, 16, 8]
    assert document["config"]["model"]["channels"] == [16, 16, 8], "the input document is left as it was"
    old, new = document["networks"]["generator"], widened["networks"]["generator"]
    changed = {name for name in old if np.shape(old[name]) != np.shape(new[name])}
    assert changed == {"progression.2.conv1.weight", "progression.2.conv1.bias", "progression.2.noise1.weight",
                       "progression.2.adain1.style.weight", "progression.2.adain1.style.bias",
                       "progression.2.conv2.weight", "progression.2.conv2.bias", "progression.2.noise2.weight",
                       "progression.2.adain2.style.weight", "progression.2.adain2.style.bias",
                       "to_rgb.2.weight"}
    for name in set(old) - changed:
        np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    assert widened["networks"]["discriminator"] is not document["networks"]["discriminator"]
    np.testing.assert_array_equal(widened["networks"]["discriminator"]["w"], 1)


@pytest.mark.parametrize("network", ["generator", "generator_ema"])
def test_the_widened_generator_draws_the_same_images(document, widened, network):
    before = draw(generator_of(MODEL, document["networks"][network])).numpy()
    after = draw(generator_of(widened["config"]["model"], widened["networks"][network])).numpy()
    scale = np.abs(before).max()
    assert np.abs(after - before).max() < 1e-5 * scale, f"images differ by {np.abs(after - before).max()}"


def test_the_copies_of_a_channel_start_equal_and_get_different_gradients(widened):
    generator = generator_of(widened["config"]["model"], widened["networks"]["generator"])
    weight = generator.progression[LEVEL].conv1.weight
    rows = weight.numpy()
    np.testing.assert_array_equal(rows[:8], rows[8:])
    gradient = jt.grad((draw(generator) ** 2).sum(), weight).numpy()
    difference = np.abs(gradient[:8] - gradient[8:]).max()
    assert difference > 1e-2 * np.abs(gradient).max(), f"the copies' gradients differ by only {difference}"


def test_the_read_weights_are_shared_out_between_the_copies(document, widened):
    """toRGB's two copies of a column sum to the old column times sqrt(2) (its constant shrank by as much)."""
    old = document["networks"]["generator"]["to_rgb.2.weight"]
    new = widened["networks"]["generator"]["to_rgb.2.weight"]
    np.testing.assert_allclose(new[:, :8] + new[:, 8:], old * math.sqrt(2), rtol=1e-5)
    share = new[:, :8] / (old * math.sqrt(2))
    assert 0.25 <= share.min() and share.max() <= 0.75 and share.std() > 0.05


def test_adam_moments_go_with_their_weights_scaled_as_the_gradients(document, widened):
    generator, _ = build_networks(**MODEL)
    names = [name for name, _ in generator.named_parameters()]
    for key, power in (("m", 1), ("values", 2)):
        old = dict(zip(names, document["optimizers"]["generator"]["groups"][0][key]))
        new = dict(zip(names, widened["optimizers"]["generator"]["groups"][0][key]))
        half, shrink = 0.5 ** power, math.sqrt(2) ** power
        np.testing.assert_allclose(new["progression.2.conv1.bias"], np.tile(old["progression.2.conv1.bias"], 2) * half)
        np.testing.assert_allclose(new["to_rgb.2.weight"], np.tile(old["to_rgb.2.weight"], (1, 2, 1, 1)) / shrink,
                                   rtol=1e-6)
        np.testing.assert_allclose(new["progression.2.noise1.weight"],
                                   np.tile(old["progression.2.noise1.weight"], (1, 2, 1, 1)) * half / shrink, rtol=1e-6)
        np.testing.assert_allclose(new["progression.2.conv2.weight"][8:, 8:],
                                   old["progression.2.conv2.weight"] * half / shrink, rtol=1e-6)
        gamma, beta = np.split(new["progression.2.adain2.style.bias"], 2)
        np.testing.assert_allclose(gamma, np.tile(old["progression.2.adain2.style.bias"][:8], 2) * half)
        np.testing.assert_allclose(beta, np.tile(old["progression.2.adain2.style.bias"][8:], 2) * half)
        np.testing.assert_array_equal(new["style.1.weight"], old["style.1.weight"])
    assert widened["optimizers"]["generator"]["n_step"] == 7


def test_the_seed_draws_the_shares(document, widened):
    again = widen_checkpoint(document, seed=0)["networks"]["generator"]["to_rgb.2.weight"]
    other = widen_checkpoint(document, seed=1)["networks"]["generator"]["to_rgb.2.weight"]
    np.testing.assert_array_equal(again, widened["networks"]["generator"]["to_rgb.2.weight"])
    assert np.abs(other - again).max() > 1e-3


@pytest.mark.parametrize("change, words", [
    ({"arch": "dcgan"}, "is a dcgan checkpoint"),
    ({"optimizers": {}}, "holds no generator optimiser"),
    ({"config": {"model": {**MODEL, "demodulate": True}}}, "not an AdaIN block"),
    ({"config": {"model": {**MODEL, "fused_from": 16}}}, "not an AdaIN block"),
])
def test_what_cannot_be_widened_is_refused_in_one_sentence(document, change, words):
    with pytest.raises(CheckpointError, match=words):
        widen_checkpoint({**document, **change})


def test_a_widened_run_resumes_and_draws_what_its_source_drew(tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", "stylegan", "--init-size", 16, "--max-size", 16, "--batch", 4,
                  "--iters", 3, "--name", "narrow", *TINY_STYLEGAN, cwd=tmp_path))
    narrow, wide = tmp_path / "checkpoint" / "narrow", tmp_path / "checkpoint" / "wide"
    written = ok(run_script("scripts/widen_stylegan.py", narrow, wide, cwd=tmp_path))
    assert "model.channels [16, 16, 32]" in written.stdout
    refused = run_script("scripts/widen_stylegan.py", narrow, wide, cwd=tmp_path)
    assert refused.returncode == 2 and "already holds checkpoints" in refused.stderr

    for run in (narrow, wide):
        ok(run_script("generate.py", "-g", run, "--out", tmp_path / run.name, "--n", 16, cwd=tmp_path))
    images = [np.asarray(Image.open(tmp_path / run / f"{run}-0000003-samples.png"), np.int16) for run in ("narrow", "wide")]
    assert np.abs(images[0] - images[1]).max() <= 1

    resumed = ok(run_script("train.py", tiny_lmdb, "--name", "wide", "--resume", "--iters", 5, *TINY_STYLEGAN[2:],
                            cwd=tmp_path))
    assert "at step 3" in resumed.stderr
    assert ckpt.load_checkpoint(wide)["step"] == 5
    assert ckpt.load_checkpoint(wide)["networks"]["generator"]["to_rgb.2.weight"].shape == (3, 32, 1, 1)
