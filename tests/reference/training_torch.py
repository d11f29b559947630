"""PyTorch reference training, for the benchmarks: the reference nets of this folder trained with
jgan's recipes, laid out as jgan's training step, and a train.py-like loop around them that reads
the LMDB with a standard PyTorch DataLoader.

    TorchIteration, TorchTranslationIteration   one training step (scripts/bench.py times it alone)
    LMDBImages, lmdb_loader, endless            the LMDB as a PyTorch dataset and loader
    TorchTrainingRun                            the loop: steps, logs, sample grids, checkpoints
                                                at train.py's cadence (scripts/bench.py --e2e)
    bfloat16_convolutions                       jgan's train.precision bf16 in PyTorch

Importing this module imports PyTorch but not Jittor; it is never imported by jgan's training path.
"""
import copy
import json
import os
import random

import numpy as np
import torch

from jgan import registry
from jgan.data import ImageDataset
from jgan.stopwatch import IDLE
from jgan.visual import grid, save_image, to_uint8
from reference import cyclegan_torch, losses_torch, pggan_torch, stylegan_torch
from reference.dcgan_torch import torch_networks

NO_MIXING = 10 ** 6     # a style-mixing crossover beyond every layer (as jgan.models.stylegan's)


# ----- data -------------------------------------------------------------------------------------
def bfloat16_convolutions():
    """From now on in this process, every ungrouped float32 convolution (F.conv2d, F.conv_transpose2d and
    the nn modules that call them) runs on bfloat16 copies of its input and weight and returns float32
    plus its float32 bias, as jgan's `train.precision: bf16` does; the casts are differentiable, so the
    gradients' convolutions are bfloat16 ones too. (PyTorch's result is rounded to bfloat16 before it
    is widened; jgan's is not.)"""
    import torch.nn.functional as F

    def bfloat16(original):
        def convolution(x, weight, bias=None, *args, **kwargs):
            groups = kwargs.get("groups", args[3] if len(args) > 3 else 1)   # the 4th after bias in both
            if groups != 1 or x.dtype != torch.float32:
                return original(x, weight, bias, *args, **kwargs)
            y = original(x.bfloat16(), weight.bfloat16(), None, *args, **kwargs).float()
            return y if bias is None else y + bias.reshape(1, -1, 1, 1)
        return convolution

    F.conv2d, F.conv_transpose2d = bfloat16(F.conv2d), bfloat16(F.conv_transpose2d)


class LMDBImages:
    """jgan.data.ImageDataset as a map-style PyTorch dataset, each image mirrored with probability 1/2
    when `flip` (Python's `random`, which PyTorch seeds in each loader worker)."""

    def __init__(self, path, size, flip):
        self.path, self.size, self.flip = path, size, flip
        self.dataset, self.pid = ImageDataset(path, size), os.getpid()

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if self.pid != os.getpid():   # a forked loader worker opens the LMDB again
            self.dataset, self.pid = ImageDataset(self.path, self.size), os.getpid()
        mirrored = self.flip and random.random() < 0.5
        return self.dataset[index + len(self.dataset) * mirrored]


def lmdb_loader(path, size, batch, workers, flip):
    """A shuffled DataLoader of full batches of the `size` px images (`workers` loader processes)."""
    from jgan.data import check_batch_size
    dataset = LMDBImages(path, size, flip)
    check_batch_size(batch, dataset.dataset)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0)


def endless(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


# ----- one training step ------------------------------------------------------------------------
class TorchIteration:
    """One training iteration of the PyTorch reference nets, laid out as jgan's training step:
    StyleGAN's reference for a styled architecture, PGGAN's for another progressive one, the
    DCGAN family's otherwise. `batches`: {"images": iterator of (B, 3, H, W) tensors}."""
    streams = ("images",)

    def __init__(self, config, batches, device, stopwatch=IDLE):
        self.device, self.stopwatch = torch.device(device), stopwatch
        self.config, self.arch = config, config["arch"]
        self.progressive = registry.get(self.arch).progressive
        self.styled = registry.get(self.arch).styled
        model, optim, train = config["model"], config["optim"], config["train"]
        self.loss = dict(config["loss"])
        self.loss_name = self.loss.pop("name")
        self.n_critic, self.ema_decay = train["n_critic"], train["ema"]
        self.steps = 0   # generator steps taken: lazy regularisers fall on multiples of loss.every
        self.batches = batches["images"]
        torch.manual_seed(0)
        if self.styled:
            self.latent = model["code_dim"]
            self.generator = stylegan_torch.StyledGenerator(model["code_dim"], model["n_mlp"],
                                                            model["channels"], model["fused_from"])
            self.discriminator = stylegan_torch.Discriminator(model["channels"], model["fused_from"])
            self.w_avg = torch.zeros(1, self.latent, device=self.device)
            self.mixing = config["progressive"]["mixing"]
        elif self.progressive:
            self.latent = model["code_dim"]
            self.generator, self.discriminator = pggan_torch.torch_networks(model)
        else:
            self.latent = model["nz"]
            self.generator, self.discriminator = torch_networks(
                self.arch, model["size"], model["nz"], model["ngf"], model["ndf"],
                model.get("critic_norm", "instance"))
        self.generator.to(self.device).train()
        self.discriminator.to(self.device).train()
        self.generator_ema = None
        if self.ema_decay > 0:
            self.generator_ema = copy.deepcopy(self.generator).eval()
            for param in self.generator_ema.parameters():
                param.requires_grad_(False)
        self.optimizer_g = self.optimizer(self.generator_groups(optim), optim, optim["lr_g"])
        self.optimizer_d = self.optimizer(self.discriminator.parameters(), optim, optim["lr_d"])

    def generator_groups(self, optim):
        """rosinality's groups: the mapping network at lr * lr_mlp (0.01), the rest at lr."""
        if not self.styled:
            return [{"params": list(self.generator.parameters()), "lr": optim["lr_g"]}]
        lr_mlp = self.config["model"].get("lr_mlp", 0.01)
        return [{"params": list(self.generator.generator.parameters()), "lr": optim["lr_g"]},
                {"params": list(self.generator.style.parameters()), "lr": optim["lr_g"] * lr_mlp}]

    @staticmethod
    def optimizer(params, optim, lr):
        if optim["name"] == "rmsprop":
            return torch.optim.RMSprop(params, lr, eps=optim.get("eps", 1e-8), alpha=optim.get("alpha", 0.99))
        return torch.optim.Adam(params, lr, betas=tuple(optim["betas"]))

    def inputs(self, batch, level, generator=None):
        """Latents (and StyleGAN's noise maps) of `batch` images."""
        draw = dict(device=self.device, generator=generator)
        z = torch.randn(batch, self.latent, **draw)
        if not self.styled:
            return z
        noise = [tuple(torch.randn(batch, 1, 4 * 2 ** i, 4 * 2 ** i, **draw) for _ in range(2))
                 for i in range(level + 1)]
        return [z, torch.randn(batch, self.latent, **draw)], noise

    def generate(self, batch, level, alpha, generator=None, inputs=None):
        generator = generator or self.generator
        inputs = self.inputs(batch, level) if inputs is None else inputs
        if not self.progressive:
            return generator(inputs)
        if not self.styled:
            return generator(inputs, level, alpha)
        mixes = level > 0 and float(torch.rand(())) < self.mixing
        crossover = int(torch.randint(1, level + 1, ())) if mixes else NO_MIXING
        return generator(*inputs, level, alpha, crossover=crossover)

    def critic(self, level, alpha):
        if not self.progressive:
            return self.discriminator
        return lambda images: self.discriminator(images, level, alpha).view(-1)

    def step(self, optimizer, loss):
        """jgan checks every loss for finiteness on the host before it steps; so does this side."""
        with self.stopwatch.section("host_sync"):
            finite = torch.isfinite(loss).item()
        if not finite:
            raise FloatingPointError("the PyTorch reference diverged")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def iteration(self, level, alpha):
        """One generator step after n_critic critic steps; returns the last losses (tensors)."""
        critic = self.critic(level, alpha)
        regularise = self.steps % self.loss.get("every", 1) == 0
        for _ in range(self.n_critic):
            real = next(self.batches).to(self.device)
            batch = real.shape[0]
            with torch.no_grad():
                fake = self.generate(batch, level, alpha)
            eps = torch.rand(batch, 1, 1, 1, device=self.device)
            d_loss, _ = losses_torch.discriminator_loss(self.loss_name, critic, real, fake, eps, regularise,
                                                        **self.loss)
            self.step(self.optimizer_d, d_loss)
            if "clip" in self.loss:   # WGAN's weight clipping
                losses_torch.clip_weights(self.discriminator, self.loss["clip"])
        self.discriminator.requires_grad_(False)
        g_loss = losses_torch.generator_loss(self.loss_name, critic, self.generate(batch, level, alpha))
        self.step(self.optimizer_g, g_loss)
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            if self.styled:
                w = self.generator.style(torch.randn(batch, self.latent, device=self.device))
                self.w_avg.mul_(0.995).add_(w.mean(0, keepdim=True), alpha=0.005)
            if self.generator_ema is not None:
                for ema, param in zip(self.generator_ema.parameters(), self.generator.parameters()):
                    ema.mul_(self.ema_decay).add_(param, alpha=1 - self.ema_decay)
        self.steps += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def sample_inputs(self, count, level, seed):
        return self.inputs(count, level, torch.Generator(self.device).manual_seed(seed))

    def samples(self, inputs, level, alpha):
        """The sampling generator (the EMA's when there is one) in evaluation mode on fixed inputs."""
        generator = self.generator_ema or self.generator
        generator.eval()
        with torch.no_grad():
            if self.styled:   # fixed inputs: no mixing
                images = generator(*inputs, level, alpha, crossover=NO_MIXING)
            else:
                images = self.generate(len(inputs), level, alpha, generator, inputs)
        generator.train(generator is self.generator)
        return images

    def networks(self):
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        return {**nets, **({"generator_ema": self.generator_ema} if self.generator_ema is not None else {})}

    def optimizers(self):
        return {"g": self.optimizer_g, "d": self.optimizer_d}


class TorchTranslationIteration:
    """One training step of the PyTorch CycleGAN reference (tests/reference/cyclegan_torch.py),
    laid out as jgan.models.cyclegan's: both generators, then both discriminators on pooled fakes.
    `batches`: {"a": iterator, "b": iterator} of (B, 3, H, W) tensors, one per domain."""
    streams = ("a", "b")

    def __init__(self, config, batches, device, stopwatch=IDLE):
        self.reference, self.device = cyclegan_torch, torch.device(device)
        model, optim, loss = config["model"], config["optim"], config["loss"]
        blocks = model["blocks"] or (9 if model["size"] >= 256 else 6)
        torch.manual_seed(0)
        self.nets = {name: cyclegan_torch.init_weights(net).to(self.device).train() for name, net in (
            ("g_ab", cyclegan_torch.TorchResnetGenerator(model["ngf"], blocks)),
            ("g_ba", cyclegan_torch.TorchResnetGenerator(model["ngf"], blocks)),
            ("d_a", cyclegan_torch.TorchPatchDiscriminator(model["ndf"], model["d_layers"])),
            ("d_b", cyclegan_torch.TorchPatchDiscriminator(model["ndf"], model["d_layers"])))}
        parameters = {side: [p for name in names for p in self.nets[name].parameters()]
                      for side, names in (("g", ("g_ab", "g_ba")), ("d", ("d_a", "d_b")))}
        self.optimizer_g = torch.optim.Adam(parameters["g"], optim["lr_g"], betas=tuple(optim["betas"]))
        self.optimizer_d = torch.optim.Adam(parameters["d"], optim["lr_d"], betas=tuple(optim["betas"]))
        self.pools = {side: cyclegan_torch.TorchImagePool(config["train"]["pool"]) for side in ("a", "b")}
        self.weights = (loss["cycle"], loss["identity"])
        self.batches, self.stopwatch = batches, stopwatch
        self.rng = np.random.RandomState(0)

    def iteration(self, level, alpha):
        """Returns the losses, read on the host as jgan reads each of its losses to check it is finite."""
        real_a, real_b = (next(self.batches[name]).to(self.device) for name in self.streams)
        terms = self.reference.training_step(self.nets, self.optimizer_g, self.optimizer_d, self.pools,
                                             real_a, real_b, self.rng, *self.weights)
        for name, loss in terms.items():
            with self.stopwatch.section("host_sync"):
                terms[name] = loss.item()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return terms

    def sample_inputs(self, count, level, seed):
        """The first `count` images of each domain (fixed, as jgan's grid of translations)."""
        inputs = {}
        for name in self.streams:
            images = []
            while sum(len(batch) for batch in images) < count:
                images.append(next(self.batches[name]))
            inputs[name] = torch.cat(images)[:count].to(self.device)
        return inputs

    def samples(self, inputs, level, alpha):
        with torch.no_grad():
            return torch.cat([self.nets["g_ab"](inputs["a"]), self.nets["g_ba"](inputs["b"])])

    def networks(self):
        return self.nets

    def optimizers(self):
        return {"g": self.optimizer_g, "d": self.optimizer_d}


# ----- the loop ---------------------------------------------------------------------------------
class TorchTrainingRun:
    """train.py's loop in PyTorch: the reference step of the configuration's family on its LMDB(s)
    through DataLoaders (train.num_workers loader processes, shuffled, mirrored when train.flip),
    with train.py's cadence: a JSON log line every log_every steps, a sample grid (PNG) every
    sample_every, a checkpoint (torch.save, written to a temporary name and renamed) every
    ckpt_every, and each at the last step. `data`: {stream: LMDB}; one phase (level, alpha)."""

    def __init__(self, config, data, size, batch, level, alpha, run_dir, device, stopwatch=IDLE):
        self.config, self.train_cfg = config, config["train"]
        self.level, self.alpha, self.stopwatch = level, alpha, stopwatch
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        random.seed(self.train_cfg["seed"])
        torch.manual_seed(self.train_cfg["seed"])
        family = TorchTranslationIteration if registry.get(config["arch"]).translates else TorchIteration
        workers, flip = self.train_cfg["num_workers"], self.train_cfg["flip"]
        batches = {name: stopwatch.timed("data_wait", endless(lmdb_loader(data[name], size, batch, workers, flip)))
                   for name in family.streams}
        self.model = family(config, batches, device, stopwatch)
        self.sample_inputs = self.model.sample_inputs(self.train_cfg["n_sample"], level, self.train_cfg["seed"])
        self.step = 0

    def train(self, iters):
        every = self.train_cfg
        with open(os.path.join(self.run_dir, "log.jsonl"), "a", buffering=1) as log:
            while self.step < iters:
                with self.stopwatch.section("step"):
                    terms = self.model.iteration(self.level, self.alpha)
                self.step += 1
                last = self.step == iters
                if self.step % every["log_every"] == 0 or last:
                    with self.stopwatch.section("log"):
                        log.write(json.dumps({"step": self.step, **{k: float(v) for k, v in terms.items()}}) + "\n")
                if self.step % every["sample_every"] == 0 or last:
                    with self.stopwatch.section("sample"):
                        self.save_samples()
                if self.step % every["ckpt_every"] == 0 or last:
                    with self.stopwatch.section("checkpoint"):
                        self.save()

    def save_samples(self):
        images = to_uint8(self.model.samples(self.sample_inputs, self.level, self.alpha).cpu().numpy())
        save_image(grid(images, nrow=int(len(images) ** 0.5)), os.path.join(self.run_dir, f"{self.step:07d}.png"))

    def save(self):
        path = os.path.join(self.run_dir, "checkpoint.pt")
        torch.save({"step": self.step, "config": self.config,
                    "networks": {name: net.state_dict() for name, net in self.model.networks().items()},
                    "optimizers": {name: opt.state_dict() for name, opt in self.model.optimizers().items()}},
                   path + ".tmp")
        os.replace(path + ".tmp", path)
