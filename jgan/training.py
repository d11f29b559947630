"""The one training loop of jgan, for every GAN family (jgan.models) without knowing which.

It keeps what all families share: the data streams a model declares, per-step seeding (so a
resumed run draws the same numbers), the schedule, the NaN policy, MPI, the time limit, and the
cadence of logs, sample grids, metrics and checkpoints.
"""
import math
import time
from pathlib import Path

import jittor as jt
import numpy as np
from tqdm import tqdm

from jgan import checkpoint as ckpt
from jgan import registry, runtime, stopwatch
from jgan.config import save_config
from jgan.data import BadRecords, training_stream
from jgan.errors import CheckpointError, ConfigError, DataError, JganError
from jgan.models.base import StepContext, evaluation_mode
from jgan.mpi import any_rank, is_main_process, mean_over_ranks, rank, world_size
from jgan.schedule import build_schedule
from jgan.stats import RunStats
from jgan.visual import grid, to_uint8

LOGGED_IN_STATUS = ("d_loss", "g_loss", "gp", "div", "r1")


class TrainingDiverged(JganError):
    """A loss became NaN or infinite."""


class Trainer:
    """Trains one run of any registered architecture from its configuration."""

    def __init__(self, config, data, run_dir, sample_dir, progress=True, nan_policy="stop"):
        """`data`: the LMDB of a one-stream model, or {stream: LMDB}; None when batches are
        handed to `iteration` directly (tests, benchmarks)."""
        self.config, self.train_cfg = config, config["train"]
        self.arch = registry.get(config["arch"])
        self.run_dir, self.sample_dir = Path(run_dir), Path(sample_dir)
        self.progress, self.nan_policy, self.skipped_steps = progress and is_main_process(), nan_policy, 0
        self.world = world_size()
        self.schedule = build_schedule(config)
        # The initial weights follow the seed, identically on every MPI rank.
        jt.set_global_seed(self.train_cfg["seed"], different_seed_for_mpi=False)
        self.model = self.arch.model_class()(config)
        self.data = self.data_sources(data)
        self.bad_records = {name: BadRecords(path) for name, path in (self.data or {}).items()}
        if self.train_cfg["metrics"]:
            from jgan.metrics import check_metrics
            check_metrics(self.train_cfg["metrics"], self.train_cfg["metrics_n"])
        runtime.set_precision(self.train_cfg["precision"], self.train_cfg["winograd"])
        self.step, self.images = 0, 0
        self.sample_inputs = self.model.sample_inputs(self.train_cfg["n_sample"],
                                                      np.random.RandomState(self.train_cfg["seed"] + 12345))
        self.streams_key, self.streams = None, None
        self.rng = np.random.RandomState(self.train_cfg["seed"])
        self.stats = None
        self.has_stepped = False   # whether this process has made a step (the first one compiles kernels)
        self.stopwatch = stopwatch.current()   # times the loop's parts when a benchmark installed one
        self.init_from = None      # what the generator started from (train.py --init-from), for the record

    def data_sources(self, data):
        """{stream: LMDB path} for the streams the model trains on."""
        streams = self.model.streams
        if data is None:
            return None
        if not isinstance(data, dict):
            if len(streams) != 1:
                raise ConfigError(f"{self.arch.name} trains on {len(streams)} data sets "
                                  f"({', '.join(streams)}); pass one LMDB for each")
            return {streams[0]: data}
        if sorted(data) != sorted(streams):
            raise ConfigError(f"{self.arch.name} trains on the data sets {', '.join(streams)}, "
                              f"got {', '.join(data)}; pass one LMDB for each")
        return dict(data)

    # ----- state -----------------------------------------------------------------------------
    def payload(self):
        return {"arch": self.arch.name, "config": self.config, "step": self.step, "images": self.images,
                "networks": {name: ckpt.module_state(module) for name, module in self.model.modules().items()},
                "optimizers": {name: ckpt.optimizer_state(optimizer)
                               for name, optimizer in self.model.optimizers().items()},
                "rng": {"seed": self.train_cfg["seed"], "scheme": "every draw seeded from (seed, step)"},
                "sample_inputs": self.sample_inputs,
                **({"init_from": self.init_from} if self.init_from else {})}

    def start_from(self, generator_state, source):
        """Init hook of train.py --init-from: this new run's generator and its EMA start from
        `generator_state` (the discriminator and the optimisers start afresh); `source` says
        where the weights came from, in every checkpoint of the run."""
        if self.step:
            raise ConfigError(f"run {self.run_dir} has trained {self.step} steps; --init-from starts a new run")
        self.model.load_generator_state(generator_state)
        self.init_from = source

    def rank_model_states(self):
        """The model's own state (jgan.models.base.GANModel.state) of each MPI rank, gathered on
        every rank: a model may keep per-rank state, such as CycleGAN's image pools."""
        state = self.model.state()
        if not jt.in_mpi:
            return [state]
        gathered = {}
        for name, value in state.items():
            slots = np.zeros((self.world,) + np.shape(value), np.asarray(value).dtype)
            slots[rank()] = value
            gathered[name] = jt.array(slots).mpi_all_reduce("add").numpy()
        return [{name: value[index] for name, value in gathered.items()} for index in range(self.world)]

    def restore(self, document):
        if document.get("arch") != self.arch.name:
            raise CheckpointError(f"{document['path']} is a {document.get('arch')} checkpoint, "
                                  f"not {self.arch.name}; pass --arch {document.get('arch')}")
        networks, optimizers = document["networks"], document.get("optimizers", {})
        missing = [k for k in ("optimizers", "sample_inputs") if k not in document]
        missing += [name for name in self.model.modules()
                    if name not in networks and self.model.state_fallbacks.get(name) not in networks]
        missing += [name for name in self.model.optimizers() if name not in optimizers]
        if missing:
            raise CheckpointError(f"{document['path']} cannot be resumed: it holds no {missing[0]} "
                                  f"(a converted checkpoint?); use it with generate.py")
        for name, module in self.model.modules().items():
            state = networks.get(name, networks.get(self.model.state_fallbacks.get(name)))
            ckpt.load_module_state(module, state, name.replace("_", " "))
        for name, optimizer in self.model.optimizers().items():
            ckpt.load_optimizer_state(optimizer, optimizers[name])
        self.step, self.images = document["step"], document["images"]
        self.sample_inputs = document["sample_inputs"]
        self.init_from = document.get("init_from")
        states = document.get("model_states", [{}])
        self.model.load_state(states[rank() % len(states)])

    def save(self, milestone=False):
        """Write a checkpoint (MPI rank 0 only) and prune the run to train.keep checkpoints plus the
        milestones (one per phase); a failed write (disk full) keeps the previous one."""
        checksums, model_states = self.rank_checksums(), self.rank_model_states()
        if not is_main_process():
            return ckpt.checkpoint_path(self.run_dir, self.step)
        if len(set(checksums)) > 1:
            raise CheckpointError(f"the MPI ranks hold different weights at step {self.step} "
                                  f"(parameter sums {checksums}); the last checkpoint is kept")
        try:
            path = ckpt.save_checkpoint(self.run_dir, self.step, {**self.payload(), "rank_checksums": checksums,
                                                                  "model_states": model_states},
                                        keep=self.train_cfg["keep"], milestone=milestone)
        except OSError as error:
            raise CheckpointError(f"could not write the step-{self.step} checkpoint to {self.run_dir} "
                                  f"({error.strerror or error}); the previous checkpoint is kept: "
                                  f"free some space and continue with --resume") from None
        if self.stats is not None:
            self.stats.flush()
        return path

    def rank_checksums(self):
        """The sum of every network weight on each MPI rank, gathered on every rank."""
        total = sum(float(var.float64().sum().item()) for module in self.model.modules().values()
                    for var in module.state_dict().values())
        if not jt.in_mpi:
            return [total]
        slots = np.zeros(self.world)
        slots[rank()] = total
        return [float(v) for v in jt.array(slots).mpi_all_reduce("add").numpy()]

    # ----- one iteration ---------------------------------------------------------------------
    def seed_iteration(self):
        """Seed every random draw of this iteration from (seed, step, MPI rank), so a resumed run
        draws the same numbers as an uninterrupted one."""
        seed = (self.train_cfg["seed"] * 1_000_003 + self.step * 7919 + rank()) % 2 ** 31
        jt.set_seed(seed)
        self.rng = np.random.RandomState(seed)

    def update(self, optimizer, loss, name):
        """Apply one update; a loss that is not finite stops training (nothing more is saved, so
        the last checkpoint stays the last good one) or, with --nan-policy skip, is not applied;
        nor is one whose gradients are not finite, as a finite loss can have NaN gradients.

        Under `stop` the value is read after the update: reading it first would make Jittor run
        every forward pass before any backward and keep all their activations."""
        if self.nan_policy == "skip":
            optimizer.backward(loss)
            with self.stopwatch.section("host_sync"):
                finite = self.finite(loss, optimizer)
            if finite:
                optimizer.step()
            else:
                optimizer.zero_grad()  # the next backward replaces these gradients
                optimizer.n_step -= 1  # and Adam's step count stays that of the applied updates
                self.skipped_steps += 1
            return
        optimizer.step(loss)
        with self.stopwatch.section("host_sync"):
            finite = self.finite(loss)
        if not finite:
            raise TrainingDiverged(f"the {name} loss is not finite at step {self.step + 1}; the last "
                                   f"good checkpoint in {self.run_dir} is kept: resume from it with a "
                                   f"lower --lr, or pass --nan-policy skip")

    @staticmethod
    def finite(loss, optimizer=None):
        """Whether the loss (and the gradients the optimiser holds) are finite, on every MPI rank:
        all take the same decision."""
        value = mean_over_ranks(loss.detach())
        if optimizer is not None:
            value = value + sum(grad.sum() for group in optimizer.param_groups for grad in group["grads"])
        return math.isfinite(float(value.item()))

    def counted(self, batches, phase):
        """The batches of the model's first stream, adding each global batch to the images shown."""
        for batch in batches:
            self.images += phase.batch   # under MPI each rank holds a share of the global batch
            yield batch

    def iteration(self, batches, phase):
        """One training step of the model on {stream: batch iterator}; returns its terms (Vars)."""
        self.seed_iteration()
        first = self.model.streams[0]
        batches = {name: self.counted(it, phase) if name == first else it for name, it in batches.items()}
        context = StepContext(phase=phase, step=self.step, images=self.images, rng=self.rng,
                              world=self.world, update=self.update)
        kept, skipped = self.state_snapshot(), self.skipped_steps
        terms = self.model.train_step(batches, context)
        if self.skipped_steps > skipped:
            for var, copy in kept:
                var.update(copy)
        self.step += 1
        jt.sync_all()  # run every pending update now, so each iteration runs the same fused kernels
        return terms

    def state_snapshot(self):
        """Under --nan-policy skip, copies of the networks' non-trainable state (BatchNorm's running
        statistics, the EMA's), restored after a skipped step: its forward passes update them, so
        a non-finite forward would otherwise leave NaN statistics in every later sample."""
        if self.nan_policy != "skip":
            return []
        kept = [(var, var.clone()) for module in self.model.modules().values()
                for var in module.state_dict().values() if var.is_stop_grad()]
        jt.sync([copy for _, copy in kept])
        return kept

    def batches(self, phase):
        """{stream: batch iterator} for this phase; rebuilt when the size or the batch changes.
        Each stream has its own order (seed + its index), so that two data sets of the same
        images in the same order (an unpaired task's two domains) are not shown as pairs."""
        key = (phase.size, phase.batch)
        if phase.batch % self.world:
            raise ConfigError(f"the batch of {phase.batch} images at {phase.size} px cannot be split "
                              f"over {self.world} MPI ranks; use a batch divisible by {self.world}")
        if key != self.streams_key:
            self.streams_key = key
            self.streams = {name: self.stopwatch.timed("data_wait", training_stream(
                                path, phase.size, phase.batch, self.train_cfg["seed"] + index, start=self.images,
                                flip=self.train_cfg["flip"], num_workers=self.train_cfg["num_workers"],
                                rank=rank(), world=self.world, bad=self.bad_records[name]))
                            for index, (name, path) in enumerate(self.data.items())}
        return self.streams

    def set_learning_rate(self, phase):
        """The schedule sets the learning rates of each phase: a resolution's (progressive.lr) or a
        stage's (train.stages), else optim.lr_g and lr_d."""
        self.model.set_learning_rate(phase.lr)

    # ----- outputs ---------------------------------------------------------------------------
    def sample(self, phase):
        """The grid of the fixed sample inputs: a PNG in the sample folder and a TensorBoard image."""
        if not is_main_process():
            return None
        images = to_uint8(self.model.samples(self.sample_inputs, phase))
        return self.stats.log_samples(self.step, grid(images, nrow=int(math.sqrt(len(images)))))

    def evaluate(self, phase):
        """Quality metrics of the sampling generator against the data (on MPI rank 0, over all
        the images asked for), into the run's statistics."""
        if not is_main_process():
            return None
        from jgan import metrics
        from jgan.generation import TrainedGenerator
        generator = self.model.sampling_generator()
        with evaluation_mode(generator):
            trained = TrainedGenerator(generator, self.arch.name, self.arch.latent_size(self.config["model"]),
                                       phase.level, self.model.network_inputs(phase).get("alpha", 1.0))
            result = metrics.evaluate(trained, self.data[self.model.streams[0]],
                                      metrics=self.train_cfg["metrics"].split(","),
                                      n=self.train_cfg["metrics_n"], seed=0)
        self.stats.log_metrics({"step": self.step, "images": self.images, **result})
        return result

    def log(self, phase, terms, started):
        values = {k: float(mean_over_ranks(v.detach()).item()) for k, v in terms.items()}
        record = {"step": self.step, "images": self.images, "size": phase.size,
                  "alpha": round(phase.alpha, 4), **values,
                  **({"skipped": self.skipped_steps} if self.skipped_steps else {}),
                  "seconds": round(time.time() - started, 2)}
        self.stats.log_step(record)
        return values

    # ----- the loop --------------------------------------------------------------------------
    def prepare_run_folder(self):
        """Check the data, then create the run folders and write config.yaml (rank 0)."""
        if self.data is None:
            raise ConfigError("this Trainer was built without data; pass the LMDB to train on")
        for phase in self.schedule.phases():   # every size and batch of the run fits the data
            self.batches(phase)
        self.batches(self.schedule.phase(self.images))
        if is_main_process():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.sample_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.run_dir)
            save_config(self.config, self.run_dir / "config.yaml")
        self.stats = RunStats(self.run_dir, self.sample_dir, enabled=is_main_process(), start_step=self.step)

    def train(self, iters, seconds=None):
        """Train until `iters` steps have been done in total, or for `seconds` at most; the clock
        starts after this process's first step, which compiles the kernels."""
        self.prepare_run_folder()
        self.model.train()
        every = self.train_cfg
        last_index = None
        bar = self.progress_bar(iters, seconds)
        started = time.time()
        clock = started if self.has_stepped else None
        try:
            while self.step < iters:
                if clock is not None and seconds is not None and self.time_is_up(time.time() - clock > seconds):
                    break
                phase = self.schedule.phase(self.images)
                if last_index is not None and phase.index != last_index:
                    with self.stopwatch.section("checkpoint"):
                        self.save(milestone=True)
                last_index = phase.index
                self.set_learning_rate(phase)
                with self.stopwatch.section("step"):
                    terms = self.iteration(self.batches(phase), phase)
                self.has_stepped = True
                if clock is None:
                    clock = time.time()
                    if seconds is not None:   # its elapsed time from the clock's start, too
                        bar.reset()
                        bar.set_description_str(self.arch.name)
                self.check_records()
                bar.update(1 if seconds is None else min(time.time() - clock, seconds) - bar.n)
                if self.step % every["log_every"] == 0 or self.step == iters:
                    with self.stopwatch.section("log"):
                        bar.set_postfix_str(self.status(phase, self.log(phase, terms, started)))
                if self.step % every["sample_every"] == 0 or self.step == iters:
                    with self.stopwatch.section("sample"):
                        self.sample(phase)
                        self.stats.plot_losses()
                if every["metrics"] and every["metrics_every"] and self.step % every["metrics_every"] == 0:
                    with self.stopwatch.section("metrics"):
                        self.evaluate(phase)
                if self.step % every["ckpt_every"] == 0 or self.step == iters:
                    with self.stopwatch.section("checkpoint"):
                        self.save()
            bar.close()
            if self.step % every["ckpt_every"] and self.step != iters:  # stopped early: by the clock
                with self.stopwatch.section("sample"):
                    self.sample(self.schedule.phase(self.images))
                with self.stopwatch.section("checkpoint"):
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            path = self.save()
            raise KeyboardInterrupt(f"saved {path} at step {self.step}") from None
        finally:
            self.stats.close()
        return ckpt.checkpoint_path(self.run_dir, self.step)

    def check_records(self):
        """Stop, with a checkpoint, once too many records of a data set could not be decoded."""
        bad = [records for records in self.bad_records.values() if records.too_many()]
        if any_rank(bad):
            path = self.save()
            what = bad[0].sentence() if bad else "too many records cannot be decoded on another MPI rank"
            raise DataError(f"{what}; stopped at step {self.step} with checkpoint {path}: recreate the "
                            f"LMDB (`python prepare_data.py --verify LMDB` lists the bad records)")

    def progress_bar(self, iters, seconds):
        """Steps out of `iters`, or with a time limit the minutes spent and left (an ETA of the
        steps would be meaningless then)."""
        if seconds is None:
            return tqdm(total=iters, initial=self.step, disable=not self.progress, dynamic_ncols=True,
                        desc=self.arch.name, unit="step")
        first = "" if self.has_stepped else " (first step: compiling, not timed)"
        return tqdm(total=seconds, disable=not self.progress, dynamic_ncols=True, desc=self.arch.name + first,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} of " + tqdm.format_interval(seconds)
                               + ", {remaining} left{postfix}")

    @staticmethod
    def time_is_up(here):
        """Whether to stop for the time limit: under MPI, when rank 0's clock says so."""
        return any_rank(here and is_main_process())

    def status(self, phase, values):
        parts = [f"step {self.step}", f"{phase.size}px"]
        if phase.fading:
            parts.append(f"a {phase.alpha:.2f}")
        parts += [f"{k} {v:.3f}" for k, v in values.items() if k in LOGGED_IN_STATUS]
        return " ".join(parts)
