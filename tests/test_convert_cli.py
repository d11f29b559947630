"""scripts/convert_rosinality.py: a rosinality checkpoint becomes a jgan run that reproduces it."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import jgan
import jittor as jt
from jgan import checkpoint as ckpt
from parity import assert_close
from reference.stylegan_torch import Discriminator, StyledGenerator, randomize

REPO = Path(__file__).resolve().parent.parent
# Images of these randomised nets reach ~25, so float32 leaves ~4e-5 after four resolutions.
WIDTHS = dict(code_dim=16, n_mlp=3, channels=(16, 16, 8, 8), fused_from=16)


def convert(*args, env=None):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "convert_rosinality.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env or os.environ.copy())


def reference_networks():
    torch.manual_seed(0)
    generator = randomize(StyledGenerator(**WIDTHS), seed=1)
    running = randomize(StyledGenerator(**WIDTHS), seed=2)
    discriminator = randomize(Discriminator(channels=WIDTHS["channels"], fused_from=16), seed=3)
    return generator, running, discriminator


def noise_maps(step, batch):
    rng = np.random.RandomState(4)
    return [rng.randn(batch, 1, 4 * 2 ** i, 4 * 2 ** i).astype(np.float32) for i in range(step + 1)]


def images_of(reference, jgan_generator, step):
    z = np.random.RandomState(5).randn(3, WIDTHS["code_dim"]).astype(np.float32)
    noise = noise_maps(step, 3)
    with torch.no_grad():
        expected = reference(torch.from_numpy(z), [torch.from_numpy(n) for n in noise], step=step)
    with jt.no_grad():
        got = jgan_generator(jt.array(z), noise=[jt.array(n) for n in noise], level=step)
    return got, expected


def test_train_step_checkpoint_converts_to_a_run_that_generates_the_same_images(tmp_path):
    generator, running, discriminator = reference_networks()
    source = tmp_path / "train_step-3.model"
    torch.save({"generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "g_running": running.state_dict(), "g_optimizer": {}, "d_optimizer": {}}, source)
    result = convert(source, tmp_path / "run", "--size", 16)
    assert result.returncode == 0, result.stderr
    document = ckpt.load_checkpoint(tmp_path / "run")
    assert set(document["networks"]) == {"generator", "generator_ema", "discriminator"}
    ema = jgan.load_generator(tmp_path / "run")
    assert ema.trained_level == 2 and ema.trained_alpha == 1.0
    assert_close("converted g_running images", *images_of(running, ema, step=2), atol=1e-4, rtol=1e-5)
    trained = jgan.load_generator(tmp_path / "run", ema=False)
    assert_close("converted generator images", *images_of(generator, trained, step=3), atol=1e-4, rtol=1e-5)


def test_bare_g_running_state_dict_converts_too(tmp_path):
    _, running, _ = reference_networks()
    torch.save(running.state_dict(), tmp_path / "g_running.pt")
    assert convert(tmp_path / "g_running.pt", tmp_path / "run").returncode == 0
    generator = jgan.load_generator(tmp_path / "run")
    assert generator.trained_level == 3
    assert_close("bare g_running images", *images_of(running, generator, step=3), atol=1e-4, rtol=1e-5)


def test_an_existing_run_is_not_overwritten(tmp_path):
    _, running, _ = reference_networks()
    torch.save(running.state_dict(), tmp_path / "g.pt")
    assert convert(tmp_path / "g.pt", tmp_path / "run").returncode == 0
    again = convert(tmp_path / "g.pt", tmp_path / "run")
    assert again.returncode == 2 and "already holds checkpoints; pass --force" in again.stderr


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "is not a readable PyTorch checkpoint"),
    (None, "does not exist"),
])
def test_bad_sources_are_one_sentence(tmp_path, content, message):
    source = tmp_path / "src.pt"
    if content is not None:
        source.write_bytes(content)
    result = convert(source, tmp_path / "run")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_without_torch_the_tool_says_how_to_get_it(tmp_path):
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no torch here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    result = convert(tmp_path / "any.pt", tmp_path / "run", env=env)
    assert result.returncode == 2 and "needs PyTorch" in result.stderr and "pip install torch" in result.stderr
