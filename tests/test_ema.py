"""The generator EMA's ramp-up (stylegan2-ada's ema_rampup): its decay per step, and the loop's use of it."""
import math

import numpy as np
import pytest

from jgan import checkpoint as ckpt
from jgan.config import load_config
from jgan.ema import ramped_decay
from jgan.training import Trainer

TINY = {"model": {"size": 16, "ngf": 4, "ndf": 4, "nz": 8},
        "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "n_critic": 2, "ema": 0.99, "ema_rampup": 0.5}}


def test_without_a_ramp_up_the_decay_is_the_configured_one():
    assert ramped_decay(0.999, 64, 0, 0.0) == 0.999
    assert ramped_decay(0.999, 64, 10 ** 6, 0.0) == 0.999


def test_the_ramp_up_caps_the_half_life_at_rampup_times_the_images_shown():
    assert ramped_decay(0.999, 64, 0, 0.05) == 0.0, "the first step copies the weights"
    # half-life of 0.999 per 64 images: 64 ln 0.5 / ln 0.999 = 44,339 images
    half_life = 64 * math.log(0.5) / math.log(0.999)
    assert ramped_decay(0.999, 64, 6400, 0.05) == pytest.approx(0.5 ** (64 / 320))
    assert ramped_decay(0.999, 64, int(half_life / 0.05) + 64, 0.05) == pytest.approx(0.999)
    decays = [ramped_decay(0.999, 64, 64 * k, 0.05) for k in range(0, 20000, 500)]
    assert decays == sorted(decays) and max(decays) == pytest.approx(0.999)


def test_the_loop_ramps_with_the_images_shown_before_each_step(tiny_lmdb, tmp_path):
    """Step 1 (0 images shown before it) copies G into the EMA; step 2 (8 shown: n_critic x batch)
    averages with decay 0.5 ** (8 / (0.5 * 8)) = 0.25."""
    trainer = Trainer(load_config("wgan-gp", overrides=[TINY]), tiny_lmdb, tmp_path / "run", tmp_path / "s",
                      progress=False)
    model = trainer.model
    trainer.train(1)
    first = ckpt.module_state(model.generator)
    for name, value in ckpt.module_state(model.generator_ema).items():
        np.testing.assert_array_equal(value, first[name], err_msg=name)
    trainer.train(2)
    second = ckpt.module_state(model.generator)
    decay = ramped_decay(0.99, 8, 8, 0.5)
    assert decay == pytest.approx(0.25)
    for name, value in ckpt.module_state(model.generator_ema).items():
        if name in model.generator_weights:
            np.testing.assert_allclose(value, decay * first[name] + (1 - decay) * second[name],
                                       rtol=1e-5, atol=1e-7, err_msg=name)
