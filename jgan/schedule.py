"""Training schedules the loop consults: what resolution, fade-in alpha, batch and learning rate
apply after a given number of real images shown. A schedule is a pure function of that count, so a
resumed run lands exactly where it stopped.
"""
from dataclasses import dataclass, replace

from jgan import registry
from jgan.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    size: int            # resolution in pixels
    level: int           # resolution index: log2(size) - 2 (4 px is level 0)
    alpha: float         # fade-in weight of the newest block, 1 when fully grown
    batch: int
    lr: float | None     # every network's learning rate here (progressive.lr or a stage's); None: each its configured one
    index: int           # how many resolution changes and stages came before this phase
    fading: bool         # True while alpha can still change at this resolution


def log2_size(size, what):
    if size < 4 or size & (size - 1):
        raise ConfigError(f"{what} must be a power of two of at least 4, got {size}")
    return size.bit_length() - 1


def staged(phase, stages, images):
    """`phase` under the stages (train.stages: {images, lr, batch}) begun by `images`: from its
    images on, a stage's lr and batch replace the schedule's, each until a later stage gives one."""
    begun = [stage for stage in stages if images >= stage["images"]]
    batch, lr = phase.batch, phase.lr
    for stage in begun:
        batch, lr = stage["batch"] or batch, stage["lr"] or lr
    return replace(phase, batch=batch, lr=lr, index=phase.index + len(begun))


class FixedSchedule:
    """One resolution for the whole run (DCGAN family), at the configured batch and learning rates
    until the first of the `stages` begins; each stage is a phase of its own."""

    progressive = False

    def __init__(self, size, batch, stages=()):
        self.size, self.batch, self.stages = size, batch, list(stages)
        self.level = log2_size(size, "--size") - 2

    def phase(self, images):
        return staged(Phase(self.size, self.level, 1.0, self.batch, None, 0, False), self.stages, images)

    def phases(self):
        """The first phase of each stage."""
        return [self.phase(0)] + [self.phase(stage["images"]) for stage in self.stages]


class ProgressiveSchedule:
    """Progressive growing (Karras et al. 2018): each resolution fades in over `phase_images`
    images (alpha 0 -> 1), holds for as many again, then the next resolution starts. `stages`
    change the batch and learning rate from their images on, whatever the resolution."""

    progressive = True

    def __init__(self, init_size, max_size, phase_images, batch_by_size, lr_by_size, fixed_batch=None,
                 stages=()):
        self.first = log2_size(init_size, "--init-size")
        self.last = log2_size(max_size, "--max-size")
        if self.first > self.last:
            raise ConfigError(f"--init-size {init_size} is larger than --max-size {max_size}; "
                              f"lower --init-size or raise --max-size")
        if phase_images < 1:
            raise ConfigError(f"--phase must be at least 1 image, got {phase_images}")
        self.phase_images = phase_images
        self.batch_by_size = {int(k): int(v) for k, v in batch_by_size.items()}
        self.lr_by_size = {int(k): float(v) for k, v in lr_by_size.items()}
        self.fixed_batch = fixed_batch
        self.stages = list(stages)
        self.size = max_size
        for log2 in range(self.first, self.last + 1):
            self._batch(2 ** log2)

    def _batch(self, size):
        if self.fixed_batch:
            return self.fixed_batch
        if size not in self.batch_by_size:
            raise ConfigError(f"progressive.batch has no batch size for {size} px; add one or pass --batch")
        return self.batch_by_size[size]

    def phases(self):
        """The first phase of each resolution and of each stage, in the order the run meets them."""
        starts = [index * 2 * self.phase_images for index in range(self.last - self.first + 1)]
        return [self.phase(images) for images in sorted(set(starts + [stage["images"] for stage in self.stages]))]

    def phase(self, images):
        return staged(self.grown(images), self.stages, images)

    def grown(self, images):
        """The phase of progressive growing alone, before the stages."""
        index = min(images // (2 * self.phase_images), self.last - self.first)
        size = 2 ** (self.first + index)
        used = images - index * 2 * self.phase_images
        alpha = 1.0 if index == 0 else min(1.0, (used + 1) / self.phase_images)
        return Phase(size, self.first + index - 2, alpha, self._batch(size),
                     self.lr_by_size.get(size), index, index > 0 and used < self.phase_images)


def build_schedule(config):
    """The schedule a configuration asks for: progressive growing for a progressive architecture."""
    train = config["train"]
    if registry.get(config["arch"]).progressive:
        grow = config["progressive"]
        return ProgressiveSchedule(grow["init_size"], grow["max_size"], grow["phase"], grow["batch"],
                                   grow["lr"], fixed_batch=train["batch"], stages=train.get("stages", ()))
    return FixedSchedule(config["model"]["size"], train["batch"], train.get("stages", ()))
