"""A run stopped and resumed reproduces the uninterrupted run: same losses, same weights (to float
tolerance on the CPU), for a DCGAN-family arch, for StyleGAN and PGGAN across a phase change, and for
CycleGAN with its image pools."""
import json

import numpy as np
import pytest

from jgan import checkpoint as ckpt
from jgan import registry
from jgan.config import load_config
from jgan.data import StreamSampler
from jgan.training import Trainer

RUNS = {
    "wgan-gp": ({"model": {"size": 32, "ngf": 8, "ndf": 8},
                 "train": {"batch": 4, "num_workers": 2, "n_critic": 2, "ema": 0.9, "n_sample": 4,
                           "log_every": 1, "ckpt_every": 3, "sample_every": 100}}, 3, 6),
    "stylegan": ({"model": {"code_dim": 16, "n_mlp": 2, "channels": [16, 16, 8, 8]},
                  "progressive": {"init_size": 8, "max_size": 16, "phase": 8},
                  "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "log_every": 1, "ckpt_every": 3,
                            "sample_every": 100}}, 3, 7),   # the 16 px fade-in starts at step 5
    "pggan": ({"model": {"code_dim": 16, "channels": [16, 16, 8, 8]},
               "progressive": {"init_size": 8, "max_size": 16, "phase": 8},
               "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "log_every": 1, "ckpt_every": 3,
                         "sample_every": 100}}, 3, 7),
    "cyclegan": ({"model": {"size": 32, "ngf": 8, "ndf": 8, "blocks": 1},   # pools of 3 swap from step 2
                  "train": {"batch": 2, "pool": 3, "iters": 6, "num_workers": 0, "n_sample": 4, "log_every": 1,
                            "ckpt_every": 3, "sample_every": 100}}, 3, 6),
}

# Weights agree to atol 1e-6 (+ rtol 1e-5), except CycleGAN's: many weights of its generators, which
# InstanceNorm follows, get tiny gradients, and Adam scales their round-off up to ~7e-6 in three
# steps (measured); its pooled images (in [-1, 1]) move as little, where a wrong pick is far off.
WEIGHT_ATOL = {"cyclegan": 2e-5}


def train(arch, lmdb, folder, until, resume_from=None):
    overrides, _, _ = RUNS[arch]
    data = {"a": lmdb, "b": lmdb} if registry.get(arch).translates else lmdb   # two streams, two orders
    trainer = Trainer(load_config(arch, False, None, [overrides]), data, folder / "run", folder / "sample",
                      progress=False)
    if resume_from is not None:
        trainer.restore(ckpt.load_checkpoint(resume_from))
    trainer.train(until)
    return trainer


def losses(folder):
    records = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k != "seconds"} for r in records}


@pytest.mark.parametrize("arch", RUNS)
def test_stop_and_resume_equals_an_uninterrupted_run(arch, tiny_lmdb, tmp_path):
    _, stop, end = RUNS[arch]
    straight = train(arch, tiny_lmdb, tmp_path / "straight", end)
    train(arch, tiny_lmdb, tmp_path / "split", stop)
    resumed = train(arch, tiny_lmdb, tmp_path / "split", end, resume_from=tmp_path / "split" / "run")
    assert (resumed.step, resumed.images) == (straight.step, straight.images)
    expected, got = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(got) == list(range(1, end + 1))
    if registry.get(arch).progressive:
        assert {expected[s]["size"] for s in range(stop + 1, end + 1)} == {8, 16}
    for step in range(stop + 1, end + 1):
        for key, value in expected[step].items():
            assert got[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), f"step {step} {key}"
    assert "generator_ema" in straight.model.modules() or registry.get(arch).translates
    atol = WEIGHT_ATOL.get(arch, 1e-6)
    for key, value in straight.model.state().items():   # e.g. CycleGAN's image pools
        np.testing.assert_allclose(resumed.model.state()[key], value, atol=5 * atol, err_msg=key)
    for name, module in straight.model.modules().items():
        a, b = ckpt.module_state(module), ckpt.module_state(resumed.model.modules()[name])
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=atol, err_msg=f"{name}.{key}")


def test_stream_is_a_pure_function_of_the_position():
    sampler = StreamSampler(count=10, seed=3, flip=True, pass_length=7)
    first, second, third = list(sampler), list(sampler), list(sampler)
    assert first + second + third == StreamSampler(10, 3).take(0, 21)
    assert StreamSampler(10, 3, start=7, pass_length=7).take(7, 14) == second + third
    epoch = [key % 10 for key in StreamSampler(10, 3).take(0, 10)]
    assert sorted(epoch) == list(range(10))                                  # every image once per epoch
    assert any(key >= 10 for key in first + second + third)                  # some mirrored
    assert StreamSampler(10, 4).take(0, 10) != StreamSampler(10, 3).take(0, 10)
    assert all(key < 10 for key in StreamSampler(10, 3, flip=False).take(0, 30))
