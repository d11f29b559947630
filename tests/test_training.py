"""The training loop: per-phase compilation, exact state round trips, EMA and style mixing."""
import random

import numpy as np
import pytest

import jgan
import jittor as jt
from jittor import nn

from jgan import checkpoint as ckpt
from jgan.benchmark import KernelLog
from jgan.config import load_config
from jgan.ema import WeightAverage
from jgan.models.base import StepContext
from jgan.models.stylegan import NO_MIXING
from jgan.training import Trainer

TINY_STYLEGAN = {"model": {"code_dim": 16, "n_mlp": 2, "channels": [16, 16, 8, 8]},
                 "progressive": {"init_size": 8, "max_size": 16},
                 "train": {"batch": 2, "num_workers": 0, "n_sample": 4}}
TINY_WGAN_GP = {"model": {"size": 32, "ngf": 8, "ndf": 8},
                "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "ema": 0.9, "n_critic": 2}}


def trainer(arch, tmp_path, *overrides):
    config = load_config(arch, False, None, [TINY_STYLEGAN if arch == "stylegan" else TINY_WGAN_GP,
                                             *overrides])
    return Trainer(config, trainer.lmdb, tmp_path / "run", tmp_path / "sample", progress=False)


@pytest.fixture(autouse=True)
def _lmdb(tiny_lmdb):
    trainer.lmdb = tiny_lmdb


def run_iterations(t, count):
    for _ in range(count):
        phase = t.schedule.phase(t.images)
        t.set_learning_rate(phase)
        t.iteration(t.batches(phase), phase)
    jt.sync_all(True)
    return phase


def test_a_fading_phase_compiles_only_in_its_first_steps(tmp_path):
    """Alpha and the mixing crossover change every step but enter as Vars: no new kernels.
    The phase length is random so that this run's alpha values were never compiled before. R1 at
    every step: with the CPU preset's lazy R1 Jittor also compiles one bare `array` kernel at the
    seventh step, whatever the alpha (seen 2026-11-26), which is not what this test is about."""
    phase_images = random.randint(400, 900)
    t = trainer("stylegan", tmp_path, {"progressive": {"phase": phase_images, "mixing": 0.9},
                                       "loss": {"name": "r1", "every": 1}})
    t.images = 2 * phase_images          # start of the 16 px fade-in
    with KernelLog() as warm_up:
        first = run_iterations(t, 3)
    assert first.size == 16 and first.fading
    with KernelLog() as later:
        last = run_iterations(t, 12)
    assert last.fading and last.alpha > first.alpha
    assert later.kernels, "the profiler saw no kernels"
    assert later.kernels - warm_up.kernels == set()


def test_a_time_limit_starts_after_the_first_step_of_the_process(tmp_path, monkeypatch):
    """The first step compiles the kernels (minutes on a fresh machine): --minutes must not count it,
    and a later call in the same process (quality.py's segments) counts every step."""
    now = [0.0]
    monkeypatch.setattr(jgan.training.time, "time", lambda: now[0])
    t = trainer("wgan-gp", tmp_path, {"train": {"sample_every": 1000, "ckpt_every": 1000, "log_every": 1000}})
    step = t.iteration

    def timed_iteration(*args):
        now[0] += 1000.0 if not t.has_stepped else 1.0   # compiling, then one second a step
        return step(*args)

    monkeypatch.setattr(t, "iteration", timed_iteration)
    t.train(100, seconds=5.5)
    assert t.step == 1 + 6
    t.train(100, seconds=2.5)
    assert t.step == 7 + 3


def test_checkpoint_round_trip_restores_everything(tmp_path):
    t = trainer("wgan-gp", tmp_path)
    run_iterations(t, 2)
    path = t.save()
    document = ckpt.load_checkpoint(path)
    fresh = trainer("wgan-gp", tmp_path)
    fresh.restore(document)
    assert (fresh.step, fresh.images) == (2, 2 * 2 * 4)
    for name in ("generator", "discriminator", "generator_ema"):
        restored = ckpt.module_state(fresh.model.modules()[name])
        for key, value in document["networks"][name].items():
            np.testing.assert_array_equal(restored[key], value, err_msg=f"{name}.{key}")
    for name in ("generator", "discriminator"):
        optimizer = fresh.model.optimizers()[name]
        saved = document["optimizers"][name]
        assert optimizer.n_step == saved["n_step"] == 2 * (2 if name == "discriminator" else 1)
        for var, array in zip(optimizer.param_groups[0]["m"], saved["groups"][0]["m"]):
            np.testing.assert_array_equal(var.numpy(), array)
    np.testing.assert_array_equal(fresh.sample_inputs, t.sample_inputs)


def test_restore_refuses_a_checkpoint_of_another_arch(tmp_path):
    t = trainer("wgan-gp", tmp_path)
    document = {"arch": "dcgan", "path": "x.jgan"}
    with pytest.raises(jgan.errors.CheckpointError, match="is a dcgan checkpoint, not wgan-gp"):
        t.restore(document)


def test_ema_is_the_running_average_of_the_weights():
    model, ema = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema.eval()
    before = {k: v.numpy().copy() for k, v in ema.state_dict().items()}
    model_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    WeightAverage(ema, model).update(0.9)
    after = {k: v.numpy() for k, v in ema.state_dict().items()}
    np.testing.assert_allclose(after["0.weight"], 0.9 * before["0.weight"] + 0.1 * model_state["0.weight"],
                               rtol=1e-6)
    np.testing.assert_array_equal(after["1.running_mean"], model_state["1.running_mean"])


def test_the_weight_average_follows_weights_loaded_after_it_was_made():
    """WeightAverage finds its pairs of Vars once; a state loaded into the model (resume,
    --init-from) must still be what it averages."""
    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    average = WeightAverage(ema, model)
    loaded = np.full((2, 3), 4.0, dtype=np.float32)
    model.load_state_dict({"weight": loaded, "bias": np.zeros(2, dtype=np.float32)})
    before = ema.weight.numpy().copy()
    average.update(0.5)
    np.testing.assert_allclose(ema.weight.numpy(), 0.5 * before + 0.5 * loaded, rtol=1e-6)


def test_a_phase_trains_only_the_weights_it_reaches_and_keeps_the_rest_as_they_were(tmp_path):
    """At 8 px the 16 px block and its to-RGB are frozen: unchanged, and their Adam moments too
    (PyTorch skips parameters without a gradient). The 16 px fade-in unfreezes and trains them
    and freezes the 32 px block and the 4 px to-RGB instead; buffers never become trainable."""
    t = trainer("stylegan", tmp_path, {"progressive": {"phase": 10 ** 6}})
    idle = {"progression.2.conv1.weight", "to_rgb.2.weight"}
    before = {name: t.model.generator.state_dict()[name].numpy().copy() for name in idle}
    buffers = {name for name, var in t.model.generator.state_dict().items() if var.is_stop_grad()}
    run_iterations(t, 2)
    state = t.model.generator.state_dict()
    for name in idle:
        assert state[name].is_stop_grad(), f"{name} is trainable at 8 px"
        np.testing.assert_array_equal(state[name].numpy(), before[name], err_msg=name)
    optimizer_g = t.model.optimizers()["generator"]
    index = [id(p) for g in optimizer_g.param_groups for p in g["params"]].index(id(state["to_rgb.2.weight"]))
    moments = [v for g in optimizer_g.param_groups for v in g["values"]]
    assert not np.any(moments[index].numpy()), "a frozen weight's second moment changed"
    assert np.any(state["to_rgb.1.weight"].numpy() != t.model.generator_ema.state_dict()["to_rgb.1.weight"].numpy())
    t.images = 2 * 10 ** 6                   # the 16 px fade-in
    run_iterations(t, 1)
    for name in idle:
        assert not state[name].is_stop_grad() and np.any(state[name].numpy() != before[name]), \
            f"{name} was not trained at 16 px"
    frozen = {name for name, var in state.items() if var.is_stop_grad()} - buffers
    assert frozen and all(name.startswith(("progression.3.", "to_rgb.3.", "to_rgb.0.")) for name in frozen)


def test_style_mixing_draws_a_crossover_within_the_current_layers(tmp_path):
    t = trainer("stylegan", tmp_path, {"progressive": {"mixing": 1.0}})
    phase = t.schedule.phase(10 ** 6)    # 16 px: level 2
    context = StepContext(phase, step=0, images=0, rng=np.random.RandomState(0), world=1, update=None)
    for _ in range(20):
        (latents,), kwargs = t.model.latents(3, context)
        assert len(latents) == 2 and 1 <= int(kwargs["crossover"].item()) <= phase.level
    t.model.mixing = 1e-9
    (latents,), kwargs = t.model.latents(3, context)
    assert int(kwargs["crossover"].item()) == NO_MIXING


def test_stylegan_tracks_the_average_latent(tmp_path):
    t = trainer("stylegan", tmp_path)
    generator, generator_ema = t.model.generator, t.model.generator_ema
    assert float(generator.w_avg.abs().sum().item()) == 0
    run_iterations(t, 2)
    assert float(generator.w_avg.abs().sum().item()) > 0
    np.testing.assert_array_equal(generator_ema.w_avg.numpy(), generator.w_avg.numpy())


def test_augmentation_shows_the_discriminator_augmented_real_and_fake_images(tmp_path):
    """With train.augment = cutout, every image D scores (real, fake, and the penalty's mixes) has a
    zeroed square; the generator still learns through the augmentation."""
    t = trainer("wgan-gp", tmp_path, {"train": {"augment": "cutout", "n_critic": 1}})
    seen = []
    score = t.model.discriminator.score
    t.model.discriminator.score = lambda x, parts: seen.append(x.numpy()) or score(x, parts)
    before = {n: v.numpy().copy() for n, v in t.model.generator.state_dict().items() if "running" not in n}
    t.iteration({"images": iter([jt.ones((4, 3, 32, 32))])}, t.schedule.phase(0))
    jt.sync_all(True)
    assert len(seen) >= 3, "D scored the pair, the penalty's mixes and the generator's fakes"
    real = seen[0][:4]
    assert ((real == 0).all(axis=1).reshape(4, -1).any(1)).all(), "a real image without a cutout"
    assert (real == 1).any(), "the cutout covers the whole image"
    for images in seen:
        assert (images == 0).all(axis=1).reshape(len(images), -1).any(1).all()
    after = t.model.generator.state_dict()
    assert all(np.any(after[n].numpy() != value) for n, value in before.items() if n.endswith("weight"))


def test_no_augmentation_scores_the_images_as_they_are(tmp_path):
    t = trainer("wgan-gp", tmp_path, {"train": {"n_critic": 1}})
    seen = []
    score = t.model.discriminator.score
    t.model.discriminator.score = lambda x, parts: seen.append(x.numpy()) or score(x, parts)
    t.iteration({"images": iter([jt.ones((4, 3, 32, 32))])}, t.schedule.phase(0))
    np.testing.assert_array_equal(seen[0][:4], np.ones((4, 3, 32, 32), np.float32))


def test_a_progressive_run_keeps_each_networks_learning_rate_unless_progressive_lr_names_one(tmp_path):
    t = trainer("stylegan", tmp_path, {"optim": {"lr_g": 1e-3, "lr_d": 4e-3}, "progressive": {"lr": {16: 5e-4}}})
    optimizers = t.model.optimizers()
    rates = lambda: (optimizers["generator"].lr, optimizers["discriminator"].lr)   # noqa: E731
    t.set_learning_rate(t.schedule.phase(0))
    assert rates() == (1e-3, 4e-3), "8 px has no progressive.lr: optim.lr_g and lr_d apply"
    t.set_learning_rate(t.schedule.phase(10 ** 7))
    assert rates() == (5e-4, 5e-4), "progressive.lr sets both networks at 16 px"
    t.set_learning_rate(t.schedule.phase(0))
    assert rates() == (1e-3, 4e-3)


def test_a_stage_of_a_progressive_run_sets_both_learning_rates_over_progressive_lr(tmp_path):
    t = trainer("stylegan", tmp_path, {"optim": {"lr_g": 1e-3, "lr_d": 4e-3}, "progressive": {"lr": {16: 5e-4}},
                                       "train": {"stages": [{"images": 10 ** 6, "lr": 2e-5}]}})
    optimizers = t.model.optimizers()
    t.set_learning_rate(t.schedule.phase(10 ** 6 - 1))
    assert (optimizers["generator"].lr, optimizers["discriminator"].lr) == (5e-4, 5e-4)
    t.set_learning_rate(t.schedule.phase(10 ** 6))
    assert (optimizers["generator"].lr, optimizers["discriminator"].lr) == (2e-5, 2e-5)


def test_a_stage_sets_both_learning_rates_and_the_batch_from_its_images_on(tmp_path):
    t = trainer("wgan-gp", tmp_path, {"optim": {"lr_g": 1e-3, "lr_d": 4e-3},
                                      "train": {"n_critic": 1, "stages": [{"images": 8, "lr": 5e-5, "batch": 8}]}})
    optimizers = t.model.optimizers()
    rates = lambda: (optimizers["generator"].lr, optimizers["discriminator"].lr)   # noqa: E731
    run_iterations(t, 2)
    assert rates() == (1e-3, 4e-3) and t.images == 8
    run_iterations(t, 2)
    assert rates() == (5e-5, 5e-5) and t.images == 8 + 2 * 8


def test_a_bf16_run_makes_the_updates_of_a_float32_run_to_bfloat16s_precision(tmp_path, monkeypatch):
    """WGAN-GP (its penalty differentiates the critic's convolutions twice), two iterations each."""
    from jgan import onednn_conv, runtime
    monkeypatch.setattr(onednn_conv, "cpu_flags", lambda: {"amx_bf16"})   # runs, if slower, on any CPU
    updates = {}
    try:
        for precision in ("fp32", "bf16"):
            t = trainer("wgan-gp", tmp_path / precision, {"train": {"precision": precision}})
            assert onednn_conv.bfloat16_enabled() == (precision == "bf16")
            before = np.concatenate([p.numpy().ravel() for p in t.model.generator.parameters()])
            run_iterations(t, 2)
            updates[precision] = np.concatenate([p.numpy().ravel() for p in t.model.generator.parameters()]) - before
    finally:
        runtime.set_precision("fp32")
    gap = np.linalg.norm(updates["bf16"] - updates["fp32"]) / np.linalg.norm(updates["fp32"])
    assert 0 < gap < 0.05, f"the bf16 updates differ from float32's by {gap:.1%} of their size"
