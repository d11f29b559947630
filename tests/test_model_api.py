"""A new GAN family through the public interface alone: a model class, a preset and one registry
line, then the real loop trains it, checkpoints, resumes exactly, shows it in TensorBoard and
generate.py draws from it. Nothing in jgan is edited or told about it."""
import importlib.util
from pathlib import Path

import jittor as jt
import numpy as np
import pytest
import yaml
from jittor import nn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jgan import checkpoint as ckpt
from jgan import generation, registry
from jgan.config import load_config
from jgan.losses import Critic, build_loss
from jgan.models.base import GANModel
from jgan.optim import build_optimizer
from jgan.training import Trainer

REPO = Path(__file__).resolve().parent.parent
TOY_PRESET = {
    "arch": "toy-mlp",
    "model": {"size": 8, "nz": 8, "hidden": 32},
    "loss": {"name": "bce"},
    "optim": {"name": "adam", "lr_g": 2e-3, "lr_d": 2e-3, "betas": [0.5, 0.999]},
    "train": {"batch": 4, "iters": 5, "seed": 0, "flip": True, "num_workers": 0, "sample_every": 3,
              "ckpt_every": 3, "log_every": 1, "n_sample": 4, "metrics": "", "metrics_every": 0,
              "metrics_n": 16},
}


class MLPGenerator(nn.Module):
    def __init__(self, size, nz, hidden):
        self.size = size
        self.main = nn.Sequential(nn.Linear(nz, hidden), nn.ReLU(), nn.Linear(hidden, 3 * size * size), nn.Tanh())

    def execute(self, z):
        return self.main(z).reshape(z.shape[0], 3, self.size, self.size)


class MLPDiscriminator(nn.Module):
    def __init__(self, size, hidden):
        self.main = nn.Sequential(nn.Linear(3 * size * size, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def execute(self, x):
        return self.main(x.reshape(x.shape[0], -1)).reshape(x.shape[0])


class MLPGAN(GANModel):
    """Two 2-layer perceptrons on 8 px images with the non-saturating loss: the smallest family."""

    def __init__(self, config):
        super().__init__(config)
        model, optim = config["model"], config["optim"]
        self.generator = self.build_generator(model)
        self.discriminator = MLPDiscriminator(model["size"], model["hidden"])
        self.loss = build_loss(**config["loss"])
        self.optimizer_g = build_optimizer(self.generator.parameters(), optim, optim["lr_g"])
        self.optimizer_d = build_optimizer(self.discriminator.parameters(), optim, optim["lr_d"])
        self.nz = model["nz"]

    @classmethod
    def build_generator(cls, model_config):
        return MLPGenerator(model_config["size"], model_config["nz"], model_config["hidden"])

    def modules(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self):
        return {"generator": self.optimizer_g, "discriminator": self.optimizer_d}

    def sample_inputs(self, n, rng):
        return rng.randn(n, self.nz).astype(np.float32)

    def train_step(self, batches, context):
        critic = Critic(self.discriminator)
        real = next(batches["images"])
        fake = self.generator(jt.randn(real.shape[0], self.nz))
        d_loss, _ = self.loss.discriminator_loss(critic, real, fake.detach())
        context.update(self.optimizer_d, d_loss, "discriminator")
        g_loss, _ = self.loss.generator_loss(critic, self.generator(jt.randn(real.shape[0], self.nz)))
        context.update(self.optimizer_g, g_loss, "generator")
        return {"d_loss": d_loss, "g_loss": g_loss}


@pytest.fixture
def toy_arch(tmp_path):
    """The toy family registered for the test only: its model class, its preset and one line."""
    preset = tmp_path / "toy-mlp.yaml"
    preset.write_text(yaml.safe_dump(TOY_PRESET))
    registry.register(registry.Arch("toy-mlp", MLPGAN, preset=str(preset), latent_key="nz"))
    yield "toy-mlp"
    registry.unregister("toy-mlp")


def train(lmdb, folder, until, resume=False):
    trainer = Trainer(load_config("toy-mlp"), lmdb, folder / "run", folder / "sample", progress=False)
    if resume:
        trainer.restore(ckpt.load_checkpoint(folder / "run"))
    trainer.train(until)
    return trainer


def load_cli(name):
    spec = importlib.util.spec_from_file_location(name, REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_family_trains_checkpoints_resumes_and_generates(toy_arch, tiny_lmdb, tmp_path):
    trained = train(tiny_lmdb, tmp_path / "split", 3)
    document = ckpt.load_checkpoint(tmp_path / "split" / "run")
    assert (document["arch"], document["step"], document["images"]) == ("toy-mlp", 3, 12)
    assert set(document["networks"]) == set(document["optimizers"]) == {"generator", "discriminator"}
    assert (tmp_path / "split" / "sample" / "0000003.png").is_file()
    resumed = train(tiny_lmdb, tmp_path / "split", 5, resume=True)
    straight = train(tiny_lmdb, tmp_path / "straight", 5)
    assert (resumed.step, resumed.images) == (straight.step, straight.images) == (5, 20)
    for name, module in straight.model.modules().items():
        expected = ckpt.module_state(module)
        for key, value in ckpt.module_state(resumed.model.modules()[name]).items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}.{key}")
    assert trained.model is not resumed.model

    generator = generation.load_trained(tmp_path / "split" / "run")
    images, picture = generation.sample_grid(generator, 6, 3, seed=0)
    assert images.shape == (6, 3, 8, 8) and picture.dtype == np.uint8
    generate = load_cli("generate")
    args = generate.build_parser().parse_args(["-g", str(tmp_path / "split" / "run"), "--n", "4",
                                               "--out", str(tmp_path / "results"), "--walk"])
    generate.main(args)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["run-0000005-samples.png",
                                                                        "run-0000005-walk.gif"]


def test_a_three_step_run_shows_its_losses_and_samples_in_tensorboard(toy_arch, tiny_lmdb, tmp_path):
    train(tiny_lmdb, tmp_path, 3)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"Loss/d_loss", "Loss/g_loss", "Progress/images"} <= set(tags["scalars"])
    assert [event.step for event in events.Scalars("Loss/d_loss")] == [1, 2, 3]
    logged = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("Loss/g_loss")] == pytest.approx(
        [yaml.safe_load(line)["g_loss"] for line in logged], rel=1e-6)
    samples = events.Images(tags["images"][0])
    assert [image.step for image in samples] == [3]
    assert (samples[0].width, samples[0].height) == (2 + 2 * 10, 2 + 2 * 10)   # 2 x 2 grid of 8 px


@pytest.mark.parametrize("arch", ["pggan", "stylegan"])
def test_the_discriminator_takes_its_own_widths_where_model_critic_channels_gives_them(arch):
    config = load_config(arch, False, None, [{"model": {"code_dim": 8, "channels": [16, 16, 8],
                                                        "critic_channels": [12, 6, 4]},
                                              "progressive": {"init_size": 16, "max_size": 16}}])
    model = registry.get(arch).model_class()(config)
    assert model.generator.channels == (16, 16, 8)
    assert model.discriminator.channels == (12, 6, 4)
    widths = {tuple(p.shape)[:2] for p in model.discriminator.parameters() if len(p.shape) == 4}
    assert (6, 4) in widths and (12, 6) in widths   # the 16 -> 8 and 8 -> 4 px blocks' convs
    fake = model.generator(jt.randn(2, 8), level=2)
    assert tuple(fake.shape) == (2, 3, 16, 16) and tuple(model.discriminator(fake, level=2).shape) == (2,)
