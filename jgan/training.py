"""The one training loop of jgan: every architecture, fixed-size or progressive.

Architectures differ only by their networks, their loss and their schedule. Values that change
every step (fade-in alpha, style-mixing crossover) enter the graph as jt.Vars so that a phase
compiles its kernels once.
"""
import json
import math
import time
from pathlib import Path

import jittor as jt
import numpy as np
from tqdm import tqdm

from jgan import checkpoint as ckpt
from jgan.config import save_config
from jgan.data import training_stream
from jgan.errors import CheckpointError, ConfigError, JganError
from jgan.kernels import multi_tensor_update
from jgan.losses import build_loss
from jgan.networks import build_networks, latent_dim
from jgan.optim import FusedAdam
from jgan.schedule import build_schedule
from jgan.visual import plot_log, save_grid

NO_MIXING = 10 ** 6  # a crossover beyond every layer: the first latent styles them all
W_AVG_DECAY = 0.995  # running average of the mapping output, the centre of truncation (Karras et al.)
EMA_BODY = "out0[i] = in0[i] * h[0] + in1[i] * h[1];"   # ema * decay + weight * (1 - decay)


def is_main_process():
    """True except on the MPI ranks other than 0, which train but write nothing."""
    return not jt.in_mpi or jt.rank == 0


def mean_over_ranks(var):
    """The mean of a Var over the MPI ranks (the Var itself without MPI)."""
    return var.mpi_all_reduce("mean") if jt.in_mpi else var


class TrainingDiverged(JganError):
    """A loss became NaN or infinite."""


def build_optimizer(params, optim, lr):
    if optim["name"] == "adam":
        return FusedAdam(params, lr, betas=tuple(optim["betas"]))
    if optim["name"] == "rmsprop":
        return jt.optim.RMSprop(params, lr, eps=optim.get("eps", 1e-8), alpha=optim.get("alpha", 0.99))
    raise ConfigError(f"unknown optimiser {optim['name']!r}; choose adam or rmsprop")


def copy_weights(source, target):
    target.load_state_dict({k: v.clone() for k, v in source.state_dict().items()})


def trainable_names(module):
    """Names of a module's trainable weights in its state dict (the rest are buffers)."""
    return {name for name, var in module.state_dict().items() if not var.is_stop_grad()}


def accumulate(ema, model, decay, averaged=None):
    """EMA of the weights, ema = decay * ema + (1 - decay) * model (one multi-tensor kernel op),
    over the state entries named in `averaged` (default: the model's trainable weights); the
    other entries (buffers) are copied as they are."""
    averaged = trainable_names(model) if averaged is None else averaged
    model_state = model.state_dict()
    targets, sources = [], []
    for name, var in ema.state_dict().items():
        source = model_state[name].detach()
        if name in averaged:
            targets.append(var)
            sources.append(source)
        else:
            var.update(source)
    if targets:
        hyper = jt.array([decay, 1 - decay], dtype=targets[0].dtype)
        updated, = multi_tensor_update(EMA_BODY, [targets, sources], hyper, outputs=1)
        for var, new in zip(targets, updated):
            var.update(new)


class Trainer:
    """Trains one run: builds the networks, loss, optimisers and schedule from a configuration."""

    def __init__(self, config, data_path, run_dir, sample_dir, progress=True, nan_policy="stop"):
        self.config, self.data_path = config, data_path
        self.run_dir, self.sample_dir = Path(run_dir), Path(sample_dir)
        self.arch, self.train_cfg = config["arch"], config["train"]
        self.progress, self.nan_policy, self.skipped_steps = progress and is_main_process(), nan_policy, 0
        self.world = jt.world_size if jt.in_mpi else 1
        self.schedule = build_schedule(config)
        # The initial weights follow --seed, identically on every MPI rank.
        jt.set_global_seed(self.train_cfg["seed"], different_seed_for_mpi=False)
        self.generator, self.discriminator = build_networks(self.arch, config["model"])
        self.generator_weights = trainable_names(self.generator)
        self.frozen, self.frozen_step = [], None
        self.generator_ema = None
        if self.train_cfg["ema"] > 0:
            self.generator_ema, _ = build_networks(self.arch, config["model"])
            copy_weights(self.generator, self.generator_ema)
            self.generator_ema.eval()
        if self.train_cfg["metrics"]:
            from jgan.metrics import check_metrics
            check_metrics(self.train_cfg["metrics"], self.train_cfg["metrics_n"])
        self.loss = build_loss(**config["loss"])
        optim = config["optim"]
        self.optimizer_g = build_optimizer(self.generator.parameters(), optim, optim["lr_g"])
        self.optimizer_d = build_optimizer(self.discriminator.parameters(), optim, optim["lr_d"])
        self.step, self.images = 0, 0
        self.latent = latent_dim(self.arch, config["model"])
        rng = np.random.RandomState(self.train_cfg["seed"] + 12345)
        self.fixed_z = rng.randn(self.train_cfg["n_sample"], self.latent).astype(np.float32)
        self.loader_key, self.batch_iterator = None, None
        self.rng = np.random.RandomState(self.train_cfg["seed"])

    # ----- state -----------------------------------------------------------------------------
    def payload(self):
        networks = {"generator": ckpt.module_state(self.generator),
                    "discriminator": ckpt.module_state(self.discriminator)}
        if self.generator_ema is not None:
            networks["generator_ema"] = ckpt.module_state(self.generator_ema)
        return {"arch": self.arch, "config": self.config, "step": self.step, "images": self.images,
                "networks": networks,
                "optimizers": {"generator": ckpt.optimizer_state(self.optimizer_g),
                               "discriminator": ckpt.optimizer_state(self.optimizer_d)},
                "rng": {"seed": self.train_cfg["seed"], "scheme": "every draw seeded from (seed, step)"},
                "fixed_z": self.fixed_z}

    def restore(self, document):
        if document.get("arch") != self.arch:
            raise CheckpointError(f"{document['path']} is a {document.get('arch')} checkpoint, "
                                  f"not {self.arch}; pass --arch {document.get('arch')}")
        networks = document["networks"]
        missing = [k for k in ("optimizers", "fixed_z") if k not in document]
        missing += [k for k in ("generator", "discriminator") if k not in networks]
        if missing:
            raise CheckpointError(f"{document['path']} cannot be resumed: it holds no {missing[0]} "
                                  f"(a converted checkpoint?); use it with generate.py")
        ckpt.load_module_state(self.generator, networks["generator"], "generator")
        ckpt.load_module_state(self.discriminator, networks["discriminator"], "discriminator")
        if self.generator_ema is not None:
            ckpt.load_module_state(self.generator_ema, networks.get("generator_ema", networks["generator"]),
                                   "EMA generator")
        ckpt.load_optimizer_state(self.optimizer_g, document["optimizers"]["generator"])
        ckpt.load_optimizer_state(self.optimizer_d, document["optimizers"]["discriminator"])
        self.step, self.images = document["step"], document["images"]
        self.fixed_z = document["fixed_z"]

    def save(self):
        """Write a checkpoint (MPI rank 0 only); a failed write (disk full) keeps the previous one."""
        checksums = self.rank_checksums()
        if not is_main_process():
            return ckpt.checkpoint_path(self.run_dir, self.step)
        if len(set(checksums)) > 1:
            raise CheckpointError(f"the MPI ranks hold different weights at step {self.step} "
                                  f"(parameter sums {checksums}); the last checkpoint is kept")
        try:
            return ckpt.save_checkpoint(self.run_dir, self.step, {**self.payload(), "rank_checksums": checksums})
        except OSError as error:
            raise CheckpointError(f"could not write the step-{self.step} checkpoint to {self.run_dir} "
                                  f"({error.strerror or error}); the previous checkpoint is kept: "
                                  f"free some space and continue with --resume") from None

    def rank_checksums(self):
        """The sum of every weight (G, D and EMA G) on each MPI rank, gathered on every rank."""
        modules = [m for m in (self.generator, self.discriminator, self.generator_ema) if m is not None]
        total = sum(float(var.float64().sum().item()) for m in modules for var in m.state_dict().values())
        if not jt.in_mpi:
            return [total]
        slots = np.zeros(self.world)
        slots[jt.rank] = total
        return [float(v) for v in jt.array(slots).mpi_all_reduce("add").numpy()]

    # ----- one iteration ---------------------------------------------------------------------
    def phase_inputs(self, phase):
        """Keyword arguments the networks take for this phase (progressive nets only)."""
        if not self.schedule.progressive:
            return {}
        return {"step": phase.step, "alpha": jt.array(np.float32(phase.alpha))}

    def latents(self, batch, phase):
        """Generator input: z, or for style mixing two z's and a crossover Var."""
        mixing = self.config.get("progressive", {}).get("mixing", 0.0)
        if not mixing:
            return (jt.randn(batch, self.latent),), {}
        crossover = self.rng.randint(1, max(1, phase.step) + 1) if self.rng.rand() < mixing else NO_MIXING
        z = [jt.randn(batch, self.latent), jt.randn(batch, self.latent)]
        return (z,), {"crossover": jt.array(np.float32(crossover))}

    def generate(self, generator, batch, phase, inputs):
        args, mixing = self.latents(batch, phase)
        return generator(*args, **inputs, **mixing)

    def seed_iteration(self):
        """Seed every random draw of this iteration from (seed, step, MPI rank), so a resumed run
        draws the same numbers as an uninterrupted one."""
        rank = jt.rank if jt.in_mpi else 0
        seed = (self.train_cfg["seed"] * 1_000_003 + self.step * 7919 + rank) % 2 ** 31
        jt.set_seed(seed)
        self.rng = np.random.RandomState(seed)

    def optimizer_step(self, optimizer, loss, name):
        """Apply one update; a loss that is not finite stops training (nothing more is saved, so
        the last checkpoint stays the last good one) or, with --nan-policy skip, is not applied.

        Under `stop` the value is read after the update: reading it first would make Jittor run
        every forward pass before any backward and keep all their activations (a third more
        memory for StyleGAN at 64 px)."""
        if self.nan_policy == "skip":
            if self.finite(loss):
                optimizer.step(loss)
            else:
                self.skipped_steps += 1
            return
        optimizer.step(loss)
        if not self.finite(loss):
            raise TrainingDiverged(f"the {name} loss is not finite at step {self.step + 1}; the last "
                                   f"good checkpoint in {self.run_dir} is kept: resume from it with a "
                                   f"lower --lr, or pass --nan-policy skip")

    @staticmethod
    def finite(loss):
        """Whether the loss is finite (on every MPI rank: all take the same decision)."""
        return math.isfinite(float(mean_over_ranks(loss.detach()).item()))

    def iteration(self, batches, phase):
        """n_critic discriminator steps, then one generator step; returns the loss terms (Vars)."""
        self.seed_iteration()
        inputs = self.phase_inputs(phase)
        self.freeze_idle_weights(inputs)

        def critic(*images):
            return self.discriminator(*images, **inputs)
        critic.scores_batches = True

        terms = {}
        for _ in range(self.train_cfg["n_critic"]):
            real = next(batches)
            fake = self.generate(self.generator, real.shape[0], phase, inputs).detach()
            d_loss, d_terms = self.loss.discriminator_loss(critic, real, fake)
            self.optimizer_step(self.optimizer_d, d_loss, "discriminator")
            self.loss.after_discriminator_step(self.discriminator)
            self.images += phase.batch  # the global batch: under MPI each rank holds a share
            terms.update({"d_loss": d_loss, **d_terms})
        fake = self.generate(self.generator, phase.batch // self.world, phase, inputs)
        g_loss, g_terms = self.loss.generator_loss(critic, fake)
        self.optimizer_step(self.optimizer_g, g_loss, "generator")
        self.track_average_latent(phase.batch // self.world)
        if self.generator_ema is not None:
            accumulate(self.generator_ema, self.generator, self.train_cfg["ema"], self.generator_weights)
        self.step += 1
        jt.sync_all()  # run every pending update now, so each iteration runs the same fused kernels
        return {"g_loss": g_loss, **g_terms, **terms}

    def freeze_idle_weights(self, inputs):
        """Take the weights a progressive phase never reaches out of both optimisers, as PyTorch
        skips parameters without a gradient: no zero gradients are made for them, no update is
        applied and their Adam moments are kept for when they are reached (6-8% of an 8 px
        StyleGAN iteration). The EMA still averages them, as rosinality's accumulate does."""
        if not inputs or inputs["step"] == self.frozen_step:
            return
        for var in self.frozen:
            var.start_grad()
        self.frozen = [var for network in (self.generator, self.discriminator)
                       for module in network.idle_modules(**inputs)
                       for var in module.parameters() if not var.is_stop_grad()]
        for var in self.frozen:
            var.stop_grad()
        self.frozen_step = inputs["step"]

    def track_average_latent(self, batch):
        """Update the generator's running average w (StyleGAN's truncation centre), if it has one."""
        if hasattr(self.generator, "update_w_avg"):
            with jt.no_grad():
                self.generator.update_w_avg(self.generator.style(jt.randn(batch, self.latent)), W_AVG_DECAY)
                if jt.in_mpi:
                    self.generator.w_avg.update(mean_over_ranks(self.generator.w_avg).stop_grad())

    # ----- outputs ---------------------------------------------------------------------------
    def sample(self, phase):
        if not is_main_process():
            return None
        generator = self.generator_ema or self.generator
        generator.eval()
        with jt.no_grad():
            images = generator(jt.array(self.fixed_z), **self.phase_inputs(phase))
        if generator is self.generator:
            generator.train()
        return save_grid(images, self.sample_dir / f"{self.step:07d}.png",
                         nrow=int(math.sqrt(len(self.fixed_z))))

    def evaluate(self, phase):
        """Quality metrics of the (EMA) generator against the data, appended to metrics.jsonl
        (on MPI rank 0, over all the images asked for)."""
        if not is_main_process():
            return None
        from jgan import metrics
        from jgan.generation import TrainedGenerator
        generator = self.generator_ema or self.generator
        generator.eval()
        trained = TrainedGenerator(generator, self.arch, self.latent, phase.step,
                                   self.phase_inputs(phase).get("alpha", 1.0))
        result = metrics.evaluate(trained, self.data_path, metrics=self.train_cfg["metrics"].split(","),
                                  n=self.train_cfg["metrics_n"], seed=0)
        if generator is self.generator:
            generator.train()
        metrics.append_record(self.run_dir, {"step": self.step, "images": self.images, **result})
        plot_log(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.png")
        return result

    def log(self, record):
        if not is_main_process():
            return
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def batches(self, phase):
        """The batch iterator for this phase; rebuilt when the size or the batch changes."""
        key = (phase.size, phase.batch)
        if phase.batch % self.world:
            raise ConfigError(f"the batch of {phase.batch} images at {phase.size} px cannot be split "
                              f"over {self.world} MPI ranks; use a batch divisible by {self.world}")
        if key != self.loader_key:
            self.loader_key = key
            self.batch_iterator = training_stream(self.data_path, phase.size, phase.batch,
                                                  self.train_cfg["seed"], start=self.images,
                                                  flip=self.train_cfg["flip"],
                                                  num_workers=self.train_cfg["num_workers"],
                                                  rank=jt.rank if jt.in_mpi else 0, world=self.world)
        return self.batch_iterator

    def set_learning_rate(self, phase):
        if self.schedule.progressive:
            self.optimizer_g.lr = self.optimizer_d.lr = phase.lr

    # ----- the loop --------------------------------------------------------------------------
    def train(self, iters, seconds=None):
        """Train until `iters` generator steps have been done in total, or for `seconds` at most."""
        self.batches(self.schedule.phase(self.images))  # checks the data before anything is written
        if is_main_process():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.sample_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.run_dir)
            save_config(self.config, self.run_dir / "config.yaml")
        self.generator.train()
        self.discriminator.train()
        every = self.train_cfg
        last_index = None
        bar = tqdm(total=iters, initial=self.step, disable=not self.progress, dynamic_ncols=True,
                   desc=self.arch)
        started = time.time()
        try:
            while self.step < iters:
                if seconds is not None and self.time_is_up(time.time() - started > seconds):
                    break
                phase = self.schedule.phase(self.images)
                if last_index is not None and phase.index != last_index:
                    self.save()
                last_index = phase.index
                self.set_learning_rate(phase)
                terms = self.iteration(self.batches(phase), phase)
                bar.update(1)
                if self.step % every["log_every"] == 0 or self.step == iters:
                    values = {k: float(mean_over_ranks(v.detach()).item()) for k, v in terms.items()}
                    record = {"step": self.step, "images": self.images, "size": phase.size,
                              "alpha": round(phase.alpha, 4), **values,
                              **({"skipped": self.skipped_steps} if self.skipped_steps else {}),
                              "seconds": round(time.time() - started, 2)}
                    self.log(record)
                    bar.set_postfix_str(self.status(phase, values))
                if self.step % every["sample_every"] == 0 or self.step == iters:
                    self.sample(phase)
                    if is_main_process():
                        plot_log(self.run_dir / "log.jsonl", self.run_dir / "loss.png")
                if every["metrics"] and every["metrics_every"] and self.step % every["metrics_every"] == 0:
                    self.evaluate(phase)
                if self.step % every["ckpt_every"] == 0 or self.step == iters:
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            path = self.save()
            raise KeyboardInterrupt(f"saved {path} at step {self.step}") from None
        bar.close()
        if self.step % every["ckpt_every"] and self.step != iters:  # stopped early: by the clock
            self.sample(self.schedule.phase(self.images))
            self.save()
        return ckpt.checkpoint_path(self.run_dir, self.step)

    def time_is_up(self, here):
        """Whether to stop for the time limit: under MPI, when rank 0's clock says so."""
        if not jt.in_mpi:
            return here
        return bool(jt.array([float(here) if jt.rank == 0 else 0.0]).mpi_all_reduce("add").item() > 0)

    @staticmethod
    def status(phase, values):
        parts = [f"{phase.size}px"]
        if phase.fading:
            parts.append(f"a {phase.alpha:.2f}")
        parts += [f"{k} {v:.3f}" for k, v in values.items() if k in ("d_loss", "g_loss", "gp", "div", "r1")]
        return " ".join(parts)
