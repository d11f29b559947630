"""Timing jgan's training iteration: the configuration of a benchmark row and the jgan side of it.

A row is (arch, size, batch). Its configuration is the arch's preset with that size and batch (and
tiny widths when asked), for StyleGAN a phase fading in at `size` (alpha about 0.5, advancing as
images are shown) or the 8 px start. The images are given: scripts/bench.py hands both frameworks
the same synthetic batches, so data loading is timed on neither side. An iteration is
`Trainer.iteration`: one training step of the model (for the latent GANs n_critic critic steps
with their penalties, one generator step, the average-latent update and the EMA).
"""
import itertools
import os
import tempfile
import time
from pathlib import Path

import jittor as jt

from jgan import registry
from jgan.config import load_config
from jgan.training import Trainer

FADE_IMAGES = 10 ** 7          # images per progressive phase: alpha stays inside the fade-in while timed


class KernelLog:
    """The Jittor kernels that ran inside a `with` block, by their JIT keys.

    A kernel that appears in a later block but not in an earlier one of the same work was compiled
    (or loaded) anew: that is how recompiles are counted, per process."""

    def __enter__(self):
        jt.sync_all()
        jt.profiler.start(0, 0)
        self.kernels = set()
        return self

    def __exit__(self, *exc):
        jt.sync_all()
        jt.profiler.stop()
        self.kernels = {row[0].replace("\u00ab", " ") for row in jt.profiler.report()[1:]}
        return False


def bench_config(arch, size, batch=None, tiny=False, has_cuda=False):
    """The configuration of one row: the preset of `arch` at `size` px with `batch` (None: the preset's);
    a progressive architecture fades in at `size`."""
    spec = registry.get(arch)
    overrides = [{"train": {"num_workers": 0, **({"batch": batch} if batch else {})}}]
    if spec.progressive:
        overrides.append({"progressive": {"init_size": 8, "max_size": size, "phase": FADE_IMAGES}})
    else:
        overrides.append({"model": {"size": size}})
    if tiny:
        overrides.append(spec.tiny)
    return load_config(arch, has_cuda, None, overrides)


def kernel_files():
    """Number of compiled kernels in Jittor's cache (shared by every process of this user)."""
    folder = Path(jt.flags.cache_path) / "jit"
    return sum(1 for name in os.listdir(folder) if name.endswith(".so")) if folder.is_dir() else 0


class IterationBench:
    """A Trainer for one benchmark row, run one timed iteration at a time on given images."""

    def __init__(self, config, make_images):
        """`make_images(batch, size)`: the list of numpy image batches to cycle through."""
        self.workdir = tempfile.TemporaryDirectory(prefix="jgan-bench-")
        self.trainer = Trainer(config, None, Path(self.workdir.name) / "run",
                               Path(self.workdir.name) / "samples", progress=False)
        schedule = self.trainer.schedule
        if schedule.progressive:
            fading = schedule.last - schedule.first      # the phase index that fades in at max_size
            self.trainer.images = fading * 2 * schedule.phase_images + schedule.phase_images // 2
        self.trainer.model.train()
        phase = self.phase()
        self.images = [jt.array(b) for b in make_images(phase.batch, phase.size)]
        self.cycle = itertools.cycle(self.images)
        self.kernels = {"warmup": set(), "check": set()}
        self.compiled = 0

    def batches(self):
        """The model's streams, each cycling through the given images."""
        return {name: self.cycle for name in self.trainer.model.streams}

    def phase(self):
        return self.trainer.schedule.phase(self.trainer.images)

    def iteration(self, log=None):
        """Seconds of one iteration (device synchronised); `log` names the kernel set it adds to."""
        phase = self.phase()
        self.trainer.set_learning_rate(phase)
        before = kernel_files() if log == "warmup" else 0
        started = time.perf_counter()
        if log is None:
            self.trainer.iteration(self.batches(), phase)
            jt.sync_all(True)
        else:
            with KernelLog() as kernels:
                self.trainer.iteration(self.batches(), phase)
                jt.sync_all(True)
            self.kernels[log] |= kernels.kernels
        seconds = time.perf_counter() - started
        if log == "warmup":
            self.compiled += kernel_files() - before
        return seconds, phase

    def recompiled(self):
        """Kernels that ran in the check iterations but not in the warm-up: compiled after it."""
        return sorted(self.kernels["check"] - self.kernels["warmup"])
